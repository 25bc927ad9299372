"""Celery tasks: thin wrappers that claim a job, run the pipeline and record the outcome.

This is the only place that catches errors: bad input fails the job with the user's sentence,
a cancel is confirmed, an unexpected error fails the job (and is logged) — the worker stays up.
Each attempt starts by removing whatever an earlier, interrupted attempt of the same job left behind
(frame buckets, person pages, stored files, temp files), so a redelivered job ends with exactly one
set of each; its own documents are written by deterministic _id, replacing rather than adding.
"""

from __future__ import annotations

import contextlib
import io
import logging
import shutil
import socket
import tempfile
import time
from functools import partial
from pathlib import Path

from bson import ObjectId
from celery.exceptions import SoftTimeLimitExceeded
from pymongo.errors import AutoReconnect, ConnectionFailure

from shared import jobs, result_docs, results, storage
from shared.celery_app import PROCESS_JOB, app
from shared.config import get_settings
from shared.db import RESULTS, UPLOADS, get_db
from shared.errors import BadInput, Cancelled, IllegalTransition, NotFound, ServiceUnavailable
from worker import live_join
from worker.heartbeat import HEARTBEATS, Heartbeat
from worker.pipeline import run
from worker.pipeline.threads import BackgroundWriter
from worker.progress import Progress

log = logging.getLogger(__name__)
WORKER_NAME = f"{socket.gethostname()}"
# Faults of the services, not of the file: the task is retried with backoff.
TRANSIENT = (AutoReconnect, ConnectionFailure, ServiceUnavailable)
TEMP_PREFIX = "maskwatch-"


@app.task(name=PROCESS_JOB, bind=True, acks_late=True, reject_on_worker_lost=True,
          autoretry_for=TRANSIENT, retry_backoff=5, retry_backoff_max=120, max_retries=5)
def process_job(self, job_id: str) -> str:
    """Analyse one uploaded clip or image end to end; returns the final state."""
    with contextlib.suppress(NotFound):
        if _alive_elsewhere(jobs.get(job_id)):
            log.warning("job %s: a second delivery while its attempt is alive; not run twice", job_id)
            return "skipped"
    try:
        job = jobs.claim(job_id, worker=f"{WORKER_NAME}:{self.request.id}")
    except (NotFound, IllegalTransition) as e:
        log.warning("job %s not run: %s", job_id, e)  # deleted, cancelled or already done
        return "skipped"
    # Beats while this attempt lives: recovery re-queues the job within STALLED_AFTER_S if it stops.
    with Heartbeat(job["_id"], job["run_id"], worker=job.get("worker") or WORKER_NAME, every_s=_beat_every()):
        try:
            plan = _plan(job)
        except SoftTimeLimitExceeded:
            limit = get_settings().job_time_limit_s
            return _confirm(jobs.fail, job_id, job["run_id"],
                            f"processing took longer than the {_duration(limit)} limit", state=jobs.FAILED)
        if plan is not None:
            return _split(job, plan)
        return _attempt(job_id, job)


def _alive_elsewhere(job: dict) -> bool:
    """Whether a running job's attempt is alive: its heartbeat advances while we watch.

    Redis hands a message out again once its visibility timeout passes, even to a live worker (a clip
    that cannot be split runs whole, and may run longer than that); so does a worker that lost its pool
    process, whose heartbeat then stops. Only the second kind may be claimed again.
    """
    if job["status"] != jobs.RUNNING or not job.get("run_id"):
        return False

    def beat():
        doc = get_db()[HEARTBEATS].find_one({"_id": str(job["_id"]), "run_id": job["run_id"]})
        return doc and doc["at"]

    first = beat()
    if not first:
        return False
    time.sleep(_beat_every() + 2)
    last = beat()
    return bool(last) and last > first


def _beat_every() -> float:
    """How often an attempt's heartbeat is written."""
    return max(1.0, get_settings().stalled_after_s / 6)


def _plan(job: dict) -> dict | None:
    """The segments of a long video (worker/segments_plan.py); None runs it whole, as before."""
    from worker import indexed_copy, segments_plan

    settings = get_settings()
    try:
        plan = segments_plan.plan_video(job, settings)
        if plan is not None or not indexed_copy.wanted(job, settings):
            return plan
        # A long clip in a container without an index (MKV, TS, AVI): planned on an indexed copy. A
        # retry plans the copy the last attempt made, so the segments it finished still count.
        source = (job.get("plan") or {}).get("source_id")
        if source is None or not storage.exists(UPLOADS, source):
            with tempfile.TemporaryDirectory(prefix=f"{TEMP_PREFIX}{job['_id']}-index-") as tmp:
                source = indexed_copy.make(job, Path(tmp))
        plan = segments_plan.plan_video(job, settings, source_id=source) if source else None
        if plan is None and source and source != (job.get("plan") or {}).get("source_id"):
            storage.delete(UPLOADS, source)
        return plan
    except (*TRANSIENT, SoftTimeLimitExceeded):
        raise
    except Exception as e:  # noqa: BLE001 - an unsplittable file runs whole: that path says what is wrong
        log.info("job %s runs unsplit: %s", job["_id"], e)
        return None


def _split(job: dict, plan: dict) -> str:
    """Hand a long clip to its segment tasks; this task ends here (the join finishes the job)."""
    from worker import segments_plan

    # A join that died after storing files, or an unsplit attempt before, leaves nothing behind; the
    # finished segments of an earlier attempt with the same plan stay (a retry re-runs the rest).
    storage.delete_files(RESULTS, result_docs.job_files(job, legacy=False))
    result_docs.record_files(job["_id"], [])
    if job.get("frames_written") and not job.get("plan"):
        result_docs.delete_read_model(job["_id"], None)
    if not segments_plan.start(job, plan):
        return "superseded"
    return "split"


def _attempt(job_id: str, job: dict) -> str:
    """Run one claimed attempt and record its outcome (the only place that catches)."""
    run_id = job["run_id"]
    workdir = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{job['_id']}-"))
    try:
        try:
            clean_earlier_attempts(job, keep=workdir)
            result = _run(job, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)  # first: a confirmed outcome leaves nothing
    except Cancelled:
        _discard(job, run_id)
        return _confirm(jobs.mark_cancelled, job_id, run_id, state=jobs.CANCELLED)
    except BadInput as e:
        _discard(job, run_id)
        # The file itself is the problem: retrying cannot help, so the clip offers no retry.
        return _confirm(partial(jobs.fail, retryable=False), job_id, run_id, str(e), state=jobs.FAILED)
    except SoftTimeLimitExceeded:
        _discard(job, run_id)
        limit = get_settings().job_time_limit_s
        return _confirm(jobs.fail, job_id, run_id,
                        f"processing took longer than the {_duration(limit)} limit", state=jobs.FAILED)
    except TRANSIENT:
        raise  # retried by Celery; the redelivered attempt starts clean
    except Exception as e:  # noqa: BLE001 - the worker must survive anything a file can trigger
        log.exception("job %s failed unexpectedly", job_id)
        _discard(job, run_id)
        return _confirm(jobs.fail, job_id, run_id, f"internal error while processing ({type(e).__name__}); "
                        "the team has the details in the worker log", state=jobs.FAILED)
    try:
        jobs.finish(job_id, run_id, result)
    except Cancelled:
        # Cancelled while the outputs were being stored: the user gets "cancelled", not a result.
        _discard(job, run_id)
        return _confirm(jobs.mark_cancelled, job_id, run_id, state=jobs.CANCELLED)
    except IllegalTransition:
        # Cancelled or superseded at the very end: drop what this attempt stored.
        _discard(job, run_id)
        raise
    return jobs.SUCCEEDED


def _duration(seconds: int) -> str:
    """'360-minute' for the limit's sentence; '90-second' under two minutes (not '1-minute' for 119 s)."""
    return f"{seconds // 60}-minute" if seconds >= 120 else f"{seconds}-second"


def _confirm(change, job_id, run_id: str, *args, state: str) -> str:
    """Record the outcome unless a newer attempt owns the job by now (then this one just stops)."""
    try:
        change(job_id, run_id, *args)
    except IllegalTransition as e:
        log.warning("job %s: attempt %s superseded: %s", job_id, run_id, e)
        return "superseded"
    return state


def _run(job: dict, workdir: Path) -> dict:
    """Fetch the input, analyse it, store the outputs and the read model; returns the job's summary."""
    settings = get_settings()
    job_id, run_id = job["_id"], job["run_id"]
    src = storage.save_to(UPLOADS, job["input_id"], workdir / f"input{Path(job['filename']).suffix}")
    progress = Progress(job_id, run_id, total_frames=None)
    if job.get("live_parts"):  # a camera's recording: joined from its parts' results when they fit
        try:
            result = live_join.join_parts(job, src, workdir, settings=settings, progress=progress)
        except (*TRANSIENT, Cancelled, SoftTimeLimitExceeded):
            raise
        except Exception:  # noqa: BLE001 - analysing the recording itself still gives its result
            log.exception("job %s: joining the parts failed; the recording is analysed itself", job_id)
            _delete_outputs(jobs.get(job_id))
            result = None
        if result is not None:
            return result
    marked = False

    def hand_over(collection: str, docs: list[dict]) -> None:
        # The job is marked before its first bucket exists, from this thread: every update of the job
        # document by this attempt comes from one thread (FerretDB can lose concurrent $sets).
        nonlocal marked
        if not marked:
            if not jobs.record(job_id, run_id, frames_written=True):
                raise Cancelled("a newer attempt owns the job")
            marked = True
        inserts.write(collection, docs)

    # Bucket writes run in their own thread: the frame loop never waits for the database.
    with BackgroundWriter(BucketSink(), maxsize=4, name="frames") as inserts:
        buckets = result_docs.BucketWriter(job_id, hand_over)
        job = live_join.place_chunk(job, src)
        if live_join.is_part(job):
            outcome = live_join.analyse_part(job, src, workdir, settings=settings, on_progress=progress,
                                             on_frame=buckets.add)
        else:
            outcome = run.analyse(src, workdir, kind=job["kind"], settings=settings, on_progress=progress,
                                  on_frame=buckets.add)
        buckets.flush()
    result = store_outcome(job, outcome, progress, buckets=buckets.buckets)
    if live_join.is_part(job):
        live_join.link_neighbours(job)  # before it is marked done: the recording's join waits for that
    return result


class BucketSink:
    """A sink of frame-bucket documents (`frames`, `frame_rows`); BackgroundWriter runs it in a thread.

    Each bucket is written by its _id (replacing a redelivered attempt's), in frame order. The job's
    `frames_written` mark tells a later attempt or a failure that there is something to delete.
    """

    def __enter__(self) -> BucketSink:
        return self

    def write(self, collection: str, docs: list[dict]) -> None:
        """Write one bucket's documents (its head and any further parts, or its CSV rows)."""
        result_docs.put(collection, docs)

    def __exit__(self, *exc) -> None:
        return None


def store_outcome(job: dict, outcome: run.Outcome, progress: Progress, *, buckets: int) -> dict:
    """Put the annotated file, the poster and the face crops in GridFS, then the read model (person
    pages, violations, bins); returns the summary the job keeps (shared/results.py, docs/DATA.md).

    The file ids are recorded in the job's file ledger first, so chunks of a file whose attempt was
    killed mid-write can be found and removed by the next attempt.
    """
    job_id = job["_id"]
    summary, bins, persons, details = results.split(outcome.summary)
    ids = {"output": ObjectId(), "thumbnail": ObjectId()}
    crop_ids = {tid: ObjectId() for tid in outcome.crops}
    progress(summary.get("frames", 0), force=True)  # the last cancel check before storing
    result_docs.record_files(job_id, [*ids.values(), *crop_ids.values()])
    stem = Path(job["filename"]).stem
    suffix = ".mp4" if outcome.output_type == "video/mp4" else ".jpg"
    meta = {"job_id": job_id}
    with open(outcome.output_path, "rb") as f:
        storage.put(RESULTS, f, f"{stem}.annotated{suffix}", content_type=outcome.output_type,
                    metadata={**meta, "role": "annotated"}, file_id=ids["output"])
    with open(outcome.thumbnail_path, "rb") as f:
        storage.put(RESULTS, f, f"{stem}.poster.jpg", content_type="image/jpeg",
                    metadata={**meta, "role": "poster"}, file_id=ids["thumbnail"])
    for tid, jpeg in outcome.crops.items():
        storage.put(RESULTS, io.BytesIO(jpeg), f"{stem}.person-{tid}.jpg", content_type="image/jpeg",
                    metadata={**meta, "role": "face", "track_id": tid}, file_id=crop_ids[tid])
    for person in persons:
        person["crop_id"] = crop_ids.get(person["track_id"])
    summary["layout"] = result_docs.write_read_model(job_id, bins=bins, persons=persons, buckets=buckets,
                                                     details=details)
    summary["output_id"], summary["thumbnail_id"] = ids["output"], ids["thumbnail"]
    summary["output_type"] = outcome.output_type
    return summary


def clean_earlier_attempts(job: dict, keep: Path) -> None:
    """Remove what earlier attempts of this job left: buckets, pages, files, temp folders (not keep)."""
    job_id = job["_id"]
    _delete_outputs(job)
    for stale in Path(tempfile.gettempdir()).glob(f"{TEMP_PREFIX}{job_id}-*"):
        if stale != keep:
            shutil.rmtree(stale, ignore_errors=True)  # a killed attempt never reached its own cleanup


def _delete_outputs(job: dict) -> None:
    """An attempt's results files (by the ledger) and, when it wrote any, its buckets and pages."""
    storage.delete_files(RESULTS, result_docs.job_files(job, legacy=False))
    if job.get("frames_written"):
        result_docs.delete_read_model(job["_id"], None)  # no layout yet: found by probing ids in order
    result_docs.record_files(job["_id"], [])  # an empty ledger: deleting the clip later needs no scan


def _discard(job: dict, run_id: str) -> None:
    """Drop a failed or cancelled attempt's buckets, pages and files, unless a newer attempt owns the job."""
    try:
        current = jobs.get(job["_id"])
        if current.get("run_id") != run_id:
            return
        _delete_outputs(current)
    except NotFound:
        return
    except Exception:  # noqa: BLE001 - best effort: recording the outcome matters more; a retry cleans up
        log.exception("job %s: could not remove what the attempt stored", job["_id"])
