"""Detection and mask-classification metrics on boxes (pure numpy): IoU, greedy matching, size bins."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Face-size bins by the box's short side in pixels: [lo, hi). CCTV faces are mostly in the first.
SIZE_BINS: tuple[tuple[str, float, float], ...] = (
    ("lt24", 0.0, 24.0),
    ("24to48", 24.0, 48.0),
    ("ge48", 48.0, float("inf")),
)
# Finer bins for the small end, to show where the detector gives up.
FINE_BINS: tuple[tuple[str, float, float], ...] = (
    ("lt10", 0.0, 10.0),
    ("10to16", 10.0, 16.0),
    ("16to24", 16.0, 24.0),
    ("24to48", 24.0, 48.0),
    ("ge48", 48.0, float("inf")),
)
COMPLIANT = 0  # with_mask; without_mask and mask_weared_incorrect both count as not compliant


def short_side(xyxy: np.ndarray) -> np.ndarray:
    """(N,) shorter side in pixels of (N, 4) x1, y1, x2, y2 boxes."""
    xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
    return np.minimum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1])


def size_bin(sides: np.ndarray, bins=SIZE_BINS) -> np.ndarray:
    """(N,) index into bins of each short side in pixels."""
    sides = np.asarray(sides, np.float64).reshape(-1)
    edges = np.array([hi for _, _, hi in bins[:-1]])
    return np.searchsorted(edges, sides, side="right")


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) intersection over union of (N, 4) and (M, 4) x1, y1, x2, y2 boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_greedy(
    pred: np.ndarray, scores: np.ndarray, gt: np.ndarray, iou_threshold: float = 0.4
) -> tuple[np.ndarray, np.ndarray]:
    """Match predictions to ground truth, highest score first, each to its best free box.

    Returns (pred_to_gt (N,) int, gt_to_pred (M,) int), -1 where unmatched. A prediction takes the
    unmatched ground-truth box of highest IoU at or above the threshold (the COCO/VOC rule).
    """
    pred = np.asarray(pred, np.float64).reshape(-1, 4)
    gt = np.asarray(gt, np.float64).reshape(-1, 4)
    pred_to_gt = np.full(len(pred), -1, np.int64)
    gt_to_pred = np.full(len(gt), -1, np.int64)
    if len(pred) == 0 or len(gt) == 0:
        return pred_to_gt, gt_to_pred
    iou = iou_matrix(pred, gt)
    for i in np.argsort(-np.asarray(scores, np.float64).reshape(-1), kind="stable"):
        row = np.where(gt_to_pred < 0, iou[i], -1.0)
        j = int(np.argmax(row))
        if row[j] >= iou_threshold:
            pred_to_gt[i], gt_to_pred[j] = j, i
    return pred_to_gt, gt_to_pred


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 4) if den else None


@dataclass
class Tally:
    """Running counts for one pipeline over many images; summary() gives the JSON-ready metrics.

    Recall and mask accuracy are binned by the ground-truth face's short side; precision by the
    detection's own short side (a false positive has no ground truth to size it by).
    """

    bins: tuple = SIZE_BINS
    gt: np.ndarray = field(default=None)
    found: np.ndarray = field(default=None)
    det: np.ndarray = field(default=None)
    true_det: np.ndarray = field(default=None)
    classified: np.ndarray = field(default=None)
    labelled: np.ndarray = field(default=None)
    correct3: np.ndarray = field(default=None)
    correct2: np.ndarray = field(default=None)
    confusion: np.ndarray = field(default=None)

    def __post_init__(self) -> None:
        k = len(self.bins)
        for name in ("gt", "found", "det", "true_det", "classified", "labelled", "correct3", "correct2"):
            if getattr(self, name) is None:
                setattr(self, name, np.zeros(k, np.int64))
        if self.confusion is None:
            self.confusion = np.zeros((3, 3), np.int64)  # rows: truth, columns: predicted label

    def add(
        self,
        pred: np.ndarray,
        scores: np.ndarray,
        gt: np.ndarray,
        gt_labels: np.ndarray,
        pred_labels: np.ndarray | None = None,
        iou_threshold: float = 0.4,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Count one image: (N, 4) detections with (N,) scores and optional (N,) labels vs (M, 4) truth.

        Returns the matching (pred_to_gt, gt_to_pred) for callers that want more.
        """
        k = len(self.bins)
        pred = np.asarray(pred, np.float64).reshape(-1, 4)
        gt = np.asarray(gt, np.float64).reshape(-1, 4)
        gt_labels = np.asarray(gt_labels).reshape(-1)
        p2g, g2p = match_greedy(pred, scores, gt, iou_threshold)
        gbin = size_bin(short_side(gt), self.bins)
        pbin = size_bin(short_side(pred), self.bins)
        self.gt += np.bincount(gbin, minlength=k)
        self.found += np.bincount(gbin[g2p >= 0], minlength=k)
        self.det += np.bincount(pbin, minlength=k)
        self.true_det += np.bincount(pbin[p2g >= 0], minlength=k)
        if pred_labels is not None:
            pred_labels = np.asarray(pred_labels).reshape(-1)
            hit = np.flatnonzero(g2p >= 0)
            truth, guess = gt_labels[hit], pred_labels[g2p[hit]]
            ok = guess >= 0  # an unclassified face (label -1) counts as wrong, not as skipped
            b = gbin[hit]
            self.classified += np.bincount(b, minlength=k)
            self.labelled += np.bincount(b[ok], minlength=k)
            self.correct3 += np.bincount(b[ok & (guess == truth)], minlength=k)
            self.correct2 += np.bincount(b[ok & ((guess == COMPLIANT) == (truth == COMPLIANT))], minlength=k)
            np.add.at(self.confusion, (truth[ok], guess[ok]), 1)
        return p2g, g2p

    def summary(self, classification: bool = True, labelled: bool | None = None) -> dict:
        """Recall, precision and (optionally) mask accuracy, overall and per size bin.

        Mask accuracy counts a matched face left unlabelled (-1) as wrong; with labelled=True (default:
        when some face was unlabelled) the share labelled and the accuracy over those are added.
        """
        if labelled is None:
            labelled = int(self.labelled.sum()) < int(self.classified.sum())
        unknowns = classification and labelled

        def block(i: slice | int) -> dict:
            out = {
                "faces": int(np.sum(self.gt[i])),
                "recall": _ratio(int(np.sum(self.found[i])), int(np.sum(self.gt[i]))),
                "detections": int(np.sum(self.det[i])),
                "precision": _ratio(int(np.sum(self.true_det[i])), int(np.sum(self.det[i]))),
            }
            if classification:
                n = int(np.sum(self.classified[i]))
                out["mask_accuracy_3class"] = _ratio(int(np.sum(self.correct3[i])), n)
                out["mask_accuracy_binary"] = _ratio(int(np.sum(self.correct2[i])), n)
            if unknowns:
                m = int(np.sum(self.labelled[i]))
                out["labelled_share"] = _ratio(m, n)
                out["mask_accuracy_3class_labelled"] = _ratio(int(np.sum(self.correct3[i])), m)
                out["mask_accuracy_binary_labelled"] = _ratio(int(np.sum(self.correct2[i])), m)
            return out

        result = {"overall": block(slice(None))}
        result["by_size"] = {name: block(j) for j, (name, _, _) in enumerate(self.bins)}
        if classification:
            result["confusion_truth_by_predicted"] = self.confusion.tolist()
        return result
