"""Adaptive detection: coarse while every face is large, fine while small faces are in view."""

from __future__ import annotations

import numpy as np

from models.faces import Faces
from models.multiscale import AdaptiveDetector, detect_shrunk
from models.resize import shrink


class FakeDetector:
    """Returns the faces it is told to, in working pixels; records the image sizes it was given."""

    name, sha256 = "fake", "0" * 64

    def __init__(self, max_side: int, faces_px: list[float]):
        self.max_side, self.faces_px = max_side, faces_px
        self.sizes: list[tuple[int, int]] = []

    def working_scale(self, width: int, height: int) -> float:
        return min(2.0, self.max_side / max(width, height))

    def __call__(self, image: np.ndarray) -> Faces:
        h, w = image.shape[:2]
        self.sizes.append((w, h))
        s = self.working_scale(w, h)  # 1.0 when the caller already shrank the frame
        boxes = [[10 * s, 10 * s, (10 + f) * s, (10 + f) * s] for f in self.faces_px]
        return Faces(xyxy=np.array(boxes, np.float32).reshape(-1, 4), score=np.full(len(boxes), 0.9))

    def describe(self) -> dict:
        return {"max_side": self.max_side}


def run(detector: AdaptiveDetector, frames: int, size=(1920, 1080)) -> list[str]:
    frame = np.zeros((size[1], size[0], 3), np.uint8)
    used = []
    for _ in range(frames):
        fine_before = detector.fine_frames
        detector(frame)
        used.append("F" if detector.fine_frames > fine_before else "c")
    return used


def test_large_faces_run_coarse_with_a_periodic_fine_check():
    fine, coarse = FakeDetector(960, [400]), FakeDetector(320, [400])
    used = run(AdaptiveDetector(fine, coarse, check_every=10), 30)
    assert "".join(used) == ("F" + "c" * 9) * 3


def test_a_small_face_switches_to_fine_and_holds_it():
    fine, coarse = FakeDetector(960, [60]), FakeDetector(320, [])  # 60 px at 1080p: 10 px coarse
    detector = AdaptiveDetector(fine, coarse, check_every=10, hold_frames=25)
    used = run(detector, 40)
    assert set(used) == {"F"}  # found by the first check, then seen on every fine frame
    fine.faces_px = []  # the small face leaves
    used = run(detector, 40)
    assert used[:24] == ["F"] * 24 and "c" in used[25:]


def test_boxes_come_back_in_frame_pixels_from_a_shrunk_frame():
    fine = FakeDetector(960, [100])
    faces = detect_shrunk(fine, np.zeros((2160, 3840, 3), np.uint8))
    assert fine.sizes == [(960, 540)]  # the detector got its working size; it resized nothing
    assert np.allclose(faces.xyxy[0], [40, 40, 440, 440], atol=1)  # 4K pixels
    small = FakeDetector(960, [50])
    faces = detect_shrunk(small, np.zeros((240, 320, 3), np.uint8))
    assert small.sizes == [(320, 240)]  # enlarging is left to the detector


def test_shrink_averages_like_area_resampling():
    image = np.zeros((1080, 1920, 3), np.uint8)
    image[:, ::2] = 200  # one-pixel stripes: a plain bilinear decimation would alias them away or not
    out = shrink(image, 320, 180)
    assert out.shape == (180, 320, 3)
    assert abs(float(out.mean()) - 100) < 2 and float(out.std()) < 3
