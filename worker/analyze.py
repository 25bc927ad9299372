"""Offline analysis, no web and no queue: the worker's pipeline on a video, an image or a folder of images.

    python -m worker.analyze INPUT --out DIR [--device auto|cpu|gpu] [--preset P] [--max-height H]

Writes into DIR: the annotated video (annotated.mp4) or images (annotated/NAME.jpg), poster.jpg,
summary.json (the job result of docs/DATA.md), frames.jsonl (one line per frame, or per image naming
it, with each face's pixel box [x1, y1, x2, y2], label and scores), frames.csv (counts per frame or
image), persons.csv (one row per person) and faces/ (each person's best face). Prints the summary as
JSON on stdout: frames, seconds and fps are the processing's (the clip's own rate is video_fps).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from shared import results
from shared.config import get_settings, set_settings
from shared.errors import MaskwatchError
from worker.pipeline import run
from worker.pipeline.decode import is_image
from worker.pipeline.stats import KEYS, rate

# The web's per-frame and per-person CSV columns (shared/results.py), led by the image's name for
# folders of images, and the persons' best-face file.
FRAME_FIELDS = results.FRAME_COLUMNS
PERSON_FIELDS = [*results.PERSON_COLUMNS, "face_file"]


class _Outputs:
    """The per-frame JSONL and CSV and the per-person CSV of one run, written as frames arrive."""

    def __init__(self, out: Path, *, images: bool):
        self.out = out
        self.images = images
        lead = ["image"] if images else []
        # Open for the whole run, written frame by frame; close() closes all three.
        self._files = ExitStack()
        self.jsonl = self._files.enter_context(open(out / "frames.jsonl", "w"))  # noqa: SIM115
        frames_csv = self._files.enter_context(open(out / "frames.csv", "w", newline=""))  # noqa: SIM115
        self.frames_csv = csv.writer(frames_csv, lineterminator="\n")
        self.frames_csv.writerow(lead + FRAME_FIELDS)
        persons_csv = self._files.enter_context(open(out / "persons.csv", "w", newline=""))  # noqa: SIM115
        self.persons_csv = csv.writer(persons_csv, lineterminator="\n")
        self.persons_csv.writerow(lead + PERSON_FIELDS)
        (out / "faces").mkdir(exist_ok=True)

    def frame(self, doc: dict, image: str | None = None) -> None:
        """One frame document: a JSON line and a CSV row of counts."""
        if image is not None:
            doc = {"image": image, **doc}
        self.jsonl.write(json.dumps(doc) + "\n")
        lead = [] if image is None else [image]
        self.frames_csv.writerow(lead + results.frame_row(doc))

    def persons(self, outcome: run.Outcome, prefix: str = "", image: str | None = None) -> None:
        """Rows of persons.csv and the best-face JPEGs of one analysis."""
        for p in outcome.summary["persons"]:
            tid = p["track_id"]
            face = ""
            if tid in outcome.crops:
                face = f"faces/{prefix}person-{tid}.jpg"
                (self.out / face).write_bytes(outcome.crops[tid])
            lead = [] if image is None else [image]
            self.persons_csv.writerow(lead + results.person_row(p) + [face])

    def close(self) -> None:
        self._files.close()


class _Bar:
    """on_progress for run.analyse: a tqdm bar on stderr."""

    def __init__(self, desc: str, total: int | None = None):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="frame", file=sys.stderr, dynamic_ncols=True)

    def __call__(self, done: int, *, total: int | None = None, force: bool = False, **fields) -> None:
        if total and self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def analyse_video(src: Path, out: Path, settings) -> dict:
    """Annotated MP4 and statistics of one video into out; the summary."""
    outputs = _Outputs(out, images=False)
    bar = _Bar(src.name)
    try:
        with tempfile.TemporaryDirectory(prefix="maskwatch-cli-") as tmp:
            try:
                outcome = run.analyse_video(src, Path(tmp), settings=settings, on_progress=bar,
                                            on_frame=outputs.frame)
            finally:
                bar.close()
            shutil.move(outcome.output_path, out / "annotated.mp4")
            shutil.move(outcome.thumbnail_path, out / "poster.jpg")
        outputs.persons(outcome)
    finally:
        outputs.close()
    summary = {"input": str(src), "output": str(out / "annotated.mp4"), **outcome.summary}
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def analyse_images(paths: list[Path], out: Path, settings) -> dict:
    """Each image analysed on its own (models loaded once); annotated copies and totals into out."""
    from worker.loaded_models import get_models

    models = get_models()
    outputs = _Outputs(out, images=True)
    (out / "annotated").mkdir(exist_ok=True)
    bar = _Bar("images", total=len(paths))
    per_image, failed = [], []
    totals = {"face_frames": dict.fromkeys(("total", *KEYS), 0), "people": dict.fromkeys(("total", *KEYS), 0)}
    started = time.monotonic()
    try:
        for n, path in enumerate(paths):
            with tempfile.TemporaryDirectory(prefix="maskwatch-cli-") as tmp:
                try:
                    outcome = run.analyse_image(path, Path(tmp), settings=settings, models=models,
                                                on_frame=lambda doc, name=path.name: outputs.frame(doc, name))
                except MaskwatchError as e:
                    failed.append({"image": path.name, "error": str(e)})
                    continue
                finally:
                    bar(n + 1)
                shutil.move(outcome.output_path, out / "annotated" / f"{path.stem}.jpg")
            outputs.persons(outcome, prefix=f"{path.stem}-", image=path.name)
            s = outcome.summary
            for key in totals:
                for k in totals[key]:
                    totals[key][k] += s[key][k]
            per_image.append({"image": path.name, "width": s["width"], "height": s["height"],
                              "face_frames": s["face_frames"], "people": s["people"],
                              "compliance_rate": s["compliance_rate"]})
    finally:
        bar.close()
        outputs.close()
    seconds = time.monotonic() - started
    p, ff = totals["people"], totals["face_frames"]
    summary = {
        "input": str(paths[0].parent if len(paths) > 1 else paths[0]), "output": str(out / "annotated"),
        "images": len(paths), "failed": failed, **totals,
        "compliance_rate": rate(p["masked"], p["unmasked"], p["incorrect"]),
        "face_frame_compliance": rate(ff["masked"], ff["unmasked"], ff["incorrect"]),
        "processing_s": round(seconds, 2),
        "processing_fps": round(len(per_image) / seconds, 2) if seconds else None,
        "models": models.describe(image=True), "per_image": per_image,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return {**summary, "frames": len(per_image)}


def printed(summary: dict) -> dict:
    """What the CLI prints: the summary without the long lists, with processing frames, seconds, fps."""
    short = {k: v for k, v in summary.items() if k not in ("bins", "persons", "per_image")}
    short["video_fps"] = summary.get("fps")
    short["frames"] = summary.get("frames", summary.get("images"))
    short["seconds"] = summary.get("processing_s")
    short["fps"] = summary.get("processing_fps")
    return short


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (1 with a one-line message when the input is unusable)."""
    ap = argparse.ArgumentParser(prog="python -m worker.analyze", description=__doc__.split("\n\n")[0])
    ap.add_argument("input", type=Path, help="a video, an image, or a folder of images")
    ap.add_argument("--out", type=Path, required=True, help="output folder (created)")
    ap.add_argument("--device", choices=("auto", "cpu", "gpu"), help="overrides WORKER_DEVICE")
    ap.add_argument("--preset", help="libx264 preset (overrides X264_PRESET)")
    ap.add_argument("--max-height", type=int, help="output height cap (overrides OUTPUT_MAX_HEIGHT)")
    args = ap.parse_args(argv)
    settings = get_settings()
    changes = {"worker_device": args.device, "encoder_preset": args.preset,
               "output_max_height": args.max_height}
    settings = settings.replace(**{k: v for k, v in changes.items() if v is not None})
    set_settings(settings)
    src: Path = args.input
    if not src.exists():
        print(f"error: {src} does not exist", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        if src.is_dir():
            images = sorted(p for p in src.iterdir() if p.is_file() and is_image(p))
            if not images:
                print(f"error: no images (jpg, png, ...) in {src}", file=sys.stderr)
                return 1
            summary = analyse_images(images, args.out, settings)
        elif is_image(src):
            summary = analyse_images([src], args.out, settings)
            if summary["failed"]:
                print(f"error: {src.name}: {summary['failed'][0]['error']}", file=sys.stderr)
                return 1
        else:
            summary = analyse_video(src, args.out, settings)
    except MaskwatchError as e:
        print(f"error: {src.name}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(printed(summary), indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
