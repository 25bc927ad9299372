"""Face detectors: YuNet (ours, tuned for small CCTV faces) and the seeds' res10 SSD (the baseline).

Each detector is a callable `frame_bgr (H, W, 3) uint8 -> Faces` with `name` and `sha256` (of its
model file) attributes. Build one with `load_detector(kind, **params)`. Neither sets OpenCV's thread
count: that is the process's decision (the worker's), not this module's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np

from shared.assets import asset_path, manifest, sha256_file
from worker.pipeline.faces import Faces

# YuNet pads its input to a multiple of 32 and returns garbage (inf boxes) on slivers thinner
# than that, so tiny frames are padded up to this size first.
_MIN_INPUT = 32


@dataclass(frozen=True)
class YuNetParams:
    """How YuNet runs; the working image is the frame resized by `scale`, then capped/raised.

    scale: resize factor applied to the frame (2.0 doubles it: YuNet's smallest anchor is 10 px, so
    faces under ~10 px are only found when enlarged). min_side/max_side: after scaling, the working
    image is enlarged until its short side is at least min_side and shrunk until its long side is at
    most max_side (0 = no limit); max_side bounds the cost per frame (cost ~ working pixels).
    tiles: split the working image into tiles x tiles overlapping tiles (1 = whole image), merged by
    NMS. score_threshold, nms_threshold, top_k: passed to cv2.FaceDetectorYN.
    """

    scale: float = 1.0
    min_side: int = 0
    max_side: int = 0
    tiles: int = 1
    tile_overlap: float = 0.15
    score_threshold: float = 0.5
    nms_threshold: float = 0.3
    top_k: int = 5000


# Measured on the validation split of mask_scenes (~400 px photos, 46% of faces < 24 px) and on
# synthetic 720p/1080p frames; see docs/models-evaluation.md for the tables behind these numbers.
PROFILES: dict[str, YuNetParams] = {
    # Best recall at precision >= 0.85 on still photos: small images are enlarged so that 10-24 px
    # faces reach YuNet's anchors. ~400x300 photos -> 1200x900 working image.
    "still": YuNetParams(scale=3.0, max_side=2400, score_threshold=0.6, nms_threshold=0.3),
    # Bounded cost for video: the working image's long side is capped so a 1080p frame costs
    # about the worker's 25-40 ms budget on 2 cores; faces below ~10 px *after* the cap are lost.
    "video": YuNetParams(scale=1.0, max_side=960, score_threshold=0.6, nms_threshold=0.3),
}
DEFAULT_PROFILE = "still"


def _as_bgr(frame: np.ndarray) -> np.ndarray:
    """A contiguous (H, W, 3) uint8 view of a BGR, grey (H, W)/(H, W, 1) or BGRA frame."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        raise TypeError(f"frames must be uint8, got {frame.dtype}")
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2BGR)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"frames must be (H, W, 3) BGR, got shape {frame.shape}")
    return np.ascontiguousarray(frame)


def _clip(xyxy: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to the frame, and a mask of those that keep a positive area."""
    xyxy = np.nan_to_num(xyxy.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    xyxy[:, 0::2] = np.clip(xyxy[:, 0::2], 0, width)
    xyxy[:, 1::2] = np.clip(xyxy[:, 1::2], 0, height)
    keep = (xyxy[:, 2] - xyxy[:, 0] >= 1) & (xyxy[:, 3] - xyxy[:, 1] >= 1)
    return xyxy, keep


def _tile_starts(length: int, tile: int) -> list[int]:
    """Start offsets of tiles of size `tile` covering [0, length), the last one flush with the end."""
    if tile >= length:
        return [0]
    n = int(np.ceil((length - tile) / tile)) + 1
    n = max(n, 2)
    step = (length - tile) / (n - 1)
    return [int(round(i * step)) for i in range(n)]


class YuNetDetector:
    """OpenCV's YuNet (cv2.FaceDetectorYN) with input scaling, optional tiling and clipped boxes."""

    name = "yunet"

    def __init__(self, profile: str | YuNetParams = DEFAULT_PROFILE, model_path=None, **overrides) -> None:
        base = PROFILES[profile] if isinstance(profile, str) else profile
        self.params = replace(base, **overrides)
        self.profile = profile if isinstance(profile, str) else "custom"
        path = model_path or asset_path("yunet")
        self.sha256 = manifest()["yunet"].sha256 if model_path is None else sha256_file(path)
        p = self.params
        # Created once; detect() needs the exact input size, so only that is changed per frame size.
        self._net = cv2.FaceDetectorYN.create(
            str(path), "", (320, 320), p.score_threshold, p.nms_threshold, p.top_k
        )
        self._size: tuple[int, int] = (320, 320)

    def working_scale(self, width: int, height: int) -> float:
        """Factor from frame pixels to working-image pixels for a frame of this size."""
        p = self.params
        s = p.scale
        if p.min_side and min(width, height) * s < p.min_side:
            s = p.min_side / min(width, height)
        if p.max_side and max(width, height) * s > p.max_side:
            s = p.max_side / max(width, height)
        return s

    def _detect(self, image: np.ndarray) -> np.ndarray:
        """(K, 15) raw YuNet rows for one working image (any size)."""
        h, w = image.shape[:2]
        if h < _MIN_INPUT or w < _MIN_INPUT:
            image = cv2.copyMakeBorder(
                image, 0, max(0, _MIN_INPUT - h), 0, max(0, _MIN_INPUT - w), cv2.BORDER_CONSTANT
            )
            h, w = image.shape[:2]
        if (w, h) != self._size:
            self._net.setInputSize((w, h))
            self._size = (w, h)
        _, rows = self._net.detect(image)
        if rows is None:
            return np.zeros((0, 15), np.float32)
        return rows[np.isfinite(rows).all(axis=1)]

    def _detect_tiled(self, image: np.ndarray) -> np.ndarray:
        """Raw rows over overlapping tiles, shifted to image coordinates and merged by NMS."""
        p = self.params
        h, w = image.shape[:2]
        th = int(np.ceil(h / p.tiles * (1 + p.tile_overlap)))
        tw = int(np.ceil(w / p.tiles * (1 + p.tile_overlap)))
        parts = []
        for y in _tile_starts(h, th):
            for x in _tile_starts(w, tw):
                rows = self._detect(image[y : y + th, x : x + tw]).copy()
                rows[:, 0:14:2] += x
                rows[:, 1:14:2] += y
                parts.append(rows)
        rows = np.concatenate(parts) if parts else np.zeros((0, 15), np.float32)
        if len(rows) < 2:
            return rows
        keep = cv2.dnn.NMSBoxes(
            rows[:, :4].tolist(), rows[:, 14].tolist(), p.score_threshold, p.nms_threshold
        )
        return rows[np.asarray(keep, np.int64).reshape(-1)]

    def __call__(self, frame_bgr: np.ndarray) -> Faces:
        """Faces of one BGR uint8 frame; boxes and landmarks in frame pixels, clipped to the frame."""
        frame = _as_bgr(frame_bgr)
        height, width = frame.shape[:2]
        if height == 0 or width == 0:
            return Faces.empty()
        s = self.working_scale(width, height)
        if s != 1.0:
            size = (max(1, round(width * s)), max(1, round(height * s)))
            # INTER_AREA when shrinking avoids aliasing that hides small faces; LINEAR is enough up.
            interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
            image = cv2.resize(frame, size, interpolation=interp)
            sx, sy = size[0] / width, size[1] / height
        else:
            image, sx, sy = frame, 1.0, 1.0
        rows = self._detect_tiled(image) if self.params.tiles > 1 else self._detect(image)
        if len(rows) == 0:
            return Faces.empty()
        xyxy = np.concatenate([rows[:, :2], rows[:, :2] + rows[:, 2:4]], axis=1)
        xyxy /= np.array([sx, sy, sx, sy], np.float32)
        landmarks = rows[:, 4:14].reshape(-1, 5, 2) / np.array([sx, sy], np.float32)
        xyxy, keep = _clip(xyxy, width, height)
        landmarks = np.clip(landmarks, 0, [width, height]).astype(np.float32)
        return Faces(xyxy=xyxy[keep], score=rows[keep, 14], landmarks=landmarks[keep])

    def describe(self) -> dict:
        """Name, profile and every parameter, for logs and the evaluation's JSON."""
        return {"name": self.name, "profile": self.profile, **asdict(self.params)}


class Res10Detector:
    """The seeds' detector: OpenCV's res10 SSD on the frame squashed to 300x300, confidence > 0.5."""

    name = "res10"
    INPUT = (300, 300)
    MEAN = (104.0, 177.0, 123.0)

    def __init__(self, confidence: float = 0.5, prototxt=None, caffemodel=None) -> None:
        self.confidence = confidence
        weights = caffemodel or asset_path("res10_caffemodel")
        self.sha256 = manifest()["res10_caffemodel"].sha256 if caffemodel is None else sha256_file(weights)
        self._net = cv2.dnn.readNetFromCaffe(str(prototxt or asset_path("res10_prototxt")), str(weights))

    def __call__(self, frame_bgr: np.ndarray) -> Faces:
        """Faces of one BGR uint8 frame, as the seeds found them (boxes clipped to the frame)."""
        frame = _as_bgr(frame_bgr)
        height, width = frame.shape[:2]
        if height == 0 or width == 0:
            return Faces.empty()
        blob = cv2.dnn.blobFromImage(cv2.resize(frame, self.INPUT), 1.0, self.INPUT, self.MEAN)
        self._net.setInput(blob)
        out = self._net.forward().reshape(-1, 7)  # rows: image id, class, confidence, x1 y1 x2 y2 (0..1)
        out = out[out[:, 2] > self.confidence]
        xyxy, keep = _clip(out[:, 3:7] * np.array([width, height, width, height]), width, height)
        return Faces(xyxy=xyxy[keep], score=out[keep, 2])

    def describe(self) -> dict:
        """Name and confidence threshold."""
        return {"name": self.name, "confidence": self.confidence, "input": list(self.INPUT)}


def load_detector(kind: str = "yunet", **params) -> YuNetDetector | Res10Detector:
    """A detector by kind ('yunet' | 'res10'); params go to its constructor (e.g. profile='video')."""
    if kind == "yunet":
        return YuNetDetector(**params)
    if kind == "res10":
        return Res10Detector(**params)
    raise ValueError(f"unknown detector kind {kind!r}; use 'yunet' or 'res10'")
