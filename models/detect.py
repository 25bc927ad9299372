"""Face detection: YuNet, tuned for small CCTV faces (the seeds' res10 SSD is in models.baselines).

Each detector is a callable `frame_bgr (H, W, 3) uint8 -> Faces` with `name` and `sha256` (of its
model file) attributes. Build one with `load_detector(kind, **params)`. Neither sets OpenCV's thread
count: that is the process's decision (the worker's), not this module's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np

from models.faces import Faces
from models.metrics import iou_matrix
from shared.assets import asset_path, manifest, sha256_file

# YuNet pads its input to a multiple of 32 and returns garbage (inf boxes) on slivers thinner
# than that, so tiny frames are padded up to this size first.
_MIN_INPUT = 32
# Columns of YuNet's rows holding x and y pixel coordinates (box corner, then 5 landmarks).
_X_COLS = [0, 4, 6, 8, 10, 12]
_Y_COLS = [1, 5, 7, 9, 11, 13]


# YuNet draws its box from brow to chin; mask_scenes' annotators (and so our classifier's training
# crops) box the face lower and narrower. Fitted on the train split's matched faces (medians, stable
# across working scales 1-3 and across both splits): centre shift (dx, dy) in units of the detected
# box's width/height, then width and height factors. It lifts median IoU and crops line up with training.
ANNOTATION_BOX_FIT = (0.02, 0.13, 1.04, 0.90)


@dataclass(frozen=True)
class YuNetParams:
    """How YuNet runs on a frame (see PROFILES for the measured choices).

    scale: resize factor from frame to working image (2.0 doubles it: YuNet's smallest anchor is
    10 px, so faces under ~10-16 px are found only when enlarged); max_side: the working image's long
    side is then capped at this many pixels (0 = no cap), which bounds the cost per frame (YuNet's
    time grows with working pixels). tiles: split the working image into tiles x tiles overlapping
    tiles (1 = whole image) merged by NMS. score_threshold, nms_threshold, top_k: cv2.FaceDetectorYN's.
    box_fit: (dx, dy, sw, sh) applied to each box (centre shift in box widths/heights, then size
    factors) or None for YuNet's raw boxes. extra_scales: more working scales run on the same frame
    (each capped by max_side; a scale that gives the same working size as another runs once); their
    detections, taken at pass_threshold, are fused with the first scale's (models.detect.fuse_passes:
    a face's score is the mean of its best score in each pass, 0 where a pass missed it) and the fused
    score is compared with score_threshold. A face found at two scales is more likely a face.
    """

    scale: float = 1.0
    max_side: int = 0
    tiles: int = 1
    tile_overlap: float = 0.15
    score_threshold: float = 0.6
    nms_threshold: float = 0.3
    top_k: int = 5000
    box_fit: tuple[float, float, float, float] | None = ANNOTATION_BOX_FIT
    extra_scales: tuple[float, ...] = ()
    pass_threshold: float = 0.3
    fuse_iou: float = 0.5


# Chosen on the train split of mask_scenes (~400 px photos, 55% of faces < 24 px), checked on val;
# times on 2 shared cores. The tables behind these numbers are in docs/models-evaluation.md.
PROFILES: dict[str, YuNetParams] = {
    # Photos: enlarged 2x so that 10-24 px faces reach YuNet's anchors (train recall 0.64 -> 0.81
    # against 1x, precision 0.86); 2.5x/3x alone add ~1.5 points for 2-4x the time and lose large
    # faces. A second pass at 2.5x fused with the 2x one (scores averaged, thr 0.56, chosen on train:
    # the highest recall at train precision >= 0.85) gives train recall 0.842 at precision 0.853
    # against 0.817 / 0.860 for 2x alone (val 0.858 / 0.887 against 0.843 / 0.887) for ~3x the time
    # (~85 ms for a 400x300 photo); the cap keeps a 12 MP photo around a second, where both scales
    # reach the cap and one pass runs.
    "still": YuNetParams(scale=2.0, max_side=4096, extra_scales=(2.5,), score_threshold=0.56),
    # Video: a fixed working size, long side 960 (1080p -> 960x540, 720p -> 960x540, small clips
    # enlarged up to 2x), so a frame costs ~35-40 ms on 2 idle cores whatever the source (the
    # worker's budget is 25-40). The price is paid by small faces of large frames: at 1080p, recall
    # is 0.10 for faces < 24 px, 0.52 at 24-48 px, 0.89 at >= 48 px (max_side=1920: 0.46/0.88/0.96
    # at ~5x the time).
    "video": YuNetParams(scale=2.0, max_side=960),
    # Privacy (the anonymised export, and the check of it): as many faces as the model can find, false
    # alarms welcome. Photos' 2x enlargement up to 1920 px wide (1080p at 1x: ~4x the video cost) and
    # the lowest threshold that still keeps textures out.
    "sensitive": YuNetParams(scale=2.0, max_side=1920, score_threshold=0.3),
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
        thr = p.pass_threshold if p.extra_scales else p.score_threshold
        self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), thr, p.nms_threshold, p.top_k)
        self._size: tuple[int, int] = (320, 320)
        # One detector (network) per extra scale: each keeps its own input size between frames.
        self._extra = [
            YuNetDetector(replace(p, scale=scale, extra_scales=(), score_threshold=p.pass_threshold),
                          model_path=model_path)
            for scale in p.extra_scales
        ]

    def working_scale(self, width: int, height: int) -> float:
        """Factor from frame pixels to working-image pixels for a frame of this size."""
        p = self.params
        s = p.scale
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
                rows[:, _X_COLS] += x
                rows[:, _Y_COLS] += y
                parts.append(rows)
        rows = np.concatenate(parts) if parts else np.zeros((0, 15), np.float32)
        if len(rows) < 2:
            return rows
        keep = cv2.dnn.NMSBoxes(
            rows[:, :4].tolist(), rows[:, 14].tolist(), p.score_threshold, p.nms_threshold
        )
        return rows[np.asarray(keep, np.int64).reshape(-1)]

    def _boxes(self, rows: np.ndarray) -> np.ndarray:
        """(K, 4) x1, y1, x2, y2 working-image boxes of YuNet rows, after box_fit."""
        x, y, w, h = (rows[:, i].astype(np.float32) for i in range(4))
        if self.params.box_fit is not None:
            dx, dy, sw, sh = self.params.box_fit
            x, y = x + w * (0.5 + dx - sw / 2), y + h * (0.5 + dy - sh / 2)
            w, h = w * sw, h * sh
        return np.stack([x, y, x + w, y + h], axis=1)

    def _frame_rows(self, frame: np.ndarray) -> np.ndarray:
        """(K, 15) raw YuNet rows of one pass at this detector's working scale, in frame pixels."""
        height, width = frame.shape[:2]
        s = self.working_scale(width, height)
        if s != 1.0:
            size = (max(1, round(width * s)), max(1, round(height * s)))
            # Halving or more needs INTER_AREA against aliasing; above that LINEAR finds the same faces
            # (measured) and is ~10x faster for odd ratios (720p -> 960x540: 0.6 ms vs 5.5 ms).
            interp = cv2.INTER_AREA if s <= 0.5 else cv2.INTER_LINEAR
            image = cv2.resize(frame, size, interpolation=interp)
            sx, sy = size[0] / width, size[1] / height
        else:
            image, sx, sy = frame, 1.0, 1.0
        rows = self._detect_tiled(image) if self.params.tiles > 1 else self._detect(image)
        rows = rows.astype(np.float32, copy=True)
        rows[:, _X_COLS + [2]] /= sx
        rows[:, _Y_COLS + [3]] /= sy
        return rows

    def __call__(self, frame_bgr: np.ndarray) -> Faces:
        """Faces of one BGR uint8 frame; boxes and landmarks in frame pixels, clipped to the frame."""
        frame = _as_bgr(frame_bgr)
        height, width = frame.shape[:2]
        if height == 0 or width == 0:
            return Faces.empty()
        rows = self._frame_rows(frame)
        if self._extra:
            sizes = {self._working_size(width, height)}
            passes = [rows]
            for det in self._extra:
                size = det._working_size(width, height)
                if size not in sizes:  # capped by max_side to a size already run: the same pass
                    sizes.add(size)
                    passes.append(det._frame_rows(frame))
            rows = fuse_passes(passes, self.params.fuse_iou)
            rows = rows[rows[:, 14] >= self.params.score_threshold]
        if len(rows) == 0:
            return Faces.empty()
        xyxy = self._boxes(rows)
        landmarks = rows[:, 4:14].reshape(-1, 5, 2).copy()
        xyxy, keep = _clip(xyxy, width, height)
        landmarks = np.clip(landmarks, 0, [width, height]).astype(np.float32)
        return Faces(xyxy=xyxy[keep], score=rows[keep, 14], landmarks=landmarks[keep])

    def _working_size(self, width: int, height: int) -> tuple[int, int]:
        s = self.working_scale(width, height)
        return (max(1, round(width * s)), max(1, round(height * s)))

    def describe(self) -> dict:
        """Name, profile and every parameter, for logs and the evaluation's JSON."""
        return {"name": self.name, "profile": self.profile, **asdict(self.params)}


def fuse_passes(passes: list[np.ndarray], iou_threshold: float = 0.5) -> np.ndarray:
    """(K, 15) YuNet rows fused from several passes over one frame (rows in frame pixels).

    Highest score first, each row gathers the best-scoring unused row of every other pass that overlaps
    it at IoU >= iou_threshold (other overlapping rows are duplicates and are dropped). The fused row's
    box and landmarks are the score-weighted mean of its members', its score the sum of their scores
    divided by the number of passes: a face missed by a pass counts 0 there.
    """
    passes = [np.asarray(p, np.float32).reshape(-1, 15) for p in passes]
    rows = np.concatenate(passes)
    if len(passes) < 2 or len(rows) == 0:
        return rows
    which = np.concatenate([np.full(len(p), k) for k, p in enumerate(passes)])
    boxes = np.concatenate([rows[:, :2], rows[:, :2] + rows[:, 2:4]], axis=1)
    iou = iou_matrix(boxes, boxes)
    used = np.zeros(len(rows), bool)
    fused = []
    for i in np.argsort(-rows[:, 14], kind="stable"):
        if used[i]:
            continue
        members = [i]
        used[i] = True
        near = ~used & (iou[i] >= iou_threshold)
        for k in range(len(passes)):
            cand = np.flatnonzero(near & (which == k))
            if k != which[i] and len(cand):
                members.append(int(cand[np.argmax(rows[cand, 14])]))
        used[near] = True
        m = rows[members]
        row = (m * m[:, 14:15]).sum(axis=0) / max(float(m[:, 14].sum()), 1e-6)
        row[14] = m[:, 14].sum() / len(passes)
        fused.append(row)
    return np.asarray(fused, np.float32).reshape(-1, 15)


def load_detector(kind: str = "yunet", **params):
    """A detector by kind ('yunet' | 'res10'); params go to its constructor (e.g. profile='video')."""
    if kind == "yunet":
        return YuNetDetector(**params)
    if kind == "res10":
        from models.baselines import Res10Detector

        return Res10Detector(**params)
    raise ValueError(f"unknown detector kind {kind!r}; use 'yunet' or 'res10'")
