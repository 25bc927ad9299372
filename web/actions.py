"""What a user may do to a clip besides looking: retry, delete (shared by the pages and the API)."""

from __future__ import annotations

import logging

from shared import anonymised, jobs
from shared.celery_app import ANONYMISE, PROCESS_JOB, enqueue
from shared.errors import ServiceUnavailable
from web import audit

log = logging.getLogger(__name__)


def send(job: dict) -> dict:
    """Hand a queued job to the broker; in a queue outage it stays queued, saying so.

    worker/recovery.py sends queued jobs the broker does not hold once it is back, so nothing
    uploaded during an outage is lost or has to be retried by hand.
    """
    try:
        enqueue(PROCESS_JOB, str(job["_id"]))
    except ServiceUnavailable as e:
        log.warning("job %s kept queued: %s", job["_id"], e)
        job = jobs.await_broker(job["_id"], "The job queue is unreachable right now; the clip is kept "
                                            "and starts as soon as the queue is back.")
    return job


def requeue(clip: dict) -> dict:
    """Retry: back to queued, then sent to the workers."""
    return send(jobs.retry(clip["_id"]))


def remove(clip: dict, detail: str = "") -> None:
    """Delete a clip with its files and statistics (nothing the web reads is rebuilt afterwards).

    Recorded once done (a refused delete is not one): the entry keeps the clip's name and owner.
    """
    jobs.delete(clip["_id"])
    audit.record(audit.DELETE, clip, detail=detail)


def anonymise(clip: dict, *, boxes: bool = False) -> dict:
    """Ask for an anonymised copy of a finished clip (every face blurred); the job. IllegalTransition
    when the clip is not finished or a copy is being made; a queue outage fails the request, saying so."""
    job = anonymised.request(clip["_id"], boxes=boxes)
    try:
        enqueue(ANONYMISE, str(job["_id"]))
    except ServiceUnavailable as e:
        log.warning("anonymised copy of %s not queued: %s", job["_id"], e)
        anonymised.fail(job["_id"], "the job queue is unreachable right now; ask again in a minute")
        job = jobs.get(job["_id"])
    return job
