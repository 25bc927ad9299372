"""What a user may do to a clip besides looking: retry, delete (shared by the pages and the API)."""

from __future__ import annotations

from shared import jobs
from shared.celery_app import PROCESS_JOB, enqueue
from shared.errors import ServiceUnavailable


def requeue(clip: dict) -> dict:
    """Retry: back to queued, then enqueued (a queue outage fails it again, saying why)."""
    job = jobs.retry(clip["_id"])
    try:
        enqueue(PROCESS_JOB, str(job["_id"]))
    except ServiceUnavailable as e:
        job = jobs.fail(job["_id"], None, f"could not be queued: {e}")
    return job


def remove(clip: dict) -> None:
    """Delete a clip with its files and statistics (nothing the web reads is rebuilt afterwards)."""
    jobs.delete(clip["_id"])
