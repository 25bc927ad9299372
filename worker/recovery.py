"""Nothing stuck: re-queue jobs whose worker stopped, and queued jobs the broker lost.

    python -m worker.recovery [--every 30]      # bin/run and docker-compose run one of these

A running job whose heartbeat (worker/heartbeat.py) is older than STALLED_AFTER_S is put back in the
queue with a note (or confirmed cancelled, if the user asked), whatever the broker's visibility
timeout: a dead worker machine costs a minute or two, not hours. A queued job that the broker holds
neither in its queue nor among unacknowledged messages (Redis restarted without its data, an enqueue
that failed half way) is sent again. Claims are idempotent, so a job sent twice still runs once;
several recovery processes may run side by side.

A split clip (worker/segments.py) is watched segment by segment instead: a running segment whose
heartbeat stopped goes back to pending and is sent again (a dead machine costs that segment only), a
pending one the broker does not hold is sent again, a job whose segments are all done but which nobody
joins (the last segment's message lost, or its join's worker dead) gets its join sent, and a cancel that
no live segment will confirm is confirmed here.
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
from shared.celery_app import JOIN_SEGMENTS, PROCESS_JOB, PROCESS_SEGMENT, enqueue
from shared.config import VIDEO_QUEUE, get_settings
from shared.db import get_db
from shared.errors import IllegalTransition, ServiceUnavailable
from worker.heartbeat import HEARTBEATS

log = logging.getLogger(__name__)
QUEUED_GRACE_S = 30  # a job queued this recently may still be on its way to the broker


def broker_job_ids() -> set[str]:
    """What the broker holds, waiting in the queue or delivered and unacked: job ids of PROCESS_JOB
    messages, segment ids ("<job>:<k>") of PROCESS_SEGMENT ones, join ids ("<job>:join") of joins."""
    r = redis.Redis.from_url(get_settings().redis_url, socket_timeout=get_settings().connect_timeout_s)
    raw = list(r.lrange(VIDEO_QUEUE, 0, -1)) + list(r.hvals("unacked"))
    ids: set[str] = set()
    for entry in raw:
        try:
            message = json.loads(entry)
            if isinstance(message, list):  # unacked: [message, exchange, routing key]
                message = message[0]
            task = message.get("headers", {}).get("task")
            if task not in (PROCESS_JOB, PROCESS_SEGMENT, JOIN_SEGMENTS):
                continue
            args = json.loads(base64.b64decode(message["body"]))[0]
            if task == PROCESS_JOB:
                ids.add(str(args[0]))
            elif task == PROCESS_SEGMENT:
                ids.add(jobs.segment_id(args[0], int(args[1])))
            else:
                ids.add(jobs.join_id(args[0]))
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
    done = {"requeued_stalled": [], "cancelled_stalled": [], "resent_queued": [], "requeued_segments": [],
            "resent_segments": [], "sent_joins": []}
    running = list(db.jobs.find({"status": jobs.RUNNING},
                                {"run_id": 1, "progress": 1, "cancel_requested": 1, "updated_at": 1,
                                 "plan": 1, "started_at": 1}))
    beats = {b["_id"]: b for b in db[HEARTBEATS].find({"_id": {"$in": [str(j["_id"]) for j in running]}})}
    split = [j for j in running if j.get("plan") and not _planning(j, beats)]
    for job in running:
        if job in split:
            continue  # watched by its segments' heartbeats (below)
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
    held = broker_job_ids() if old or done["requeued_stalled"] or split else set()
    for job in split:
        try:
            _sweep_split(job, held, done)
        except IllegalTransition:
            continue  # it moved on meanwhile
    if old or done["requeued_stalled"]:
        for job in old:
            if str(job["_id"]) not in held:
                done["resent_queued"].append(str(job["_id"]))
        for job_id in done["requeued_stalled"] + done["resent_queued"]:
            enqueue(PROCESS_JOB, job_id)
    return done


def _planning(job: dict, beats: dict) -> bool:
    """A split job being claimed again (a retry) has its planner's live heartbeat: judged as a job."""
    beat = beats.get(str(job["_id"]))
    return bool(beat and beat.get("run_id") == job["run_id"])


def _stale(last, t, settings) -> bool:
    return last is None or t - _aware(last) >= timedelta(seconds=settings.stalled_after_s)


def _aware(t):
    from datetime import UTC

    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _sweep_split(job: dict, held: set[str], done: dict) -> None:
    """Segments of one split job: stalled ones again, lost ones resent, a lost join sent, a cancel
    nobody confirms confirmed."""
    settings, t, db = get_settings(), jobs.now(), get_db()
    job_id = job["_id"]
    segs = jobs.segments_of(job)
    if len(segs) < len(job["plan"]["segments"]) and _stale(job.get("updated_at"), t, settings):
        jobs.create_segments(job)  # the planner died between recording the plan and the segments
        segs = jobs.segments_of(job)
    keys = [s["_id"] for s in segs] + [jobs.join_id(job_id)]
    beats = {b["_id"]: b for b in db[HEARTBEATS].find({"_id": {"$in": keys}})}

    def alive(key: str, run_id, fallback) -> bool:
        beat = beats.get(key)
        return not _stale(beat["at"] if beat and beat.get("run_id") == run_id else fallback, t, settings)

    claim = db[jobs.SEGMENTS].find_one({"_id": jobs.join_id(job_id)})
    joining = claim is not None and alive(claim["_id"], claim.get("run_id"), claim.get("at"))
    live = [s for s in segs
            if s["status"] == jobs.RUNNING and alive(s["_id"], s["run_id"], s.get("updated_at"))]
    if job.get("cancel_requested"):
        if not live and not joining:
            jobs.mark_cancelled(job_id, job["run_id"])
            jobs.delete_split_outputs(job)
            done["cancelled_stalled"].append(str(job_id))
        return
    for s in segs:
        if s["status"] == jobs.RUNNING and s not in live:
            note = f"the worker processing it ({s.get('worker')}) stopped responding"
            if jobs.requeue_segment(job_id, s["k"], s["run_id"], note):
                enqueue(PROCESS_SEGMENT, str(job_id), s["k"])
                done["requeued_segments"].append(s["_id"])
        elif s["status"] == jobs.PENDING and s["_id"] not in held and \
                t - _aware(s["updated_at"]) >= timedelta(seconds=QUEUED_GRACE_S):
            enqueue(PROCESS_SEGMENT, str(job_id), s["k"])
            done["resent_segments"].append(s["_id"])
    if len(segs) == len(job["plan"]["segments"]) and all(s["status"] == jobs.DONE for s in segs) and \
            not joining and jobs.join_id(job_id) not in held:
        last = max((s.get("finished_at") for s in segs if s.get("finished_at")), default=None)
        if claim is not None:
            jobs.release_join(job_id, claim.get("run_id"))  # its worker died mid-join
        elif last is not None and t - _aware(last) < timedelta(seconds=QUEUED_GRACE_S):
            return  # the last segment's own message is on its way
        enqueue(JOIN_SEGMENTS, str(job_id))
        done["sent_joins"].append(str(job_id))


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
