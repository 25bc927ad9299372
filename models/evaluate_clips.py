"""Clip-level evaluation: the worker's own pipeline on labelled clips, judged as a user would judge it.

    python -m models.evaluate_clips DIR [--split eval|tune|all] [--seeds] [--out WORK]
    python -m models.evaluate_clips DIR --all-unmasked [--split eval|mine|all]   # pre-2020 footage
    python -m models.evaluate_clips --composed [--photos N]                       # tracking score

DIR holds clips and a LABELS.json ({clip: {truth_rate, max_people, min_decided}}, the format of
shared/data/clips). Each clip runs through `python -m worker.analyze` in a child process (the
worker's pipeline, unchanged; models/ never imports worker/), and is judged right when its
compliance rate is within RATE_TOLERANCE of the truth, at least min_decided people were decided and
at most max_people were counted. --all-unmasked is for footage recorded before 2020 with no labels:
every decided person should be unmasked. --composed builds crowd clips from mask_scenes' validation
photos (pans, zooms, people entering and leaving), so every frame has true boxes, and scores tracking:
distinct people counted against the truth, identity switches and false tracks.

Prints one JSON document; with --seeds, the seeds' pipeline (res10 + their classifier, no tracking:
people = most faces in one frame, rate = masked share of face-frames) runs alongside.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from models import clip_splits
from shared.config import ROOT

RATE_TOLERANCE = 0.1
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".gif", ".webm", ".m4v"}


def analyse(clip: Path, out: Path) -> dict:
    """The worker's summary of one clip (runs `python -m worker.analyze` in a child process)."""
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "worker.analyze", str(clip), "--out", str(out), "--preset", "ultrafast"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{clip.name}: worker.analyze failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads((out / "summary.json").read_text())


def judge(summary: dict, truth: dict) -> dict:
    """Counted / decided / unknown people, the rate against the truth and the verdict by the rule."""
    people = summary["people"]
    decided = people["masked"] + people["unmasked"] + people["incorrect"]
    rate = summary.get("compliance_rate")
    row = {
        "counted": people["total"], "decided": decided, "unknown": people["unknown"],
        "masked": people["masked"], "rejected": summary.get("rejected_tracks", 0),
        "rate": rate, "truth_rate": truth.get("truth_rate"),
        "max_people": truth.get("max_people"), "min_decided": truth.get("min_decided"),
        "fps": summary.get("processing_fps"),
    }
    reasons = []
    if truth.get("truth_rate") is not None:
        if rate is None:
            reasons.append("nobody decided")
        elif abs(rate - truth["truth_rate"]) > RATE_TOLERANCE:
            reasons.append(f"rate {rate} vs truth {truth['truth_rate']}")
    if truth.get("min_decided") is not None and decided < truth["min_decided"]:
        reasons.append(f"decided {decided} < {truth['min_decided']}")
    if truth.get("max_people") is not None and people["total"] > truth["max_people"]:
        reasons.append(f"counted {people['total']} > {truth['max_people']}")
    row["right"] = not reasons
    row["why"] = "; ".join(reasons)
    return row


def labelled_clips(folder: Path, split: str, labels_path: Path | None = None) -> list[tuple[Path, dict]]:
    """(clip, truth) pairs of a LABELS.json folder, in file order, restricted to a split."""
    labels = json.loads((labels_path or folder / "LABELS.json").read_text())
    pairs = []
    for name, truth in labels.items():
        if name.startswith("_"):
            continue
        if split == "all" or clip_splits.clip_split(folder.name, name) == split:
            pairs.append((folder / name, truth))
    return pairs


def unlabelled_clips(folder: Path, split: str, limit: int | None) -> list[tuple[Path, dict]]:
    """Pre-2020 clips of a split: nobody masked, no count or decision target."""
    clips = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    clips = [p for p in clips if split == "all" or clip_splits.pre2020_split(p.name) == split]
    return [(p, {"truth_rate": None}) for p in clips[:limit]]


def evaluate_folder(pairs: list[tuple[Path, dict]], work: Path, *, seeds: bool) -> dict:
    """Per-clip rows and totals for labelled (or pre-2020) clips."""
    rows, seed_rows = {}, {}
    seed = None
    for clip, truth in pairs:
        started = time.monotonic()
        summary = analyse(clip, work / clip.stem)
        row = judge(summary, truth)
        row["wall_s"] = round(time.monotonic() - started, 2)
        rows[clip.name] = row
        if seeds:
            from models import baselines

            seed = seed or baselines.SeedPipeline()
            seed_rows[clip.name] = judge(seed.summary(clip), truth)
        print(f"{clip.name}: {'right' if row['right'] else 'WRONG ' + row['why']}", file=sys.stderr)
    out = {"clips": rows, "total": totals(rows)}
    if seeds:
        out["seeds"] = {"clips": seed_rows, "total": totals(seed_rows)}
    return out


def totals(rows: dict) -> dict:
    """Right clips, people counted/decided/masked over all clips, and the masked share of the decided."""
    decided = sum(r["decided"] for r in rows.values())
    masked = sum(r["masked"] for r in rows.values())
    return {
        "clips": len(rows), "right": sum(r["right"] for r in rows.values()),
        "counted": sum(r["counted"] for r in rows.values()), "decided": decided, "masked": masked,
        "masked_share_of_decided": round(masked / decided, 4) if decided else None,
        "clips_with_a_masked_person": sum(r["masked"] > 0 for r in rows.values()),
        "mean_fps": round(float(np.mean([r["fps"] or 0 for r in rows.values()])), 2) if rows else None,
    }


def evaluate_composed(work: Path, photos: int, seed: int) -> dict:
    """Tracking score on crowd clips composed from validation photos (true boxes on every frame)."""
    from models import compose, tracking_score

    scenes = compose.validation_scenes(min_faces=6)
    rng = np.random.default_rng(seed)
    chosen = [scenes[i] for i in rng.choice(len(scenes), size=min(photos * 3, len(scenes)), replace=False)]
    clips = {}
    work.mkdir(parents=True, exist_ok=True)
    for k, kind in enumerate(compose.MOTIONS):
        group = chosen[k * photos:(k + 1) * photos]
        if not group:
            break
        path = work / f"composed_{kind}.mp4"
        truth = compose.write_clip(path, group, motion=kind, seed=seed + k)
        analyse(path, work / path.stem)
        frames = [json.loads(line) for line in (work / path.stem / "frames.jsonl").read_text().splitlines()]
        summary = json.loads((work / path.stem / "summary.json").read_text())
        clips[path.name] = tracking_score.score(truth, frames, summary)
    true = sum(c["true_people"] for c in clips.values())
    counted = sum(c["counted"] for c in clips.values())
    return {"clips": clips, "total": {
        "true_people": true, "counted": counted,
        "count_error": round((counted - true) / true, 4) if true else None,
        "true_people_missed": sum(c["true_people_missed"] for c in clips.values()),
        "fragments": sum(c["fragments"] for c in clips.values()),
        "id_switches": sum(c["id_switches"] for c in clips.values()),
        "false_tracks": sum(c["false_tracks"] for c in clips.values()),
    }}


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints the evaluation as JSON."""
    ap = argparse.ArgumentParser(prog="python -m models.evaluate_clips", description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path, nargs="?",
                    help="folder of clips (with LABELS.json unless --all-unmasked)")
    ap.add_argument("--split", default="all",
                    help="eval | tune | all (labelled); eval | mine | all (pre-2020): models/clip_splits.py")
    ap.add_argument("--labels", type=Path, help="labels file (default DIR/LABELS.json; videos: "
                    "models/eval_labels/videos.json)")
    ap.add_argument("--all-unmasked", action="store_true", help="footage recorded before 2020, no labels")
    ap.add_argument("--limit", type=int, help="at most this many clips (pre-2020 folders)")
    ap.add_argument("--seeds", action="store_true", help="also run the seeds' pipeline")
    ap.add_argument("--composed", action="store_true", help="tracking score on composed crowd clips")
    ap.add_argument("--photos", type=int, default=4, help="photos per composed clip")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, help="keep the worker's outputs here (default: a temp folder)")
    args = ap.parse_args(argv)
    if not args.composed and args.dir is None:
        ap.error("give a folder of clips, or --composed")
    with tempfile.TemporaryDirectory(prefix="maskwatch-eval-") as tmp:
        work = args.out or Path(tmp)
        result: dict = {}
        if args.dir is not None:
            if args.all_unmasked:
                pairs = unlabelled_clips(args.dir, args.split, args.limit)
            else:
                pairs = labelled_clips(args.dir, args.split, args.labels)
            scores = evaluate_folder(pairs, work, seeds=args.seeds)
            result = {"dir": str(args.dir), "split": args.split, **scores}
        if args.composed:
            result["composed"] = evaluate_composed(work / "composed", args.photos, args.seed)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
