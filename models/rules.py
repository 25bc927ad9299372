"""The analysis rules: when a face-frame gets a label, when a person's vote is decided."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from models.faces import UNKNOWN


@dataclass(frozen=True)
class Rules:
    """Thresholds that turn classifier output into labels and votes (recorded in each job's settings).

    min_face_px: faces whose box's short side is smaller are not classified (label unknown): below it
    the crop holds too few pixels to see a mask. min_confidence: a face-frame whose top probability is
    lower stays unknown. A person's vote is unknown unless they were tracked for vote_min_frames frames,
    vote_min_decided of them with a label, and the winning class holds vote_min_share of the summed
    probabilities of those frames.
    """

    min_face_px: int = 12
    min_confidence: float = 0.5
    vote_min_frames: int = 5
    vote_min_decided: int = 3
    vote_min_share: float = 0.6
    # Frames whose faces are classified in one call: batching across frames amortises the call. A crowd
    # fills the call early (classify_max_faces), which keeps memory and cancel latency bounded.
    classify_window: int = 8
    classify_max_faces: int = 64

    def describe(self) -> dict:
        """Every rule, for the job's settings record."""
        return asdict(self)

    def for_images(self) -> Rules:
        """A still image is one frame: one decided face-frame is a whole vote."""
        return Rules(**{**asdict(self), "vote_min_frames": 1, "vote_min_decided": 1, "classify_window": 1})


def frame_labels(probs: np.ndarray, short_side: np.ndarray, rules: Rules) -> np.ndarray:
    """(N,) int8 labels from (N, 3) probabilities and (N,) face sizes in pixels; -1 = unknown."""
    labels = np.full(len(probs), UNKNOWN, np.int8)
    if len(probs) == 0:
        return labels
    ok = np.isfinite(probs).all(axis=1) & (short_side >= rules.min_face_px)
    best = np.argmax(np.nan_to_num(probs, nan=-1.0), axis=1)
    top = np.take_along_axis(np.nan_to_num(probs, nan=0.0), best[:, None], axis=1)[:, 0]
    ok &= top >= rules.min_confidence
    labels[ok] = best[ok]
    return labels


def vote(frames: int, decided: int, prob_sums: np.ndarray, rules: Rules) -> int:
    """A person's label from their frame count, decided frame count and (3,) summed probabilities."""
    if frames < rules.vote_min_frames or decided < rules.vote_min_decided:
        return UNKNOWN
    total = float(np.sum(prob_sums))
    if total <= 0:
        return UNKNOWN
    best = int(np.argmax(prob_sums))
    return best if prob_sums[best] / total >= rules.vote_min_share else UNKNOWN
