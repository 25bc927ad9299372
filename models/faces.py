"""The one record of faces that flows through every stage (supervision's Detections, trimmed)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Class indices of the mask classifier's output and of Faces.label; -1 = unknown (a face that cannot
# be judged on this frame), -2 = rejected (a detection on a track that is not a person: not a face).
LABELS = ("masked", "unmasked", "incorrect")
MASKED, UNMASKED, INCORRECT, UNKNOWN, REJECTED = 0, 1, 2, -1, -2


def label_name(label: int) -> str:
    """'masked' | 'unmasked' | 'incorrect' | 'unknown' | 'rejected'."""
    if label == REJECTED:
        return "rejected"
    return LABELS[label] if 0 <= label < len(LABELS) else "unknown"


@dataclass
class Faces:
    """Faces of one frame; every array has N rows.

    xyxy: (N, 4) float32 pixel box x1, y1, x2, y2 in the frame; score: (N,) detector confidence;
    landmarks: (N, 5, 2) float32 pixels (eyes, nose, mouth corners) or zeros; probs: (N, 3) float32
    class probabilities in LABELS order (NaN until classified); label: (N,) int8 in LABELS, -1
    (unknown) or -2 (rejected); track_id: (N,) int32, -1 until tracked; quality: (N,) float32
    visibility in [0, 1] (models.rules.face_quality; NaN until labelled).
    """

    xyxy: np.ndarray
    score: np.ndarray
    landmarks: np.ndarray = field(default=None)
    probs: np.ndarray = field(default=None)
    label: np.ndarray = field(default=None)
    track_id: np.ndarray = field(default=None)
    quality: np.ndarray = field(default=None)

    def __post_init__(self) -> None:
        n = len(self.xyxy)
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(n, 4)
        self.score = np.asarray(self.score, dtype=np.float32).reshape(n)
        if self.landmarks is None:
            self.landmarks = np.zeros((n, 5, 2), np.float32)
        if self.probs is None:
            self.probs = np.full((n, len(LABELS)), np.nan, np.float32)
        if self.label is None:
            self.label = np.full(n, UNKNOWN, np.int8)
        if self.track_id is None:
            self.track_id = np.full(n, -1, np.int32)
        if self.quality is None:
            self.quality = np.full(n, np.nan, np.float32)
        for name in ("landmarks", "probs", "label", "track_id", "quality"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"Faces.{name} has {len(getattr(self, name))} rows, xyxy has {n}")

    @classmethod
    def empty(cls) -> Faces:
        """No faces."""
        return cls(xyxy=np.zeros((0, 4), np.float32), score=np.zeros(0, np.float32))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index) -> Faces:
        """Rows selected by a mask, slice or index array."""
        return Faces(
            xyxy=self.xyxy[index],
            score=self.score[index],
            landmarks=self.landmarks[index],
            probs=self.probs[index],
            label=self.label[index],
            track_id=self.track_id[index],
            quality=self.quality[index],
        )

    @property
    def short_side(self) -> np.ndarray:
        """(N,) shorter box side in pixels."""
        wh = self.xyxy[:, 2:] - self.xyxy[:, :2]
        return wh.min(axis=1) if len(self) else np.zeros(0, np.float32)
