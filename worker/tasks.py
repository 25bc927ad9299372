"""Celery tasks: thin wrappers that claim a job, run the pipeline and record the outcome.

This is the only place that catches errors: bad input fails the job with the user's sentence,
a cancel is confirmed, an unexpected error fails the job (and is logged) — the worker stays up.
"""

from __future__ import annotations

import logging
import shutil
import socket
import tempfile
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from pymongo.errors import AutoReconnect, ConnectionFailure

from shared import jobs, storage
from shared.celery_app import PROCESS_JOB, app
from shared.config import get_settings
from shared.db import RESULTS, UPLOADS, get_db
from shared.errors import BadInput, Cancelled, IllegalTransition, NotFound, ServiceUnavailable
from worker.pipeline import run
from worker.progress import Progress

log = logging.getLogger(__name__)
WORKER_NAME = f"{socket.gethostname()}"
# Faults of the services, not of the file: the task is retried with backoff.
TRANSIENT = (AutoReconnect, ConnectionFailure, ServiceUnavailable)


@app.task(name=PROCESS_JOB, bind=True, acks_late=True, reject_on_worker_lost=True,
          autoretry_for=TRANSIENT, retry_backoff=5, retry_backoff_max=120, max_retries=5)
def process_job(self, job_id: str) -> str:
    """Analyse one uploaded clip or image end to end; returns the final state."""
    try:
        job = jobs.claim(job_id, worker=f"{WORKER_NAME}:{self.request.id}")
    except (NotFound, IllegalTransition) as e:
        log.warning("job %s not run: %s", job_id, e)  # deleted, cancelled or already done
        return "skipped"
    run_id = job["run_id"]
    workdir = Path(tempfile.mkdtemp(prefix=f"maskwatch-{job_id}-"))
    try:
        result = _run(job, workdir)
    except Cancelled:
        jobs.mark_cancelled(job_id, run_id)
        return jobs.CANCELLED
    except BadInput as e:
        jobs.fail(job_id, run_id, str(e))
        return jobs.FAILED
    except SoftTimeLimitExceeded:
        limit = get_settings().job_time_limit_s
        jobs.fail(job_id, run_id, f"processing took longer than the {limit // 60}-minute limit")
        return jobs.FAILED
    except TRANSIENT:
        raise  # retried by Celery; the redelivered attempt starts clean
    except Exception as e:  # noqa: BLE001 - the worker must survive anything a file can trigger
        log.exception("job %s failed unexpectedly", job_id)
        jobs.fail(job_id, run_id, f"internal error while processing ({type(e).__name__}); "
                                  "the team has the details in the worker log")
        return jobs.FAILED
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    try:
        jobs.finish(job_id, run_id, result)
    except IllegalTransition:
        # Cancelled or superseded at the very end: drop what this attempt stored.
        _delete_outputs(result)
        raise
    return jobs.SUCCEEDED


def _run(job: dict, workdir: Path) -> dict:
    """Fetch the input, analyse it, store the outputs; returns the job's result document."""
    settings = get_settings()
    job_id = job["_id"]
    # A redelivered job starts clean: statistics of an earlier attempt are dropped first.
    get_db().frames.delete_many({"job_id": job_id})
    src = storage.save_to(UPLOADS, job["input_id"], workdir / f"input{Path(job['filename']).suffix}")
    progress = Progress(job_id, job["run_id"], total_frames=None)
    outcome = run.analyse(src, workdir, kind=job["kind"], settings=settings, on_progress=progress)
    progress(outcome.summary.get("frames", 0), force=True)  # last cancel check before storing
    stem = Path(job["filename"]).stem
    suffix = ".mp4" if outcome.output_type == "video/mp4" else ".jpg"
    result = dict(outcome.summary)
    result["output_id"] = storage.put_path(
        RESULTS, outcome.output_path, f"{stem}.annotated{suffix}", content_type=outcome.output_type,
        metadata={"job_id": job_id, "role": "annotated"})
    try:
        result["thumbnail_id"] = storage.put_path(
            RESULTS, outcome.thumbnail_path, f"{stem}.poster.jpg", content_type="image/jpeg",
            metadata={"job_id": job_id, "role": "poster"})
    except Exception:
        storage.delete(RESULTS, result["output_id"])
        raise
    result["output_type"] = outcome.output_type
    return result


def _delete_outputs(result: dict) -> None:
    for key in ("output_id", "thumbnail_id"):
        storage.delete(RESULTS, result.get(key))
