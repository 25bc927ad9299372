"""The analysis rules: how well a face can be seen, when a face-frame gets a label, when a track is a
person, and how a person's vote is decided."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from models.faces import MASKED, UNKNOWN, Faces


@dataclass(frozen=True)
class Rules:
    """Thresholds that turn detections and classifier output into labels, people and votes.

    Recorded in each job's settings. Frame level: faces whose box's short side is under min_face_px
    are not classified; a classified face-frame gets a label only when its visibility (face_quality:
    detector confidence x frontal pose from the landmarks) is at least min_quality and its top
    probability at least min_confidence; otherwise it is unknown ("can't tell"). Track level: a track
    becomes a counted person once it has person_min_frames detections, one of them at least
    person_peak_score and their mean at least person_mean_score (short-lived, low-confidence tracks
    are false detections: shoulders, hair, blurred background); otherwise its detections are rejected.
    Vote: each labelled frame is a vote for its label, weighted by its visibility; a vote needs
    vote_min_frames tracked and vote_min_decided labelled frames and vote_min_weight summed weight.
    The person is compliant (masked) when masked holds at least compliant_share of that weight, not
    compliant when it holds at most violation_share (the larger of unmasked and incorrect wins),
    unknown in between: someone seen without the mask for 30% of the time was not compliant.
    """

    # Chosen on mask_scenes train (detector boxes): the most faces labelled whose labels are no less
    # often right than with the former 12 px / 0.5 (train: 87% labelled at 0.982 against 81% at 0.979;
    # docs/models-evaluation.md): the surer classifier output pays for labelling 8-12 px faces.
    min_face_px: int = 8
    min_confidence: float = 0.7
    min_quality: float = 0.35
    person_min_frames: int = 5
    person_peak_score: float = 0.7
    person_mean_score: float = 0.55
    vote_min_frames: int = 5
    vote_min_decided: int = 3
    vote_min_weight: float = 1.5
    compliant_share: float = 0.75
    violation_share: float = 0.7
    # Frames whose faces are classified in one call: batching across frames amortises the call. A crowd
    # fills the call early (classify_max_faces), which keeps memory and cancel latency bounded.
    classify_window: int = 8
    classify_max_faces: int = 64

    def describe(self) -> dict:
        """Every rule, for the job's settings record."""
        return asdict(self)

    def for_images(self) -> Rules:
        """A still image is one frame: one decided face-frame is a whole vote, any detection a face."""
        return Rules(**{**asdict(self), "vote_min_frames": 1, "vote_min_decided": 1, "vote_min_weight": 0.0,
                        "classify_window": 1, "person_min_frames": 1, "person_mean_score": 0.0,
                        "person_peak_score": 0.0})


# Visibility from YuNet's confidence and landmarks (right eye, left eye, nose, mouth corners).
# Measured on mask_scenes val detections: matched faces score 0.81-0.90 (quartiles), unmatched
# detections 0.35-0.54; frontal faces have eyes 0.31-0.44 box widths apart with the nose within
# 0.4 eye distances of the eyes' midpoint. Heads turned away or down, seen from above or from behind
# give small eye distances, a nose off to one side, or landmarks out of order.
SCORE_FLOOR, SCORE_FULL = 0.5, 0.8
EYES_FLOOR, EYES_FULL = 0.14, 0.24
NOSE_FULL, NOSE_CEIL = 0.45, 0.95


def face_quality(faces: Faces) -> np.ndarray:
    """(N,) visibility in [0, 1]: detector confidence x frontal pose (1 = clearly seen, 0 = can't tell)."""
    if len(faces) == 0:
        return np.zeros(0, np.float32)
    conf = np.clip((faces.score - SCORE_FLOOR) / (SCORE_FULL - SCORE_FLOOR), 0, 1)
    lm = faces.landmarks
    if not np.any(lm):  # a detector without landmarks (the seeds' res10): confidence alone
        return conf.astype(np.float32)
    width = np.maximum(faces.xyxy[:, 2] - faces.xyxy[:, 0], 1e-3)
    height = np.maximum(faces.xyxy[:, 3] - faces.xyxy[:, 1], 1e-3)
    r_eye, l_eye, nose, r_mouth, l_mouth = (lm[:, k] for k in range(5))
    eye_dist = np.linalg.norm(l_eye - r_eye, axis=1)
    eyes = np.clip((eye_dist / width - EYES_FLOOR) / (EYES_FULL - EYES_FLOOR), 0, 1)
    eye_mid, mouth_mid = (l_eye + r_eye) / 2, (l_mouth + r_mouth) / 2
    off = np.abs(nose[:, 0] - eye_mid[:, 0]) / np.maximum(eye_dist, 1e-3)
    nose_ok = np.clip((NOSE_CEIL - off) / (NOSE_CEIL - NOSE_FULL), 0, 1)
    # Eyes above the nose above the mouth, by a margin of the box height: a face the right way up.
    ordered = (nose[:, 1] - eye_mid[:, 1] > 0.05 * height) & (mouth_mid[:, 1] - nose[:, 1] > 0.03 * height)
    return (conf * eyes * nose_ok * ordered).astype(np.float32)


def frame_labels(probs: np.ndarray, short_side: np.ndarray, rules: Rules,
                 quality: np.ndarray | None = None) -> np.ndarray:
    """(N,) int8 labels from (N, 3) probabilities, (N,) face sizes in pixels and visibility; -1 = unknown."""
    labels = np.full(len(probs), UNKNOWN, np.int8)
    if len(probs) == 0:
        return labels
    ok = np.isfinite(probs).all(axis=1) & (short_side >= rules.min_face_px)
    if quality is not None:
        ok &= quality >= rules.min_quality
    best = np.argmax(np.nan_to_num(probs, nan=-1.0), axis=1)
    top = np.take_along_axis(np.nan_to_num(probs, nan=0.0), best[:, None], axis=1)[:, 0]
    ok &= top >= rules.min_confidence
    labels[ok] = best[ok]
    return labels


def is_person(frames: int, peak_score: float, mean_score: float, rules: Rules) -> bool:
    """Whether a track's detections so far are evidence of a real face (see Rules)."""
    return (frames >= rules.person_min_frames and peak_score >= rules.person_peak_score
            and mean_score >= rules.person_mean_score)


def rejection_reason(frames: int, peak_score: float, mean_score: float, rules: Rules) -> str:
    """Why a track was not counted as a person, in words for the results page."""
    if frames < rules.person_min_frames:
        return f"seen on {frames} frames only (needs {rules.person_min_frames})"
    if peak_score < rules.person_peak_score:
        return f"never detected confidently (best {peak_score:.2f}, needs {rules.person_peak_score})"
    return f"detections mostly uncertain (mean {mean_score:.2f}, needs {rules.person_mean_score})"


def vote(frames: int, decided: int, weighted: np.ndarray, rules: Rules) -> int:
    """A person's label from frame counts and (3,) visibility-weighted label counts of labelled frames."""
    total = float(np.sum(weighted))
    if frames < rules.vote_min_frames or decided < rules.vote_min_decided or total <= 0:
        return UNKNOWN
    if total < rules.vote_min_weight:
        return UNKNOWN
    masked = float(weighted[MASKED]) / total
    if masked >= rules.compliant_share:
        return MASKED
    if masked <= rules.violation_share:
        others = np.array(weighted, np.float64).copy()
        others[MASKED] = -1
        return int(np.argmax(others))
    return UNKNOWN


def unknown_reason(frames: int, classified: int, decided: int, weighted: np.ndarray, rules: Rules) -> str:
    """Why a person's vote is unknown, in words for the results page."""
    if frames < rules.vote_min_frames:
        return f"seen on {frames} frames only"
    if classified == 0:
        return f"face always smaller than {rules.min_face_px} px"
    if decided < rules.vote_min_decided or float(np.sum(weighted)) < rules.vote_min_weight:
        return "face never seen clearly enough (turned away, from above, blurred or covered)"
    return "mask seen on some frames and not on others: too close to call"
