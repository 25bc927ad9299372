"""The join of a split clip: its segments' outputs made into the one result an unsplit run gives.

Sent by the last segment to finish (and by recovery, should that message be lost); one join runs at a
time (a claim by unique _id, with its own heartbeat). It links tracks across every boundary by the
overlap frames (the same frames analysed by both segments: faces matched by IoU), merges the people's
tallies and votes (stats.merged: the same vote as one pass), writes the frame buckets two segments
shared, concatenates the parts into one +faststart MP4 without re-encoding (packets copied in order;
every part has the same encoder settings, so the streams are one), stores result files and the read
model as an unsplit run does, and marks the job succeeded in one step. Its work grows with the number of
segments and people, not with frames (the parts are copied as packets).
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

import av
import numpy as np
from scipy.optimize import linear_sum_assignment

from models.rules import Rules
from shared import jobs, result_docs, storage
from shared.celery_app import JOIN_SEGMENTS, app
from shared.config import get_settings
from shared.db import RESULTS
from shared.errors import Cancelled, IllegalTransition, NotFound
from worker import tasks
from worker.heartbeat import Heartbeat
from worker.pipeline import run
from worker.pipeline.stats import merged
from worker.pipeline.track import iou_matrix
from worker.progress import Progress
from worker.segments import out_id, stop_cancelled
from worker.segments_plan import info_of

log = logging.getLogger(__name__)
LINK_IOU = 0.5  # the same face on the same frame, found by two segments' detectors
LINK_VOTES = 2  # overlap frames on which two tracks must coincide to be one person


@app.task(name=JOIN_SEGMENTS, bind=True, acks_late=True, reject_on_worker_lost=True,
          autoretry_for=tasks.TRANSIENT, retry_backoff=5, retry_backoff_max=120, max_retries=5)
def join_segments(self, job_id: str) -> str:
    """Join a split job whose segments are all done; returns the final state."""
    try:
        job = jobs.get(job_id)
    except NotFound:
        return "skipped"
    plan = job.get("plan")
    if job["status"] != jobs.RUNNING or not plan:
        return "skipped"
    segs = jobs.segments_of(job)
    if len(segs) != len(plan["segments"]) or any(s["status"] != jobs.DONE for s in segs):
        return "skipped"  # not all done (a stale message): the last segment sends it again
    if job.get("cancel_requested"):
        stop_cancelled(job)
        return jobs.CANCELLED
    worker = f"{tasks.WORKER_NAME}:{os.getpid()}:{self.request.id}"
    run_id = jobs.claim_join(job_id, plan["id"], worker=worker)
    if run_id is None:
        return "skipped"  # another join holds it (recovery frees a dead one's claim)
    every = max(1.0, get_settings().stalled_after_s / 6)
    try:
        with Heartbeat(jobs.join_id(job_id), run_id, worker=tasks.WORKER_NAME, every_s=every):
            return _attempt(job, segs)
    finally:
        jobs.release_join(job_id, run_id)


def _attempt(job: dict, segs: list[dict]) -> str:
    """Join, store and finish; the only place that catches."""
    job_id, run_id = job["_id"], job["run_id"]
    workdir = Path(tempfile.mkdtemp(prefix=f"{tasks.TEMP_PREFIX}{job_id}-join-"))
    try:
        try:
            result = join(job, segs, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)  # before the outcome is confirmed
        jobs.finish(job_id, run_id, result)
    except Cancelled:
        stop_cancelled(jobs.get(job_id))
        return jobs.CANCELLED
    except IllegalTransition as e:
        log.warning("job %s: join superseded: %s", job_id, e)
        return "superseded"
    except tasks.TRANSIENT:
        raise
    except Exception as e:  # noqa: BLE001 - the worker must survive anything
        log.exception("job %s: join failed unexpectedly", job_id)
        _drop_result_files(job)
        with contextlib.suppress(IllegalTransition):
            jobs.fail(job_id, run_id, f"internal error while joining the clip's segments "
                      f"({type(e).__name__}); the team has the details in the worker log")
        return jobs.FAILED
    jobs.delete_segments(job, segs)  # parts and outputs are in the result now
    return jobs.SUCCEEDED


def _drop_result_files(job: dict) -> None:
    """Remove result files a failed join stored (the segments' outputs stay: a retry joins again)."""
    storage.delete_files(RESULTS, result_docs.job_files(job, legacy=False))
    result_docs.record_files(job["_id"], [])


def join(job: dict, segs: list[dict], workdir: Path) -> dict:
    """Merge the segments' outputs, store the result files and read model; returns the job's summary."""
    started = time.monotonic()
    plan = job["plan"]
    outs = [json.loads(result_docs.text(jobs.SEGMENT_OUTS, out_id(job["_id"], s["k"]), "null")) for s in segs]
    if any(o is None for o in outs):
        raise RuntimeError("a finished segment's output is missing")
    parts = []
    for s in segs:
        parts.append(storage.save_to(RESULTS, s["part_id"], workdir / f"part-{s['k']:04d}.mp4"))
    out = concatenate(parts, workdir / "annotated.mp4")
    best = max(outs, key=lambda o: o["poster"]["faces"])  # the first segment with the most faces
    thumb = workdir / "poster.jpg"
    thumb.write_bytes(base64.b64decode(best["poster"]["jpeg"]) if best["poster"]["jpeg"] else b"")
    wall = (jobs.now() - _aware(job["started_at"])).total_seconds() if job.get("started_at") else None
    segments = {"count": len(segs), "seconds": plan["segment_s"],
                "wall_s": round(wall, 2) if wall is not None else None,
                "join_s": None,
                "attempts": [s.get("attempts") for s in segs],
                "processing_s": [s.get("processing_s") for s in segs],
                "read_bytes": [s.get("bytes_read") for s in segs]}
    # Buckets that two (or more) segments shared: written from their records, in frame order.
    records = sorted((r for o in outs for r in o["staged"]), key=lambda r: r["frame"])
    result = assemble(job, outs, link_tracks(outs), records=records, annotated=out, thumb=thumb,
                      info=info_of(plan), segments=segments,
                      buckets=-(-plan["frames"] // result_docs.BUCKET_FRAMES))
    result["segments"]["join_s"] = round(time.monotonic() - started, 2)  # all of it, storing included
    return result


def assemble(job: dict, outs: list[dict], links: dict[int, int], *, records, annotated: Path, thumb: Path,
             info, segments: dict, buckets: int | None) -> dict:
    """The result of consecutive parts' outputs (tallies merged with tracks linked across their cuts,
    records written as buckets, the joined annotated file and poster stored); the job's summary.

    buckets: how many the job has (None: those records makes, every one of them written here).
    """
    settings = get_settings()
    rules = Rules()
    known = {int(t) for o in outs for t in o["tallies"]["people"]}
    person_of = _among(links, known)
    collector = merged(rules, [o["tallies"] for o in outs], person_of)
    stats, crops = collector.summary()
    aliases: dict[int, list[int]] = {}
    for tid in sorted(known):
        aliases.setdefault(person_of.get(tid, tid), []).append(tid)
    for person in stats["persons"]:
        person["track_ids"] = aliases.get(person["track_id"], [person["track_id"]])
    writer = result_docs.BucketWriter(job["_id"], result_docs.put)
    for record in records:
        writer.add(record)
    writer.flush()
    first = outs[0]
    width, height, encoder = first["output"]
    done = run.Pass(collector=collector, poster=None, tracker=_Params(first["tracker"]),
                    models=first["models"], frames=sum(o["frames"] for o in outs), output_width=width,
                    output_height=height, encoder=encoder, last_t=max(o["last_t"] for o in outs),
                    seconds=sum(s or 0 for s in segments["processing_s"]))
    summary = run.video_summary(info, done, stats, settings=settings, rules=rules)
    summary["segments"] = segments
    outcome = run.Outcome(output_path=annotated, output_type="video/mp4", thumbnail_path=thumb,
                          summary=summary, crops=crops)
    progress = Progress(job["_id"], job["run_id"], total_frames=done.frames)
    return tasks.store_outcome(job, outcome, progress, buckets=writer.buckets if buckets is None else buckets)


def _among(person_of: dict[int, int], known: set[int]) -> dict[int, int]:
    """Links resolved to ids that have frames of their own: a track seen only in a segment's overlap
    frames (counted by the next segment) is not a person's id; its group takes its first counted id."""
    groups: dict[int, list[int]] = {}
    for tid, root in person_of.items():
        groups.setdefault(root, [root]).append(tid)
    out = {}
    for members in groups.values():
        mine = sorted(m for m in members if m in known)
        out.update({m: mine[0] for m in mine[1:]})
    return out


class _Params:
    """A tracker's recorded parameters (what _settings_record describes)."""

    def __init__(self, params: dict):
        self.params = params

    def describe(self) -> dict:
        return self.params


def _aware(t):
    from datetime import UTC

    return t if t.tzinfo else t.replace(tzinfo=UTC)


def link_tracks(outs: list[dict]) -> dict[int, int]:
    """{track id: id of the person it continues} across every boundary, from the overlap frames.

    Segment k's tracks on its overlap frames and segment k+1's on the same (its first) frames are
    matched one to one by IoU per frame; two tracks that coincide on LINK_VOTES frames or more, best
    first, are one person. A person crossing several boundaries keeps the id of their first segment.
    """
    person_of: dict[int, int] = {}
    for before, after in zip(outs, outs[1:], strict=False):
        head = {f: (np.asarray(b, np.float32).reshape(-1, 4), ids) for f, b, ids in after["head"]}
        votes: Counter = Counter()
        for f, boxes, ids in before["tail"]:
            if f not in head:
                continue
            a, (b, b_ids) = np.asarray(boxes, np.float32).reshape(-1, 4), head[f]
            if not len(a) or not len(b):
                continue
            iou = iou_matrix(a, b)
            rows, cols = linear_sum_assignment(-iou)
            for i, j in zip(rows, cols, strict=True):
                if iou[i, j] >= LINK_IOU and ids[i] >= 0 and b_ids[j] >= 0:
                    votes[(int(ids[i]), int(b_ids[j]))] += 1
        used_a, used_b = set(), set()
        for (a_id, b_id), n in sorted(votes.items(), key=lambda kv: (-kv[1], kv[0])):
            if n < LINK_VOTES or a_id in used_a or b_id in used_b:
                continue
            used_a.add(a_id)
            used_b.add(b_id)
            person_of[b_id] = person_of.get(a_id, a_id)
    return person_of


def concatenate(parts: list[Path], out: Path) -> Path:
    """The parts' packets, in order, in one +faststart MP4 (no re-encoding); returns out."""
    with av.open(str(out), mode="w", format="mp4", options={"movflags": "+faststart"}) as dst:
        stream = None
        last_dts = None
        for path in parts:
            with av.open(str(path)) as src:
                s = src.streams.video[0]
                if stream is None:
                    stream = dst.add_stream_from_template(s)
                for packet in src.demux(s):
                    if packet.dts is None:
                        continue  # the demuxer's end-of-stream marker
                    if last_dts is not None and packet.dts <= last_dts:
                        raise RuntimeError(f"{path.name}: timestamps go back at the boundary")
                    last_dts = packet.dts
                    packet.stream = stream
                    dst.mux(packet)
    return out
