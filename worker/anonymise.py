"""The anonymised export task: a copy of a finished clip with every face pixelated, kept with its outputs."""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from models.detect import load_detector
from shared import anonymised, jobs, result_docs, storage
from shared.celery_app import ANONYMISE, app
from shared.config import get_settings
from shared.db import RESULTS, UPLOADS
from shared.errors import BadInput, Cancelled, NotFound
from worker.loaded_models import set_threads
from worker.pipeline.anonymise import (
    BRIDGE_S,
    anonymise_image,
    anonymised_frames,
    boxed_frames,
    bridged_boxes,
    draw_compliance_boxes,
    leaks,
    stored_records,
)
from worker.pipeline.decode import VideoInfo, read_image, video_frames
from worker.pipeline.encode import VideoSink

log = logging.getLogger(__name__)
PASSES = 4  # blur, encode, check; what the check finds is blurred in the next pass


@cache
def sensitive_detector():
    """YuNet at its most sensitive profile, loaded once per worker process."""
    return load_detector("yunet", profile="sensitive")


@app.task(name=ANONYMISE, acks_late=True, reject_on_worker_lost=True,
          soft_time_limit=get_settings().job_time_limit_s, time_limit=get_settings().job_hard_limit_s)
def anonymise(job_id: str) -> str:
    """Make the requested anonymised export of a succeeded clip; records done or failed on the job."""
    job = anonymised.start(job_id)
    if job is None:
        return "skipped"  # deleted, or already taken by another delivery
    workdir = Path(tempfile.mkdtemp(prefix=f"maskwatch-anon-{job['_id']}-"))
    try:
        out = make_export(job, workdir)
        with open(out, "rb") as f:
            file_id = storage.put(RESULTS, f, export_name(job, out.suffix), content_type=_mime(out),
                                  metadata={"job_id": job["_id"], "role": "anonymised"})
        if not anonymised.finish(job["_id"], file_id):
            storage.delete(RESULTS, file_id)  # the clip was deleted meanwhile
            return "skipped"
        old = (job.get("anonymised") or {}).get("file_id")
        if old and old != file_id:
            storage.delete(RESULTS, old)  # the export this one replaces
        return "done"
    except (Cancelled, NotFound):
        return "skipped"
    except BadInput as e:
        anonymised.fail(job["_id"], str(e))
        return "failed"
    except Exception as e:  # noqa: BLE001 - an export failing must not take the worker down
        log.exception("anonymising job %s failed", job_id)
        anonymised.fail(job["_id"], f"the anonymised copy could not be made ({type(e).__name__})")
        return "failed"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def export_name(job: dict, suffix: str) -> str:
    """The stored file's name: the clip's stem, marked anonymised."""
    return f"{Path(job['filename']).stem}.anonymised{suffix}"


def _mime(path: Path) -> str:
    return "video/mp4" if path.suffix == ".mp4" else "image/jpeg"


def make_export(job: dict, workdir: Path) -> Path:
    """The anonymised MP4 (or JPEG) of a succeeded job, written in workdir."""
    settings = get_settings()
    src = storage.save_to(UPLOADS, job["input_id"], workdir / f"input{Path(job['filename']).suffix}")
    buckets = (job["result"].get("layout") or {}).get("buckets") or 0

    def records():
        return stored_records(b["json"] for b in result_docs.iter_buckets(job["_id"], buckets))

    detector = sensitive_detector()
    boxes = bool((job.get("anonymised") or {}).get("boxes"))
    if job["kind"] == "image":
        set_threads(video=False)
        image = read_image(src, max_pixels=settings.max_pixels)
        record = next(iter(records()), {"faces": []})
        out = anonymise_image(image, record, detector, out=workdir / "anonymised.jpg")
        if boxes:  # on the blurred image, which was checked face-free
            cv2.imwrite(str(out), draw_compliance_boxes(image, record), [cv2.IMWRITE_JPEG_QUALITY, 90])
        return out
    set_threads(video=True)
    info = VideoInfo.from_path(src, max_pixels=settings.max_pixels, max_seconds=settings.max_video_seconds)
    fps = info.fps or 25
    cover = bridged_boxes(records(), max_gap=round(BRIDGE_S * fps))
    total = (job["result"].get("frames") or info.frames or 1) * (5 if boxes else 4)  # write, check, box
    done = 0
    out = workdir / "anonymised.mp4"
    last = time.monotonic()

    def step() -> None:
        nonlocal done, last
        done += 1
        if time.monotonic() - last >= 1.0:
            last = time.monotonic()
            if not anonymised.progress(job["_id"], min(0.99, done / total)):
                raise Cancelled("the clip was deleted")

    def write() -> VideoSink:
        # Same size cap and encoder settings as the annotated output: the copy stands in for it.
        with VideoSink(out, width=info.width, height=info.height, fps=info.fps, time_base=info.time_base,
                       max_height=settings.output_max_height, preset=settings.encoder_preset) as sink:
            for frame in anonymised_frames(video_frames(src, info), records(), detector, fps=fps,
                                           bridged=cover):
                sink.write(frame.image, frame.pts)
                step()
        return sink

    # The copy is checked as it will be watched, after encoding: what the detector still finds there
    # is blurred in the next pass, until it finds nothing on any frame. Compliance boxes are drawn
    # only after that, on the checked copy: tags and text would make the most sensitive profile report
    # "faces" that no blur removes, so a copy with them could not be checked; outlines add no face.
    for _ in range(PASSES):
        sink = write()
        found = leaks(_counted(video_frames(out, VideoInfo.from_path(
            out, max_pixels=settings.max_pixels, max_seconds=settings.max_video_seconds)), step), detector)
        if not found:
            break
        scale = info.width / sink.width  # the copy may be smaller (OUTPUT_MAX_HEIGHT)
        for j, more in found.items():
            cover.setdefault(j, []).extend(np.asarray(more, np.float32) * scale)
    else:
        raise BadInput(f"faces were still found after {PASSES} passes of blurring; the copy was not kept")
    if boxes:
        out = _with_boxes(out, records(), info, step)
    if jobs.get(job["_id"])["status"] != jobs.SUCCEEDED:
        raise Cancelled("the clip changed meanwhile")
    return out


def _with_boxes(copy: Path, records, info: VideoInfo, step) -> Path:
    """The checked copy re-encoded with each counted face outlined in its label's colour."""
    settings = get_settings()
    copy_info = VideoInfo.from_path(copy, max_pixels=settings.max_pixels,
                                    max_seconds=settings.max_video_seconds)
    out = copy.with_name("anonymised-boxes.mp4")
    with VideoSink(out, width=copy_info.width, height=copy_info.height, fps=copy_info.fps,
                   time_base=copy_info.time_base, max_height=0, preset=settings.encoder_preset) as sink:
        for frame in boxed_frames(video_frames(copy, copy_info), records, scale=copy_info.width / info.width):
            sink.write(frame.image, frame.pts)
            step()
    return out


def _counted(frames, step):
    """The frames, calling step() after each (progress and the cancel check)."""
    for frame in frames:
        yield frame
        step()
