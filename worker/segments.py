"""One segment of a long clip, as its own task on the video queue: any worker, on any machine, takes any.

A segment reads only its part of the upload from GridFS (PyAV seeks through the stored file: the index,
then its own byte range), decodes from its keyframe, runs the one frame loop over its frames plus a
short overlap into the next segment (tracked, not counted: the join links tracks by it), and stores:
  - the frame buckets that lie wholly inside it, by their usual _id (a redelivered segment replaces
    them); the records of buckets it shares with a neighbour go into its output for the join;
  - its annotated part (H.264 MP4, the encoder settings of an unsplit run) in GridFS `results`;
  - its output document (`segment_outs`, "<job>:<k>:o"): tallies of its people, the faces of its
    first and overlap frames, its poster candidate, the shared buckets' records.
Track ids of segment k are k*ID_STRIDE + the tracker's own (1, 2, ...), so ids never collide between
segments and the ids drawn on the video are the ids in the data. The last segment to finish sends the
join (worker/join.py); recovery sends it too when that message is lost.
"""

from __future__ import annotations

import base64
import contextlib
import io
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import av
from bson import ObjectId
from celery.exceptions import SoftTimeLimitExceeded

from models.rules import Rules
from shared import jobs, result_docs, results, storage
from shared.celery_app import JOIN_SEGMENTS, PROCESS_JOB, PROCESS_SEGMENT, app, enqueue
from shared.config import get_settings
from shared.db import RESULTS, UPLOADS, get_db
from shared.errors import BadInput, Cancelled, IllegalTransition, NotFound
from worker.heartbeat import Heartbeat
from worker.loaded_models import get_models
from worker.pipeline import run
from worker.pipeline.decode import segment_frames
from worker.pipeline.encode import write_thumbnail
from worker.pipeline.stats import tallies
from worker.pipeline.threads import BackgroundWriter
from worker.segments_plan import info_of
from worker.tasks import TEMP_PREFIX, TRANSIENT, WORKER_NAME, BucketSink, _duration

log = logging.getLogger(__name__)
ID_STRIDE = run.ID_STRIDE  # segment k's track ids are k*1000 + 1, 2, ...


class SplitMismatch(RuntimeError):
    """A segment decoded another number of frames than its plan holds (an open GOP: frames shown before
    a keyframe but stored after it; an index that does not match the stream)."""


def _limits() -> tuple[int, int]:
    s = get_settings()
    return s.segment_hard_limit_s - 120, s.segment_hard_limit_s


@app.task(name=PROCESS_SEGMENT, bind=True, acks_late=True, reject_on_worker_lost=True,
          autoretry_for=TRANSIENT, retry_backoff=5, retry_backoff_max=120, max_retries=5,
          soft_time_limit=_limits()[0], time_limit=_limits()[1])
def process_segment(self, job_id: str, k: int) -> str:
    """Analyse segment k of a split job; returns what became of it."""
    try:
        job = jobs.get(job_id)
    except NotFound:
        return "skipped"
    plan = job.get("plan")
    if job["status"] != jobs.RUNNING or not plan or k >= len(plan["segments"]):
        return "skipped"  # finished, failed, cancelled or re-planned meanwhile
    if job.get("cancel_requested"):
        stop_cancelled(job)
        return jobs.CANCELLED
    seg = jobs.claim_segment(job_id, k, plan["id"], worker=f"{WORKER_NAME}:{os.getpid()}:{self.request.id}")
    if seg is None:
        return "skipped"  # done already (a redelivered message) or of an older plan
    if seg["attempts"] > jobs.MAX_SEGMENT_ATTEMPTS:
        _fail(job, f"the worker stopped {seg['attempts'] - 1} times while processing {_span(plan, k)} of "
                   "this clip; it was not retried again")
        return jobs.FAILED
    every = max(1.0, get_settings().stalled_after_s / 6)
    with Heartbeat(jobs.segment_id(job_id, k), seg["run_id"], worker=seg["worker"], every_s=every):
        return _attempt(job, seg)


def _attempt(job: dict, seg: dict) -> str:
    """Run one claimed attempt of a segment and record its outcome (the only place that catches)."""
    plan, k, run_id = job["plan"], seg["k"], seg["run_id"]
    workdir = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{job['_id']}-s{k:04d}-"))
    try:
        try:
            _discard(job, seg)  # what an earlier, interrupted attempt of this segment stored
            fields = _run(job, seg, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)  # first: a confirmed outcome leaves nothing
    except Cancelled:
        _discard(job, seg)
        jobs.requeue_segment(job["_id"], k, run_id, "stopped: the job was cancelled or failed")
        with contextlib.suppress(NotFound):  # deleted meanwhile: nothing left to confirm
            stop_cancelled(jobs.get(job["_id"]))
        return jobs.CANCELLED
    except BadInput as e:
        _discard(job, seg)
        _fail(job, str(e), retryable=False)
        return jobs.FAILED
    except SplitMismatch as e:
        log.warning("job %s: %s; it is analysed in one piece instead", job["_id"], e)
        _discard(job, seg)
        jobs.requeue_segment(job["_id"], seg["k"], seg["run_id"], "the split was given up")
        run_whole(job)
        return "unsplit"
    except SoftTimeLimitExceeded:
        _discard(job, seg)
        _fail(job, _limit_sentence(plan, k), keep=False)  # a retry would take as long: nothing is kept
        return jobs.FAILED
    except TRANSIENT:
        raise  # retried by Celery; the redelivered attempt starts clean
    except Exception as e:  # noqa: BLE001 - the worker must survive anything a file can trigger
        log.exception("job %s segment %d failed unexpectedly", job["_id"], k)
        _discard(job, seg)
        if seg["attempts"] >= jobs.MAX_SEGMENT_ATTEMPTS:
            _fail(job, f"processing {_span(plan, k)} of this clip failed {seg['attempts']} times "
                       f"({type(e).__name__}); the team has the details in the worker log")
            return jobs.FAILED
        note = f"attempt {seg['attempts']} failed: {type(e).__name__}"
        if jobs.requeue_segment(job["_id"], k, run_id, note):
            enqueue(PROCESS_SEGMENT, str(job["_id"]), k)
        return "retrying"
    if not jobs.finish_segment(job["_id"], k, run_id, **fields):
        _discard(job, {**seg, "files": fields["files"]})  # superseded by a newer attempt meanwhile
        return "superseded"
    try:
        now = jobs.get(job["_id"])
    except NotFound:
        now = {"status": jobs.CANCELLED}  # deleted while this one stored its part
    if now["status"] == jobs.CANCELLED or now.get("plan", {}).get("id") != plan["id"]:
        _discard(job, {**seg, "files": fields["files"]})  # cancelled while this one stored its part
        return "skipped"
    maybe_join(now)
    return jobs.DONE


def _run(job: dict, seg: dict, workdir: Path) -> dict:
    """Analyse the segment, store its buckets, part and output; the fields its document gets."""
    settings = get_settings()
    plan, k = job["plan"], seg["k"]
    s = plan["segments"][k]
    info = info_of(plan)
    models = get_models()
    rules = Rules()
    progress = SegmentProgress(job, seg)
    part_id = ObjectId()
    # The ledger first: a part half-written by a killed attempt is found and removed by the next one.
    if not jobs.update_segment(job["_id"], k, seg["run_id"], files=[part_id]):
        raise Cancelled("a newer attempt owns the segment")
    out = workdir / "part.mp4"
    overlap = plan["overlap"] if s["end_pts"] is not None else 0
    head: list = []
    with storage.open_file(UPLOADS, plan.get("source_id") or job["input_id"]) as stored:
        reader = CountingReader(stored)
        container = av.open(reader, mode="r", metadata_errors="ignore")
        try:
            with BackgroundWriter(BucketSink(), maxsize=4, name="frames") as inserts:
                buckets = SegmentBuckets(job["_id"], s["first"], s["end"], plan["frames"], inserts.write)

                def on_frame(record: dict) -> None:
                    if record["frame"] < s["first"] + plan["overlap"]:
                        head.append(_faces_of(record))
                    buckets.add(record)

                frames = segment_frames(container, info, seek_ts=s["seek_ts"], start_pts=s["start_pts"],
                                        end_pts=s["end_pts"], first_index=s["first"], overlap=overlap)
                done = run.frame_loop(frames, info, out, settings=settings, models=models, rules=rules,
                                      on_progress=progress, on_frame=on_frame, start=plan["t0"],
                                      end_index=s["end"] if s["end_pts"] is not None else None,
                                      id_offset=k * ID_STRIDE)
                buckets.flush()
        finally:
            container.close()
    if done.frames != s["end"] - s["first"]:
        raise SplitMismatch(f"segment {k} decoded {done.frames} frames where the plan has "
                           f"{s['end'] - s['first']}")
    progress(done.frames, force=True)  # the last cancel check before storing
    poster = None
    if done.poster.image is not None:
        write_thumbnail(done.poster.image, workdir / "poster.jpg", width=run.POSTER_WIDTH)
        poster = base64.b64encode((workdir / "poster.jpg").read_bytes()).decode("ascii")
    payload = {
        "k": k, "frames": done.frames, "last_t": done.last_t, "seconds": done.seconds,
        "output": [done.output_width, done.output_height, done.encoder], "models": done.models,
        "tracker": done.tracker.describe(), "tallies": tallies(done.collector),
        "poster": {"faces": done.poster.faces, "jpeg": poster},
        "head": head, "tail": [[i, xyxy.tolist(), ids.tolist()] for i, xyxy, ids in done.overlap],
        "staged": buckets.staged,
    }
    meta = {"job_id": job["_id"], "role": "part", "segment": k}
    with open(out, "rb") as f:
        storage.put(RESULTS, f, f"part-{k:04d}.mp4", content_type="video/mp4", metadata=meta, file_id=part_id)
    result_docs.put(jobs.SEGMENT_OUTS, result_docs.text_docs(out_id(job["_id"], k), results.dumps(payload),
                                                             job_id=job["_id"], k=k))
    return {"files": [part_id], "part_id": part_id, "frames": done.frames, "frames_done": done.frames,
            "processing_s": round(done.seconds, 2), "bytes_read": reader.bytes_read,
            "input_bytes": stored.length}


def out_id(job_id, k: int) -> str:
    """The _id of segment k's output document (`segment_outs`)."""
    return f"{jobs.segment_id(job_id, k)}:o"


def _faces_of(record: dict) -> list:
    """[frame, boxes, track ids] of a frame record (what linking across a boundary compares)."""
    faces = record.get("faces") or []
    return [record["frame"], [f["box"] for f in faces], [f["track"] for f in faces]]


class SegmentBuckets:
    """Routes a segment's frame records: buckets wholly inside it are written (BucketWriter), the
    records of a bucket it shares with a neighbour are kept (`staged`) for the join to write."""

    def __init__(self, job_id, first: int, end: int, total: int, write):
        self.first, self.end, self.total = first, end, total
        self.full = result_docs.BucketWriter(job_id, write)
        self.staged: list[dict] = []

    def add(self, record: dict) -> None:
        n = record["frame"] // result_docs.BUCKET_FRAMES
        lo, hi = n * result_docs.BUCKET_FRAMES, min((n + 1) * result_docs.BUCKET_FRAMES, self.total)
        if lo >= self.first and hi <= self.end:
            self.full.add(record)
        else:
            self.staged.append(record)

    def flush(self) -> None:
        self.full.flush()


def own_buckets(first: int, end: int, total: int) -> list[int]:
    """Numbers of the buckets wholly inside frames first..end-1 (a segment writes exactly these)."""
    b = result_docs.BUCKET_FRAMES
    return [n for n in range(first // b, -(-end // b))
            if n * b >= first and min((n + 1) * b, total) <= end]


class CountingReader(io.RawIOBase):
    """A stored file as PyAV reads it, counting the bytes read (a segment reads only its range)."""

    def __init__(self, stored):
        super().__init__()
        self.stored, self.bytes_read = stored, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.stored.seek(offset, whence)

    def tell(self) -> int:
        return self.stored.tell()

    def read(self, size: int = -1) -> bytes:
        data = self.stored.read(size)
        self.bytes_read += len(data)
        return data

    def readinto(self, buf) -> int:
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)


class SegmentProgress:
    """Per frame: writes the segment's count once a second, notices a cancel; the lowest running segment
    also writes the job's progress and ETA, summed over all segments (one writer of the job document)."""

    def __init__(self, job: dict, seg: dict, every_s: float = 1.0):
        self.job_id, self.k, self.run_id = job["_id"], seg["k"], seg["run_id"]
        self.job_run, self.plan = job["run_id"], job["plan"]
        self.started = job.get("started_at")
        self.every_s = every_s
        self.last = 0.0

    def __call__(self, done: int, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last < self.every_s:
            return
        self.last = now
        if not jobs.update_segment(self.job_id, self.k, self.run_id, frames_done=done):
            raise Cancelled("a newer attempt owns the segment")
        job = get_db().jobs.find_one({"_id": self.job_id}, {"status": 1, "cancel_requested": 1, "run_id": 1})
        if job is None or job["status"] != jobs.RUNNING or job.get("cancel_requested") \
                or job.get("run_id") != self.job_run:
            raise Cancelled("cancelled by the user")
        segs = jobs.segments_of({"_id": self.job_id, "plan": self.plan})
        running = [s["k"] for s in segs if s["status"] == jobs.RUNNING]
        if running and min(running) == self.k:
            total = self.plan["frames"]
            frames = sum(s.get("frames_done") or 0 for s in segs)
            fraction = min(frames / total, 0.999) if total else 0.0
            elapsed = (jobs.now() - _aware(self.started)).total_seconds() if self.started else 0.0
            eta = round(elapsed * (1 - fraction) / fraction, 1) if fraction > 0.01 else None
            if jobs.progress(self.job_id, self.job_run, fraction, eta, frames_done=frames):
                raise Cancelled("cancelled by the user")


def _aware(t):
    from datetime import UTC

    return t if t.tzinfo else t.replace(tzinfo=UTC)


def maybe_join(job: dict) -> None:
    """Send the join when every segment of the plan is done (the last one to finish sees it)."""
    segs = jobs.segments_of(job)
    if len(segs) == len(job["plan"]["segments"]) and all(s["status"] == jobs.DONE for s in segs):
        enqueue(JOIN_SEGMENTS, str(job["_id"]))


def _span(plan: dict, k: int) -> str:
    """'2:00-3:00' of segment k, for sentences."""
    s = plan["segments"][k]
    fps = plan["fps"] or 25

    def mmss(frame: int) -> str:
        sec = int(frame / fps)
        return f"{sec // 60}:{sec % 60:02d}"

    return f"{mmss(s['first'])}-{mmss(s['end'])}"


def _discard(job: dict, seg: dict) -> None:
    """Remove what an attempt of this segment stored: its buckets, part and output (nothing else)."""
    try:
        plan, k = job["plan"], seg["k"]
        s = plan["segments"][k]
        storage.delete_files(RESULTS, seg.get("files") or [])
        ids = [i for n in own_buckets(s["first"], s["end"], plan["frames"])
               for i in (result_docs.bucket_id(job["_id"], n), result_docs.rows_id(job["_id"], n))]
        ids = [f"{i}:{p}" if p else i for i in ids for p in range(result_docs.MAX_PARTS)]
        out = out_id(job["_id"], k)
        outs = [out, *(f"{out}:{p}" for p in range(1, result_docs.MAX_PARTS))]
        for coll, batch in ((result_docs.FRAMES, ids), (result_docs.ROWS, ids), (jobs.SEGMENT_OUTS, outs)):
            for i in range(0, len(batch), result_docs.ID_BATCH):
                get_db()[coll].delete_many({"_id": {"$in": batch[i:i + result_docs.ID_BATCH]}})
    except Exception:  # noqa: BLE001 - best effort: the next attempt or the cancel cleans up again
        log.exception("job %s segment %s: could not remove what the attempt stored", job["_id"], seg["k"])


def discard_all(job: dict) -> None:
    """Remove everything the job's segments and join stored: buckets, parts, outputs, results files."""
    jobs.delete_split_outputs(job)


def run_whole(job: dict) -> None:
    """Give up the split of a clip that its keyframes do not cut cleanly: stop every segment, remove
    what they stored, and queue the clip to run in one piece (what it did before segments existed)."""
    run_id = jobs.retire_run(job["_id"], job["run_id"])
    if run_id is None:
        return  # another segment did, or the job was cancelled, failed or deleted meanwhile
    # Each running segment sees the new run_id within a second and stops; none may still write when
    # the whole-clip attempt starts storing the same buckets.
    deadline = time.monotonic() + max(10.0, get_settings().stalled_after_s)
    while time.monotonic() < deadline and any(
            s["status"] == jobs.RUNNING for s in jobs.segments_of(job)):
        time.sleep(0.5)
    discard_all(job)
    storage.delete_files(UPLOADS, jobs.plan_sources(job))
    try:
        jobs.requeue_unsplit(job["_id"], run_id, "This clip cannot be split at its keyframes; it is "
                                                 "analysed in one piece instead.")
    except (IllegalTransition, NotFound):
        return
    enqueue(PROCESS_JOB, str(job["_id"]))


def stop_cancelled(job: dict) -> None:
    """Confirm a cancel the user asked for, once, and remove everything of the job (any segment may)."""
    if job["status"] == jobs.RUNNING and job.get("cancel_requested"):
        try:
            jobs.mark_cancelled(job["_id"], job["run_id"])
        except (IllegalTransition, NotFound):
            return  # someone else confirmed it, or the job moved on
        discard_all(job)


def _limit_sentence(plan: dict, k: int) -> str:
    """Why a segment that ran out of time failed its job (the job's own sentence when that limit bound)."""
    s = get_settings()
    if s.job_time_limit_s <= s.segment_time_limit_s:
        return f"processing took longer than the {_duration(s.job_time_limit_s)} limit"
    return (f"processing {_span(plan, k)} of this clip took longer than the "
            f"{_duration(s.segment_time_limit_s)} limit of a segment")


def _fail(job: dict, reason: str, *, retryable: bool = True, keep: bool = True) -> None:
    """Fail the job with a sentence (once); finished segments are kept (unless not keep, or the failure
    cannot be retried), so a retry runs only the rest."""
    try:
        jobs.fail(job["_id"], job["run_id"], reason, retryable=retryable)
    except (IllegalTransition, NotFound):
        return
    if not retryable or not keep:
        discard_all(job)
