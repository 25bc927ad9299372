"""The face detectors on real mask_scenes photos and on frames that must not crash them."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from models.baselines import Res10Detector
from models.detect import PROFILES, YuNetDetector, load_detector
from models.faces import Faces
from models.metrics import match_greedy
from models.voc import read_annotation
from shared.assets import asset_path, manifest

# Validation photos whose every annotated face YuNet must find: a crowd of 13-17 px faces, mixed sizes
# and classes, unmasked/incorrect faces, and two large faces.
CHOSEN = ["maksssksksss631", "maksssksksss19", "maksssksksss130", "maksssksksss523"]


@pytest.fixture(scope="module")
def yunet() -> YuNetDetector:
    return load_detector("yunet")


@pytest.fixture(scope="module")
def res10() -> Res10Detector:
    return load_detector("res10")


def scene(stem: str):
    folder = asset_path("mask_scenes")
    return read_annotation(folder / "annotations" / f"{stem}.xml", folder / "images")


@pytest.mark.parametrize("stem", CHOSEN)
def test_yunet_finds_every_annotated_face(yunet, stem):
    s = scene(stem)
    frame = cv2.imread(str(s.image_path))
    faces = yunet(frame)
    _, gt_to_pred = match_greedy(faces.xyxy, faces.score, s.boxes, iou_threshold=0.4)
    assert (gt_to_pred >= 0).all(), f"missed {np.sum(gt_to_pred < 0)} of {len(s.boxes)} faces in {stem}"
    assert faces.landmarks.shape == (len(faces), 5, 2)
    # Landmarks sit inside (or right at) their face's box: they describe the same face.
    x1, y1, x2, y2 = (faces.xyxy[:, i, None] for i in range(4))
    lx, ly = faces.landmarks[..., 0], faces.landmarks[..., 1]
    pad = 0.5 * (x2 - x1)
    assert ((lx >= x1 - pad) & (lx <= x2 + pad) & (ly >= y1 - pad) & (ly <= y2 + pad)).all()


def test_boxes_are_clipped_to_the_frame():
    frame = cv2.imread(str(scene("maksssksksss523").image_path))[110:, 120:]  # cuts through both faces
    h, w = frame.shape[:2]
    # Boxes grown 3x around their centres reach well past the edges: only clipping keeps them inside.
    for det in (load_detector("yunet"), load_detector("yunet", box_fit=(0.0, 0.0, 3.0, 3.0))):
        faces = det(frame)
        assert len(faces) == 2
        assert (faces.xyxy >= 0).all()
        assert (faces.xyxy[:, 2] <= w).all() and (faces.xyxy[:, 3] <= h).all()
        assert (faces.xyxy[:, 2:] > faces.xyxy[:, :2]).all()
        assert faces.xyxy.dtype == np.float32 and faces.score.dtype == np.float32
    assert (faces.xyxy[:, 0] == 0).any() and (faces.xyxy[:, 1] == 0).any()


def test_empty_and_blank_frames_have_no_faces(yunet, res10):
    for det in (yunet, res10):
        assert len(det(np.zeros((0, 0, 3), np.uint8))) == 0
        assert len(det(np.zeros((480, 640, 3), np.uint8))) == 0
        assert len(det(np.full((360, 640, 3), 255, np.uint8))) == 0


@pytest.mark.parametrize(
    "shape", [(1, 1, 3), (7, 1001, 3), (1001, 7, 3), (33, 47, 3), (241, 319, 3), (300, 400), (300, 400, 1)]
)
def test_odd_sizes_and_grey_frames_do_not_crash(yunet, res10, shape):
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, shape, dtype=np.uint8)
    for det in (yunet, res10):
        faces = det(frame)
        assert isinstance(faces, Faces)
        assert np.isfinite(faces.xyxy).all()
        assert (faces.xyxy[:, 2] <= shape[1]).all() and (faces.xyxy[:, 3] <= shape[0]).all()


def test_grey_photo_still_finds_faces(yunet):
    grey = cv2.imread(str(scene("maksssksksss523").image_path), cv2.IMREAD_GRAYSCALE)
    assert len(yunet(grey)) >= 2


def test_input_size_is_set_only_when_the_frame_size_changes():
    det = load_detector("yunet")
    calls = []
    det._net = _Spy(det._net, calls)
    for _ in range(3):
        det(np.zeros((240, 320, 3), np.uint8))
    det(np.zeros((241, 320, 3), np.uint8))
    det(np.zeros((241, 320, 3), np.uint8))
    assert calls == [(640, 480), (640, 482)]


class _Spy:
    """Wraps the cv2 detector and records setInputSize calls."""

    def __init__(self, net, calls):
        self._net, self._calls = net, calls

    def setInputSize(self, size):
        self._calls.append(tuple(size))
        self._net.setInputSize(size)

    def detect(self, image):
        return self._net.detect(image)


def test_video_profile_caps_the_working_size():
    det = load_detector("yunet", profile="video")
    cap = PROFILES["video"].max_side
    for w, h in [(1920, 1080), (1280, 720), (640, 360)]:
        s = det.working_scale(w, h)
        assert max(w, h) * s <= cap + 0.5
    assert det.working_scale(1920, 1080) == pytest.approx(cap / 1920)


def test_res10_baseline_finds_large_faces(res10):
    s = scene("maksssksksss523")
    faces = res10(cv2.imread(str(s.image_path)))
    assert len(faces) >= 1
    assert (faces.score > 0.5).all()
    _, gt_to_pred = match_greedy(faces.xyxy, faces.score, s.boxes, iou_threshold=0.4)
    assert (gt_to_pred >= 0).any()


def test_detectors_name_their_model_files(yunet, res10):
    assert (yunet.name, yunet.sha256) == ("yunet", manifest()["yunet"].sha256)
    assert (res10.name, res10.sha256) == ("res10", manifest()["res10_caffemodel"].sha256)
    with pytest.raises(ValueError):
        load_detector("haar")


def _row(x, y, w, h, score):
    row = np.zeros(15, np.float32)
    row[:4], row[14] = (x, y, w, h), score
    return row


def test_fused_passes_keep_faces_both_scales_see_and_halve_the_rest():
    from models.detect import fuse_passes

    both_a, both_b = _row(10, 10, 20, 20, 0.9), _row(11, 10, 20, 21, 0.7)
    only_a = _row(100, 100, 12, 12, 0.8)
    dup_a = _row(10, 11, 20, 20, 0.5)  # a duplicate within one pass is dropped, not averaged in
    fused = fuse_passes([np.stack([both_a, only_a, dup_a]), both_b[None]])
    assert len(fused) == 2
    scores = sorted(fused[:, 14].tolist())
    assert scores == pytest.approx([0.4, 0.8])
    # The pair's box is the score-weighted mean of its members'.
    pair = fused[np.argmax(fused[:, 14])]
    assert pair[0] == pytest.approx((10 * 0.9 + 11 * 0.7) / 1.6)
    assert len(fuse_passes([np.zeros((0, 15)), np.zeros((0, 15))])) == 0


def test_still_profile_runs_its_second_scale_only_when_it_changes_the_working_size(yunet):
    assert PROFILES["still"].extra_scales
    (extra,) = yunet._extra
    calls = []
    run = extra._frame_rows
    extra._frame_rows = lambda frame: calls.append(frame.shape) or run(frame)
    try:
        yunet(np.zeros((300, 400, 3), np.uint8))
        yunet(np.zeros((3000, 4000, 3), np.uint8))  # both scales reach the 4096 px cap: one pass
    finally:
        del extra._frame_rows
    assert calls == [(300, 400, 3)]
