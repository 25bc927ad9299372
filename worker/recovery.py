"""Nothing stuck: re-queue jobs whose worker stopped, and queued jobs the broker lost.

    python -m worker.recovery [--every 30]      # bin/run and docker-compose run one of these

A running job whose heartbeat (worker/heartbeat.py) is older than STALLED_AFTER_S is put back in the
queue with a note (or confirmed cancelled, if the user asked), whatever the broker's visibility
timeout: a dead worker machine costs a minute or two, not hours. A queued job that the broker holds
neither in its queue nor among unacknowledged messages (Redis restarted without its data, an enqueue
that failed half way) is sent again. Claims are idempotent, so a job sent twice still runs once;
several recovery processes may run side by side.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import sys
import time
from datetime import timedelta

import redis

from shared import jobs
from shared.celery_app import PROCESS_JOB, enqueue
from shared.config import VIDEO_QUEUE, get_settings
from shared.db import get_db
from shared.errors import IllegalTransition, ServiceUnavailable
from worker.heartbeat import HEARTBEATS

log = logging.getLogger(__name__)
QUEUED_GRACE_S = 30  # a job queued this recently may still be on its way to the broker


def broker_job_ids() -> set[str]:
    """Job ids of PROCESS_JOB messages the broker holds: waiting in the queue or delivered, unacked."""
    r = redis.Redis.from_url(get_settings().redis_url, socket_timeout=get_settings().connect_timeout_s)
    raw = list(r.lrange(VIDEO_QUEUE, 0, -1)) + list(r.hvals("unacked"))
    ids: set[str] = set()
    for entry in raw:
        try:
            message = json.loads(entry)
            if isinstance(message, list):  # unacked: [message, exchange, routing key]
                message = message[0]
            if message.get("headers", {}).get("task") != PROCESS_JOB:
                continue
            args = json.loads(base64.b64decode(message["body"]))[0]
            ids.add(str(args[0]))
        except (ValueError, KeyError, IndexError, TypeError):
            continue  # not a message of ours
    return ids


def _percent(job: dict) -> int:
    return round(100 * float(job.get("progress") or 0))


def sweep() -> dict:
    """One pass: stalled running jobs and lost queued ones; what was done, by job id."""
    settings = get_settings()
    db = get_db()
    t = jobs.now()
    done = {"requeued_stalled": [], "cancelled_stalled": [], "resent_queued": []}
    running = list(db.jobs.find({"status": jobs.RUNNING},
                                {"run_id": 1, "progress": 1, "cancel_requested": 1, "updated_at": 1}))
    beats = {b["_id"]: b for b in db[HEARTBEATS].find({"_id": {"$in": [str(j["_id"]) for j in running]}})}
    for job in running:
        beat = beats.get(str(job["_id"]))
        last = beat["at"] if beat and beat.get("run_id") == job["run_id"] else job.get("updated_at")
        if last is None or t - last < timedelta(seconds=settings.stalled_after_s):
            continue
        try:
            if job.get("cancel_requested"):
                jobs.mark_cancelled(job["_id"], job["run_id"])
                done["cancelled_stalled"].append(str(job["_id"]))
                continue
            jobs.stall(job["_id"], job["run_id"],
                       f"The worker processing this clip stopped responding at {_percent(job)}%; "
                       "the clip was put back in the queue and starts again on the next free worker.")
        except IllegalTransition:
            continue  # it moved on meanwhile (finished, or a newer attempt): nothing to recover
        done["requeued_stalled"].append(str(job["_id"]))
    queued = list(db.jobs.find({"status": jobs.QUEUED}, {"updated_at": 1}))
    old = [j for j in queued if t - j["updated_at"] >= timedelta(seconds=QUEUED_GRACE_S)]
    if old or done["requeued_stalled"]:
        held = broker_job_ids()
        for job in old:
            if str(job["_id"]) not in held:
                done["resent_queued"].append(str(job["_id"]))
        for job_id in done["requeued_stalled"] + done["resent_queued"]:
            enqueue(PROCESS_JOB, job_id)
    return done


def main(argv: list[str] | None = None) -> int:
    """Sweep every --every seconds (once with --once); outages are logged and waited out."""
    ap = argparse.ArgumentParser(prog="python -m worker.recovery", description=__doc__.split("\n\n")[0])
    ap.add_argument("--every", type=float, default=30.0)
    ap.add_argument("--once", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s recovery %(levelname)s %(message)s")
    while True:
        try:
            done = sweep()
            if any(done.values()):
                log.info("recovered: %s", json.dumps(done))
        except (ServiceUnavailable, redis.RedisError, OSError) as e:
            log.warning("sweep skipped: %s", e)
        except Exception:  # noqa: BLE001 - the sweeper must outlive anything a database hiccup throws
            log.exception("sweep failed")
        if args.once:
            return 0
        time.sleep(args.every)


if __name__ == "__main__":
    sys.exit(main())
