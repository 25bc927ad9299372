"""The plan of a long clip: where it splits into segments, worked out from the container's index.

The worker that claims a video job reads the upload in place (GridFS, seeking: the index and a few
packets, never the whole file), lists the keyframes from the demuxer's index, and splits at the keyframe
nearest every SEGMENT_SECONDS. Each boundary keyframe's packet is read once, for its exact pts. A
clip shorter than 1.5 segments, or one whose index cannot be trusted (no per-frame index, edit lists
that drop frames), is not split: it runs as one job exactly as before.

    plan = {id, frames, fps, t0, overlap, info: {VideoInfo}, segments: [
              {k, first, end, seek_ts, start_pts, end_pts}]}     frames first..end-1, pts start..end-1

Frame numbers are decode order at keyframes, which is display order for closed GOPs (what CCTV
recorders and x264 write); a segment that decodes another count than planned fails loudly.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from fractions import Fraction

import av

from shared import jobs, storage
from shared.celery_app import JOIN_SEGMENTS, PROCESS_SEGMENT, enqueue
from shared.config import Settings
from shared.db import UPLOADS
from worker.pipeline.decode import VideoInfo

log = logging.getLogger(__name__)
OVERLAP_S = 1.0  # analysed past each segment's end, so tracks there can be linked to the next one's


def plan_video(job: dict, settings: Settings, source_id=None) -> dict | None:
    """The plan of a stored video, or None when it runs unsplit (short, unindexed, not a video).

    A job's own `segment_seconds` (set by tests and benchmarks, never by the web) overrides the setting.
    source_id: an indexed copy of the upload (worker/indexed_copy.py) to plan, and later read, instead.
    """
    seconds = job.get("segment_seconds")
    seconds = settings.segment_seconds if seconds is None else seconds
    if seconds <= 0 or job.get("kind") == "image":
        return None
    started = time.monotonic()
    with storage.open_file(UPLOADS, source_id or job["input_id"]) as f:
        container = av.open(f, mode="r", metadata_errors="ignore")
        try:
            info = VideoInfo.from_container(container, max_pixels=settings.max_pixels,
                                            max_seconds=settings.max_video_seconds)
            plan = _plan(container, info, seconds)
        finally:
            container.close()
    if plan is not None:
        plan["plan_s"] = round(time.monotonic() - started, 3)
        if source_id is not None:
            plan["source_id"] = source_id
    return plan


def _plan(container, info: VideoInfo, segment_s: float) -> dict | None:
    stream = container.streams.video[0]
    entries = list(stream.index_entries)
    fps = info.fps or 25
    if not entries or any(e.is_discard for e in entries) or (info.frames and len(entries) != info.frames):
        return None
    n = len(entries)
    per = segment_s * fps
    if n < 1.5 * per:
        return None
    keys = [i for i, e in enumerate(entries) if e.is_keyframe]
    cuts = [0]
    for j in range(1, int(n // per) + 1):
        target = j * per
        near = [i for i in keys if cuts[-1] + 0.5 * per <= i <= n - 0.5 * per]
        if not near:
            continue
        best = min(near, key=lambda i: abs(i - target))
        if abs(best - target) <= 0.5 * per and best > cuts[-1]:
            cuts.append(best)
    if len(cuts) < 2:
        return None
    starts = [_keyframe_pts(container, stream, entries[i].timestamp) for i in cuts]
    t0 = _first_time(container, stream)
    segments = []
    for k, first in enumerate(cuts):
        last = k + 1 == len(cuts)
        segments.append({"k": k, "first": first, "end": n if last else cuts[k + 1],
                         "seek_ts": starts[k], "start_pts": starts[k],
                         "end_pts": None if last else starts[k + 1]})
    fields = dataclasses.asdict(info)
    fields["time_base"] = [info.time_base.numerator, info.time_base.denominator]
    return {"id": uuid.uuid4().hex, "frames": n, "fps": fps, "t0": t0, "segment_s": segment_s,
            "overlap": max(8, round(OVERLAP_S * fps)), "info": fields, "segments": segments}


def _keyframe_pts(container, stream, dts: int) -> int:
    """The pts of the keyframe whose index entry says dts (the demuxer seeks by pts: from the keyframe
    at or before it, packets are read, not decoded, up to this one)."""
    container.seek(dts, stream=stream, backward=True, any_frame=False)
    for packet in container.demux(stream):
        if packet.dts is None:
            continue
        if packet.dts == dts and packet.pts is not None:
            return packet.pts
        if packet.dts > dts:
            break
    raise ValueError(f"no keyframe at dts {dts}")


def _first_time(container, stream) -> float:
    """The clip's first timestamp in seconds (what frame times are counted from)."""
    container.seek(stream.index_entries[0].timestamp, stream=stream, backward=True, any_frame=False)
    for frame in container.decode(stream):
        return float(frame.time) if frame.time is not None else 0.0
    return 0.0


def info_of(plan: dict) -> VideoInfo:
    """The VideoInfo the plan was made from (a segment never probes the upload again)."""
    fields = dict(plan["info"])
    fields["time_base"] = Fraction(*fields["time_base"])
    return VideoInfo(**fields)


def start(job: dict, plan: dict) -> bool:
    """Record the plan on the claimed job and send its segments; False when the attempt is not current.

    A retry of a job with the same plan (the same upload and segment length) keeps the segments already
    done and sends only the others; with all of them done it goes straight to the join.
    """
    old = job.get("plan")
    if old and old.get("frames") == plan["frames"] and old.get("segment_s") == plan["segment_s"] and \
            [s["first"] for s in old["segments"]] == [s["first"] for s in plan["segments"]]:
        plan = old  # same split: its finished segments stand
    elif old:
        jobs.delete_segments(job)  # another split (settings changed): nothing of the old one is reused
    if old and old.get("source_id") and old["source_id"] != plan.get("source_id"):
        storage.delete(UPLOADS, old["source_id"])  # the old plan's indexed copy
    if not jobs.record(job["_id"], job["run_id"], plan=plan, frames_written=True):
        return False
    job = {**job, "plan": plan}
    todo = jobs.create_segments(job)
    log.info("job %s: %d frames in %d segments, %d to run", job["_id"], plan["frames"], len(plan["segments"]),
             len(todo))
    for k in todo:
        enqueue(PROCESS_SEGMENT, str(job["_id"]), k)
    if not todo:
        enqueue(JOIN_SEGMENTS, str(job["_id"]))
    return True
