"""Evaluate detector + mask classifier on annotated scenes, ours beside the seeds', as JSON.

python -m models.evaluate --scenes DIR [--split val|train|all] [--limit N] [--detector-only]
                          [--profile still|video] [--param name=value ...] [--no-seeds]

DIR holds images/ and PASCAL VOC annotations/ (the layout of mask_scenes). Our pipeline is run
exactly as the worker runs it: YuNet -> crop_faces -> load_classifier(); the seeds' is res10 ->
tight crops -> their 2-class MobileNetV2. Detections match ground truth greedily at IoU >= 0.4.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from models.metrics import FINE_BINS, SIZE_BINS, Tally
from models.splits import split_of
from models.voc import read_scenes
from shared.assets import asset_path
from shared.errors import MaskwatchError

GOAL = {"recall": 0.85, "precision": 0.85}


@dataclass
class Pipeline:
    """A detector and (optionally) a classifier with its crop rule, plus what it measured."""

    name: str
    detector: object
    classifier: object | None = None
    crop: Callable[[np.ndarray, np.ndarray, int], np.ndarray] | None = None  # None: the worker's crop_faces
    tally: Tally = field(default_factory=Tally)
    fine: Tally = field(default_factory=lambda: Tally(bins=FINE_BINS))
    rules: object | None = None  # models.rules.Rules: also count labels as the worker sets them
    ruled: Tally = field(default_factory=Tally)
    detect_s: list = field(default_factory=list)
    classify_s: list = field(default_factory=list)
    classified_faces: int = 0

    def run(self, frame_bgr: np.ndarray, gt: np.ndarray, gt_labels: np.ndarray, iou: float) -> None:
        """Detect (and classify) one BGR frame, timing each stage, and count it against the truth."""
        t0 = time.perf_counter()
        faces = self.detector(frame_bgr)
        t1 = time.perf_counter()
        labels = probs = None
        if self.classifier is not None:
            probs = np.zeros((0, 3), np.float32)
            if len(faces):
                crops = self._crop(frame_bgr, faces.xyxy, self.classifier.input_size)
                probs = np.asarray(self.classifier(crops), np.float32)
            labels = probs.argmax(axis=1)
            self.classify_s.append(time.perf_counter() - t1)
            self.classified_faces += len(faces)
        self.detect_s.append(t1 - t0)
        self.tally.add(faces.xyxy, faces.score, gt, gt_labels, labels, iou)
        self.fine.add(faces.xyxy, faces.score, gt, gt_labels, None, iou)
        if self.rules is not None and probs is not None:
            from models.rules import face_quality, frame_labels

            # The worker leaves tiny, badly seen and low-confidence faces unlabelled (unknown).
            ruled = frame_labels(probs, faces.short_side, self.rules, face_quality(faces))
            self.ruled.add(faces.xyxy, faces.score, gt, gt_labels, ruled, iou)

    def _crop(self, frame_bgr: np.ndarray, xyxy: np.ndarray, size: int) -> np.ndarray:
        if self.crop is not None:
            return self.crop(frame_bgr, xyxy, size)
        from models.classify import crop_faces

        return crop_faces(frame_bgr, xyxy, size)

    def report(self) -> dict:
        """JSON-ready metrics and timing of everything run so far."""
        classify = self.classifier is not None
        out = {
            "detector": {**self.detector.describe(), "sha256": self.detector.sha256},
            **self.tally.summary(classification=classify),
            "recall_by_fine_size": {k: v["recall"] for k, v in self.fine.summary(False)["by_size"].items()},
            "faces_by_fine_size": {k: v["faces"] for k, v in self.fine.summary(False)["by_size"].items()},
        }
        overall = out["overall"]
        out["meets_goal"] = bool(
            (overall["recall"] or 0) >= GOAL["recall"] and (overall["precision"] or 0) >= GOAL["precision"]
        )
        det_ms = 1000 * np.asarray(self.detect_s)
        timing = {
            "detector_ms_per_image_mean": round(float(det_ms.mean()), 1) if len(det_ms) else None,
            "detector_ms_per_image_median": round(float(np.median(det_ms)), 1) if len(det_ms) else None,
        }
        if classify:
            c = self.classifier
            out["classifier"] = {
                "name": getattr(c, "name", type(c).__name__),
                "backend": getattr(c, "backend", None),
                "input_size": c.input_size,
                "crop": "seeds' tight box, stretched" if self.crop is seed_crops else "crop_faces (worker)",
                "sha256": getattr(c, "sha256", None),
            }
            total = sum(self.classify_s)
            timing["classifier_ms_per_image_mean"] = round(1000 * total / max(len(self.classify_s), 1), 1)
            timing["classifier_ms_per_face"] = (
                round(1000 * total / self.classified_faces, 2) if self.classified_faces else None
            )
        out["timing"] = timing
        if self.rules is not None and classify:
            r = self.ruled.summary(labelled=True)
            keep = ("labelled_share", "mask_accuracy_3class_labelled", "mask_accuracy_binary_labelled")
            out["with_worker_rules"] = {
                "rules": {k: getattr(self.rules, k)
                          for k in ("min_face_px", "min_confidence", "min_quality")},
                "overall": {k: r["overall"][k] for k in keep},
                "by_size": {b: {k: v[k] for k in keep} for b, v in r["by_size"].items()},
            }
        return out


def seed_crops(frame_bgr: np.ndarray, xyxy: np.ndarray, size: int) -> np.ndarray:
    """(N, size, size, 3) uint8 RGB crops cut as the seeds cut them: the box as is, stretched to a square."""
    h, w = frame_bgr.shape[:2]
    out = np.empty((len(xyxy), size, size, 3), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(np.asarray(xyxy).reshape(-1, 4)):
        x1, y1 = min(max(int(x1), 0), w - 1), min(max(int(y1), 0), h - 1)
        x2, y2 = max(min(int(x2), w), x1 + 1), max(min(int(y2), h), y1 + 1)
        out[i] = cv2.resize(frame_bgr[y1:y2, x1:x2], (size, size))[..., ::-1]
    return out


def default_split(scenes_dir: Path) -> str:
    """'val' when scenes_dir is the mask_scenes asset (whose split models.splits fixes), else 'all'."""
    try:
        asset = asset_path("mask_scenes").resolve()
    except MaskwatchError:
        return "all"
    return "val" if Path(scenes_dir).resolve() == asset else "all"


def _param(text: str) -> tuple[str, object]:
    name, sep, raw = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--param takes name=value, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name.strip(), value


def build_pipelines(args: argparse.Namespace) -> list[Pipeline]:
    """Ours (YuNet + our classifier) and, unless --no-seeds, the seeds' (res10 + seed classifier)."""
    from models.detect import load_detector

    ours = Pipeline("ours", load_detector("yunet", profile=args.profile, **dict(args.param)))
    pipes = [ours]
    if not args.no_seeds:
        pipes.append(Pipeline("seeds", load_detector("res10"), crop=seed_crops))
    if not args.detector_only:
        from models.baselines import SeedClassifier
        from models.classify import load_classifier

        ours.classifier = load_classifier(backend=args.backend)
        ours.rules = _worker_rules()
        if not args.no_seeds:
            pipes[1].classifier = SeedClassifier()
        for p in pipes:
            # Warm-up: the first call traces graphs / allocates tensors; keep it out of the timings.
            s = p.classifier.input_size
            p.classifier(np.zeros((1, s, s, 3), np.uint8))
    return pipes


def _worker_rules():
    """The worker's default labelling rules, or None where that module is absent."""
    try:
        from models.rules import Rules
    except ImportError:
        return None
    return Rules()


def evaluate(args: argparse.Namespace) -> dict:
    """Run every pipeline over the chosen scenes; the JSON-ready result."""
    scenes_dir = Path(args.scenes)
    split = args.split or default_split(scenes_dir)
    scenes = [s for s in read_scenes(scenes_dir) if split == "all" or split_of(s.stem) == split]
    if args.limit:
        scenes = scenes[: args.limit]
    if not scenes:
        raise SystemExit(f"error: no annotated images in {scenes_dir} for split {split!r}")
    pipes = build_pipelines(args)
    started = time.perf_counter()
    for scene in scenes:
        frame = cv2.imread(str(scene.image_path), cv2.IMREAD_COLOR)
        if frame is None:
            raise SystemExit(f"error: cannot read image {scene.image_path}")
        for p in pipes:
            p.run(frame, scene.boxes, scene.labels, args.iou)
    return {
        "scenes": str(scenes_dir),
        "split": split,
        "images": len(scenes),
        "faces": int(sum(len(s.boxes) for s in scenes)),
        "iou_threshold": args.iou,
        "size_bins_px": {name: [lo, None if hi == float("inf") else hi] for name, lo, hi in SIZE_BINS},
        "goal": GOAL,
        "cv2_threads": cv2.getNumThreads(),
        "wall_s": round(time.perf_counter() - started, 1),
        "pipelines": {p.name: p.report() for p in pipes},
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m models.evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=Path, required=True, help="folder with images/ and annotations/")
    ap.add_argument(
        "--split",
        choices=("val", "train", "all"),
        default=None,
        help="default: val for the mask_scenes asset, all for any other folder",
    )
    ap.add_argument("--limit", type=int, default=0, help="first N images of the split only")
    ap.add_argument("--detector-only", action="store_true", help="skip the classifiers (fast tuning)")
    ap.add_argument("--profile", default="still", help="YuNet profile: still | video")
    ap.add_argument(
        "--param",
        type=_param,
        action="append",
        default=[],
        help="override a YuNet parameter, e.g. --param scale=2 --param score_threshold=0.6",
    )
    ap.add_argument("--backend", default="auto", help="our classifier's backend: auto | litert | keras")
    ap.add_argument("--no-seeds", action="store_true", help="skip the seeds' pipeline")
    ap.add_argument("--iou", type=float, default=0.4, help="IoU needed to match a detection to a face")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Print the evaluation JSON; a one-line error and exit status 1 when a model is missing."""
    args = parse_args(argv)
    try:
        result = evaluate(args)
    except MaskwatchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
