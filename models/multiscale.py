"""Detection whose working size follows the content: fine while small faces are in view, coarse otherwise.

Every frame gets a full-frame detection. YuNet's cost grows with working pixels, and most of it buys
small faces: a 960-px working image (~45 ms) finds 20-48 px faces at 1080p that a 320-px one (~6 ms)
misses. So the fine pass runs on every frame while any face in view is small; when all faces (or
none) are large enough for the coarse pass, the coarse pass runs instead, with a fine pass every
`check_every` frames to notice small faces arriving (at most check_every - 1 frames late). On the four
test clips both passes find the same faces on every frame.
"""

from __future__ import annotations

import numpy as np

from models.faces import Faces
from models.resize import shrink


class AdaptiveDetector:
    """A callable BGR frame -> Faces choosing between a fine and a coarse detector frame by frame."""

    name = "yunet"

    def __init__(self, fine, coarse, *, reliable_px: float = 28.0, check_every: int = 10,
                 hold_frames: int = 25):
        """reliable_px: face size (short side, working-image pixels) the coarse pass finds reliably;
        hold_frames: fine frames without a small face before going coarse again."""
        self.fine, self.coarse = fine, coarse
        self.sha256 = fine.sha256
        self.reliable_px = reliable_px
        self.check_every = check_every
        self.hold_frames = hold_frames
        self._fine_left = 0  # > 0: fine mode for this many more frames
        self._frame = 0
        self.fine_frames = self.coarse_frames = 0

    def _too_small_for_coarse(self, faces: Faces, width: int, height: int) -> bool:
        scale = self.coarse.working_scale(width, height)
        return bool(len(faces) and float(faces.short_side.min()) * scale < self.reliable_px)

    def __call__(self, frame_bgr: np.ndarray) -> Faces:
        """Faces of one BGR (H, W, 3) frame, in frame pixels."""
        h, w = frame_bgr.shape[:2]
        check = self._frame % self.check_every == 0
        self._frame += 1
        if self._fine_left > 0 or check:
            faces = detect_shrunk(self.fine, frame_bgr)
            self.fine_frames += 1
            if self._too_small_for_coarse(faces, w, h):
                self._fine_left = self.hold_frames
            else:
                self._fine_left = max(0, self._fine_left - 1)
            return faces
        faces = detect_shrunk(self.coarse, frame_bgr)
        self.coarse_frames += 1
        if self._too_small_for_coarse(faces, w, h):
            self._fine_left = self.hold_frames  # someone walked away from the camera
        return faces

    def working_scale(self, width: int, height: int) -> float:
        """The fine pass's scale (the finest this detector looks)."""
        return self.fine.working_scale(width, height)

    def describe(self) -> dict:
        """Both passes' parameters and the switching rule."""
        return {"name": self.name, "adaptive": True, "fine": self.fine.describe(),
                "coarse": self.coarse.describe(), "reliable_px": self.reliable_px,
                "check_every": self.check_every, "hold_frames": self.hold_frames,
                "fine_frames": self.fine_frames, "coarse_frames": self.coarse_frames}


def detect_shrunk(detector, frame_bgr: np.ndarray) -> Faces:
    """detector(frame) with the frame pre-shrunk to the detector's working size; boxes in frame pixels."""
    h, w = frame_bgr.shape[:2]
    s = detector.working_scale(w, h)
    if s >= 1.0:
        return detector(frame_bgr)  # enlarging: the detector's own bilinear resize is the cheap way
    tw, th = max(1, round(w * s)), max(1, round(h * s))
    faces = detector(shrink(frame_bgr, tw, th))
    if not len(faces):
        return faces
    sx, sy = w / tw, h / th
    xyxy = faces.xyxy * np.array([sx, sy, sx, sy], np.float32)
    xyxy[:, 0::2] = xyxy[:, 0::2].clip(0, w)
    xyxy[:, 1::2] = xyxy[:, 1::2].clip(0, h)
    landmarks = faces.landmarks * np.array([sx, sy], np.float32)
    return Faces(xyxy=xyxy, score=faces.score, landmarks=landmarks)
