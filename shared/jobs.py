"""The job repository: the one place that changes a job's state.

queued -> running -> succeeded | failed | cancelled; queued -> cancelled; failed | cancelled -> queued
(retry); running -> running (a redelivered job claimed again after its worker died).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from bson import ObjectId
from bson.errors import InvalidId
from pymongo import ReturnDocument

from shared.db import get_db
from shared.errors import Cancelled, IllegalTransition, NotFound

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = "queued", "running", "succeeded", "failed", "cancelled"
STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINAL = (SUCCEEDED, FAILED, CANCELLED)
ALLOWED = {
    QUEUED: {RUNNING, CANCELLED, FAILED},  # failed: it could not be queued
    RUNNING: {RUNNING, SUCCEEDED, FAILED, CANCELLED, QUEUED},  # queued: its worker stopped (stalled)
    FAILED: {QUEUED},
    CANCELLED: {QUEUED},
    SUCCEEDED: set(),
}
# A file that kills its worker this often is failed rather than redelivered for ever.
MAX_ATTEMPTS = 3


def now() -> datetime:
    """Timezone-aware UTC now (Mongo keeps milliseconds)."""
    return datetime.now(UTC)


def object_id(job_id) -> ObjectId:
    """An ObjectId from a string; malformed ids are NotFound (they name no job)."""
    if isinstance(job_id, ObjectId):
        return job_id
    try:
        return ObjectId(str(job_id))
    except (InvalidId, TypeError):
        raise NotFound(f"no job {job_id!r}") from None


def create(*, owner: str, filename: str, kind: str, input_id: ObjectId, size: int,
           content_type: str) -> dict:
    """Record a new queued job for an upload already stored in GridFS (with the owner's retention)."""
    from shared import retention

    t = now()
    doc = {
        "owner": owner,
        "filename": filename,
        "kind": kind,  # "video" | "image"
        "input_id": input_id,
        "size": size,
        "content_type": content_type,
        "status": QUEUED,
        "progress": 0.0,
        "eta_s": None,
        "error": None,
        "attempts": 0,
        "run_id": None,
        "cancel_requested": False,
        "created_at": t,
        "updated_at": t,
        "started_at": None,
        "finished_at": None,
        "result": None,
        "retention": retention.for_owner(owner, t),
    }
    doc["_id"] = get_db().jobs.insert_one(doc).inserted_id
    return doc


def get(job_id, owner: str | None = None) -> dict:
    """One job; NotFound when missing or, with owner, when it belongs to someone else."""
    query = {"_id": object_id(job_id)}
    if owner is not None:
        query["owner"] = owner
    doc = get_db().jobs.find_one(query)
    if doc is None:
        raise NotFound(f"no job {job_id}")
    return doc


# The list needs summaries only (the job document holds no ledger or bins: shared/result_docs.py).
LISTED = {"explanations": 0}


def list_for(owner: str | None, limit: int = 200, skip: int = 0) -> list[dict]:
    """Newest jobs first, from the skip-th on; owner None lists everyone's (admins)."""
    query = {} if owner is None else {"owner": owner}
    return list(get_db().jobs.find(query, LISTED).sort("created_at", -1).skip(skip).limit(limit))


def listed(job_ids: list) -> dict:
    """The jobs with these ids (as list_for returns them), by id; those gone are left out."""
    return {d["_id"]: d for d in get_db().jobs.find({"_id": {"$in": job_ids}}, LISTED)}


def _transition(job_id, to: str, *, extra_filter: dict | None = None, set_: dict | None = None,
                inc: dict | None = None, unset: list[str] | None = None) -> dict:
    """Move a job to state `to` atomically, only from a state that allows it."""
    sources = [s for s, targets in ALLOWED.items() if to in targets]
    query = {"_id": object_id(job_id), "status": {"$in": sources}, **(extra_filter or {})}
    update: dict = {"$set": {"status": to, "updated_at": now(), **(set_ or {})}}
    if inc:
        update["$inc"] = inc
    if unset:
        update["$unset"] = {k: "" for k in unset}
    doc = get_db().jobs.find_one_and_update(query, update, return_document=ReturnDocument.AFTER)
    if doc is None:
        current = get(job_id)
        raise IllegalTransition(
            f"job {job_id} is {current['status']}"
            + (f" (attempt {current.get('run_id')})" if current["status"] == RUNNING else "")
            + f"; it cannot become {to}"
        )
    return doc


def claim(job_id, worker: str) -> dict:
    """Start (or restart after a lost worker) a job; returns it with a fresh run_id for this attempt."""
    job = get(job_id)
    lost = job["status"] == RUNNING or (job["status"] == QUEUED and job.get("stalled_at"))
    if lost and job["attempts"] >= MAX_ATTEMPTS:
        fail(job_id, job["run_id"], f"the worker stopped {job['attempts']} times while processing "
                                    "this file; it was not retried again")
        raise IllegalTransition(f"job {job_id} failed after {job['attempts']} attempts")
    return _transition(
        job_id,
        RUNNING,
        extra_filter={"status": {"$in": [QUEUED, RUNNING]}},
        set_={"run_id": uuid.uuid4().hex, "worker": worker, "started_at": now(), "progress": 0.0,
              "eta_s": None, "error": None, "note": None},
        inc={"attempts": 1},
    )


def stall(job_id, run_id: str, note: str) -> dict:
    """Put a running job whose worker stopped (no heartbeat) back in the queue, saying so.

    Guarded by the stalled attempt's run_id: an attempt that is alive after all, or a newer one,
    is never touched. Queued again, it can be cancelled or deleted like any queued job; the attempt
    count stays, so a file that keeps killing workers still fails after MAX_ATTEMPTS.
    """
    return _transition(job_id, QUEUED, extra_filter={"status": RUNNING, "run_id": run_id},
                       set_={"note": note, "stalled_at": now(), "eta_s": None})


def await_broker(job_id, note: str) -> dict:
    """A queued job the broker could not take yet: it stays queued, saying so, for recovery to send."""
    doc = get_db().jobs.find_one_and_update(
        {"_id": object_id(job_id), "status": QUEUED},
        {"$set": {"note": note, "updated_at": now()}}, return_document=ReturnDocument.AFTER)
    return doc or get(job_id)


def progress(job_id, run_id: str, fraction: float, eta_s: float | None, **fields) -> bool:
    """Record progress of the current attempt; returns True when the user asked to cancel."""
    doc = get_db().jobs.find_one_and_update(
        {"_id": object_id(job_id), "status": RUNNING, "run_id": run_id},
        {"$set": {"progress": round(float(fraction), 4), "eta_s": eta_s, "updated_at": now(), **fields}},
    )  # no projection: FerretDB does not implement findAndModify's `fields`
    if doc is None:
        # Cancelled while queued-then-running, or superseded by a newer attempt: stop this one.
        return True
    return bool(doc.get("cancel_requested"))


def record(job_id, run_id: str, **fields) -> bool:
    """Set worker bookkeeping fields (not state) on the current attempt; False when it is not current."""
    res = get_db().jobs.update_one({"_id": object_id(job_id), "status": RUNNING, "run_id": run_id},
                                   {"$set": fields})
    return res.matched_count == 1


def finish(job_id, run_id: str, result: dict) -> dict:
    """Mark the attempt succeeded with its result; Cancelled when the user asked to cancel it meanwhile."""
    t = now()
    try:
        # A cancel can arrive after the worker's last check (while it stores files): it still wins.
        return _transition(
            job_id, SUCCEEDED, extra_filter={"run_id": run_id, "cancel_requested": {"$ne": True}},
            set_={"result": result, "progress": 1.0, "eta_s": 0, "finished_at": t},
        )
    except IllegalTransition:
        current = get(job_id)
        mine = current["status"] == RUNNING and current.get("run_id") == run_id
        if mine and current.get("cancel_requested"):
            raise Cancelled(f"job {job_id} was cancelled before it finished") from None
        raise


def fail(job_id, run_id: str | None, reason: str, *, retryable: bool = True) -> dict:
    """Mark the attempt failed with a sentence for the user.

    retryable=False for a failure the file itself causes (too long, too large, not decodable): a
    retry would fail the same way, so none is offered.
    """
    extra = {"run_id": run_id} if run_id else {}
    return _transition(job_id, FAILED, extra_filter=extra,
                       set_={"error": reason, "finished_at": now(), "eta_s": None, "retryable": retryable})


def cancel(job_id) -> dict:
    """Cancel: a queued job at once; a running one is asked to stop (the worker confirms)."""
    job = get(job_id)
    if job["status"] == QUEUED:
        try:
            return _transition(job_id, CANCELLED, extra_filter={"status": QUEUED},
                               set_={"finished_at": now(), "error": "cancelled by the user"})
        except IllegalTransition:
            job = get(job_id)  # a worker claimed it meanwhile: ask it to stop
    if job["status"] == RUNNING:
        return get_db().jobs.find_one_and_update(
            {"_id": job["_id"], "status": RUNNING},
            {"$set": {"cancel_requested": True, "updated_at": now()}},
            return_document=ReturnDocument.AFTER,
        ) or get(job_id)
    raise IllegalTransition(f"job {job_id} is {job['status']}; it cannot be cancelled")


def mark_cancelled(job_id, run_id: str) -> dict:
    """The worker confirms it stopped a cancelled job."""
    return _transition(job_id, CANCELLED, extra_filter={"run_id": run_id},
                       set_={"finished_at": now(), "error": "cancelled by the user", "eta_s": None})


def retry(job_id) -> dict:
    """Put a failed or cancelled job back in the queue, clean (the caller enqueues it)."""
    if get(job_id).get("retryable") is False:
        raise IllegalTransition("this file cannot be analysed, so retrying would fail the same way; "
                                "upload a different file")
    return _transition(
        job_id, QUEUED, extra_filter={"status": {"$in": [FAILED, CANCELLED]}},
        set_={"progress": 0.0, "eta_s": None, "error": None, "cancel_requested": False, "note": None,
              "stalled_at": None,
              "finished_at": None, "result": None, "attempts": 0, "run_id": None},
    )


def delete(job_id) -> None:
    """Remove a job that is not running, with its statistics and every stored file (all by _id)."""
    from shared import result_docs, storage
    from shared.db import UPLOADS

    job = get(job_id)
    if job["status"] == RUNNING:
        raise IllegalTransition(f"job {job_id} is running; cancel it before deleting")
    if job.get("plan"):  # a split clip: what its segments stored, and buckets written before any result
        delete_segments(job)
        if not job.get("result"):
            result_docs.delete_read_model(job["_id"], plan_layout(job))
    result_docs.delete_outputs(job)
    if job.get("recording_id") is not None and job.get("seq") is not None:  # a camera's part
        out = part_out_id(job["recording_id"], job["seq"])
        outs = [out, *(f"{out}:{p}" for p in range(1, result_docs.MAX_PARTS))]
        get_db()[SEGMENT_OUTS].delete_many({"_id": {"$in": outs}})
        get_db()[LIVE_LINKS].delete_one({"_id": part_links_id(job["recording_id"], job["seq"])})
    storage.delete_files(UPLOADS, [job["input_id"], *plan_sources(job)])
    get_db().heartbeats.delete_one({"_id": str(job["_id"])})  # a dead attempt's last beat, if any
    get_db().jobs.delete_one({"_id": job["_id"], "status": {"$ne": RUNNING}})


def request_explanation(job_id, track_id: int) -> None:
    """Mark "explain this face" pending for one person of a succeeded job (the caller enqueues it)."""
    res = get_db().jobs.update_one(
        {"_id": object_id(job_id), "status": SUCCEEDED},
        {"$set": {f"explanations.{int(track_id)}": {"status": "pending", "requested_at": now()},
                  "updated_at": now()}},
    )
    if res.matched_count == 0:
        raise IllegalTransition(f"job {job_id} is {get(job_id)['status']}; only a succeeded job "
                                "can explain its faces")


def fail_explanation(job_id, track_id: int, reason: str) -> None:
    """Record that an explanation could not be made, with a sentence for the user."""
    get_db().jobs.update_one(
        {"_id": object_id(job_id)},
        {"$set": {f"explanations.{int(track_id)}": {"status": "failed", "error": reason,
                                                     "finished_at": now()}}},
    )


def finish_explanation(job_id, track_id: int, fields: dict) -> bool:
    """Record a finished explanation (image ids, label, probabilities) for one person; False when the
    clip was deleted, or its footage by its retention policy, meanwhile (the caller drops the images)."""
    res = get_db().jobs.update_one(
        {"_id": object_id(job_id), "retention.footage_deleting_at": None},
        {"$set": {f"explanations.{int(track_id)}": {"status": "done", **fields, "finished_at": now()}}},
    )
    return res.matched_count == 1


# --- segments of a long clip (worker/segments.py): one small document each, each written by its own task
#
# A long clip's job carries a `plan` (worker/segments_plan.py); segment k of it is the document
# {_id: "<job>:<k:04d>", job_id, plan_id, k, status, run_id, attempts, frames_done, files, ...} in
# `segments`, changed only here, guarded by its own run_id. The job document itself is never written by
# two segments at once (FerretDB 1.24 can lose one of two concurrent updates of one document).

SEGMENTS, SEGMENT_OUTS, LIVE_LINKS = "segments", "segment_outs", "live_links"
PENDING, DONE = "pending", "done"
# A segment that kills its worker (or fails unexpectedly) this often fails the job.
MAX_SEGMENT_ATTEMPTS = 3


def part_out_id(recording_id: str, seq: int) -> str:
    """The _id of a camera part's output (worker/live_join.py)."""
    return f"live:{recording_id}:{seq}"


def part_links_id(recording_id: str, seq: int) -> str:
    """The _id of the links from a camera's part seq-1 to part seq (`live_links`)."""
    return f"live:{recording_id}:{seq}:l"


def segment_id(job_id, k: int) -> str:
    """The _id of segment k's document (and its heartbeat key)."""
    return f"{job_id}:{k:04d}"


def join_id(job_id) -> str:
    """The _id of the join's claim (and its heartbeat key)."""
    return f"{job_id}:join"


def segments_of(job: dict) -> list[dict]:
    """The segment documents of the job's current plan, in order (missing ones left out)."""
    plan = job.get("plan") or {}
    ids = [segment_id(job["_id"], k) for k in range(len(plan.get("segments") or []))]
    found = {d["_id"]: d for d in get_db()[SEGMENTS].find({"_id": {"$in": ids}})} if ids else {}
    return [found[i] for i in ids if i in found and found[i].get("plan_id") == plan.get("id")]


def create_segments(job: dict) -> list[int]:
    """Segment documents for the job's plan, pending, except those already done under the same plan
    (a retry re-runs only what is missing); the segments to run."""
    plan = job["plan"]
    done = {s["k"] for s in segments_of(job) if s["status"] == DONE}
    todo = [k for k in range(len(plan["segments"])) if k not in done]
    t = now()
    for k in todo:
        _id = segment_id(job["_id"], k)
        get_db()[SEGMENTS].replace_one({"_id": _id}, {
            "_id": _id, "job_id": job["_id"], "plan_id": plan["id"], "k": k, "status": PENDING,
            "run_id": None, "attempts": 0, "frames_done": 0, "files": [], "created_at": t, "updated_at": t,
        }, upsert=True)
    return todo


def claim_segment(job_id, k: int, plan_id: str, worker: str) -> dict | None:
    """Start (or restart) segment k with a fresh run_id; None when it is done or of another plan."""
    return get_db()[SEGMENTS].find_one_and_update(
        {"_id": segment_id(job_id, k), "plan_id": plan_id, "status": {"$in": [PENDING, RUNNING]}},
        {"$set": {"status": RUNNING, "run_id": uuid.uuid4().hex, "worker": worker, "started_at": now(),
                  "updated_at": now(), "frames_done": 0}, "$inc": {"attempts": 1}},
        return_document=ReturnDocument.AFTER)


def update_segment(job_id, k: int, run_id: str, **fields) -> bool:
    """Set fields of a running segment's current attempt; False when the attempt is not current."""
    res = get_db()[SEGMENTS].update_one({"_id": segment_id(job_id, k), "status": RUNNING, "run_id": run_id},
                                        {"$set": {**fields, "updated_at": now()}})
    return res.matched_count == 1


def finish_segment(job_id, k: int, run_id: str, **fields) -> bool:
    """Mark the attempt's segment done; False when a newer attempt owns it."""
    return update_segment(job_id, k, run_id, status=DONE, finished_at=now(), **fields)


def requeue_segment(job_id, k: int, run_id: str | None, note: str) -> bool:
    """Put a running segment whose attempt stopped back to pending (guarded by that attempt's run_id)."""
    res = get_db()[SEGMENTS].update_one(
        {"_id": segment_id(job_id, k), "status": RUNNING, "run_id": run_id},
        {"$set": {"status": PENDING, "note": note, "updated_at": now()}})
    return res.matched_count == 1


def retire_run(job_id, run_id: str) -> str | None:
    """Give a running split job a new run_id, so that every segment of the old one stops (they check
    it each second); the new run_id, or None when that run is no longer the current one."""
    new = uuid.uuid4().hex
    res = get_db().jobs.update_one({"_id": object_id(job_id), "status": RUNNING, "run_id": run_id},
                                   {"$set": {"run_id": new, "updated_at": now()}})
    return new if res.matched_count == 1 else None


def requeue_unsplit(job_id, run_id: str, note: str) -> dict:
    """Put a split job back in the queue to run in one piece (`segment_seconds` 0), its plan dropped."""
    return _transition(job_id, QUEUED, extra_filter={"run_id": run_id},
                       set_={"segment_seconds": 0, "note": note, "progress": 0.0, "eta_s": None,
                             "frames_done": 0, "run_id": None},
                       unset=["plan"])


def claim_join(job_id, plan_id: str, worker: str) -> str | None:
    """Take the join of a split job (one at a time: a unique _id); its run_id, None when taken."""
    from pymongo.errors import DuplicateKeyError

    run_id = uuid.uuid4().hex
    try:
        get_db()[SEGMENTS].insert_one({"_id": join_id(job_id), "job_id": object_id(job_id),
                                       "plan_id": plan_id, "run_id": run_id, "worker": worker, "at": now()})
    except DuplicateKeyError:
        return None
    return run_id


def release_join(job_id, run_id: str | None = None) -> None:
    """Drop the join's claim (its own, or with run_id None whichever there is)."""
    query = {"_id": join_id(job_id), **({"run_id": run_id} if run_id else {})}
    get_db()[SEGMENTS].delete_one(query)


def segment_outputs(job: dict, segments: list[dict] | None = None) -> tuple[list, list[str]]:
    """(results file ids, segment_outs document ids) that segments of the job stored."""
    from shared.result_docs import MAX_PARTS

    n = len((job.get("plan") or {}).get("segments") or [])
    docs = segments if segments is not None else list(get_db()[SEGMENTS].find(
        {"_id": {"$in": [segment_id(job["_id"], k) for k in range(n)]}}))
    files = [f for s in docs for f in (s.get("files") or [])]
    outs = [f"{segment_id(job['_id'], s['k'])}:o{'' if p == 0 else f':{p}'}" for s in docs
            for p in range(MAX_PARTS)]
    return files, outs


def delete_segments(job: dict, segments: list[dict] | None = None, *, keep_docs: bool = False) -> None:
    """Remove what segments stored (parts, their outputs) and, unless keep_docs, their documents."""
    from shared import storage
    from shared.db import RESULTS

    n = len((job.get("plan") or {}).get("segments") or [])
    docs = segments if segments is not None else list(get_db()[SEGMENTS].find(
        {"_id": {"$in": [segment_id(job["_id"], k) for k in range(n)]}}))
    files, outs = segment_outputs(job, docs)
    storage.delete_files(RESULTS, files)
    if outs:
        get_db()[SEGMENT_OUTS].delete_many({"_id": {"$in": outs}})
    if not keep_docs:
        ids = [d["_id"] for d in docs] + [join_id(job["_id"])]
        get_db()[SEGMENTS].delete_many({"_id": {"$in": ids}})
        get_db().heartbeats.delete_many({"_id": {"$in": ids}})


def plan_sources(job: dict) -> list:
    """The upload's indexed copy a split clip was planned on (worker/indexed_copy.py), if any."""
    source = (job.get("plan") or {}).get("source_id")
    return [source] if source else []


def plan_layout(job: dict) -> dict | None:
    """The bucket layout a split job's segments write into (for deleting them before any result)."""
    from shared.result_docs import BUCKET_FRAMES

    plan = job.get("plan")
    return {"buckets": -(-plan["frames"] // BUCKET_FRAMES)} if plan else None


def delete_split_outputs(job: dict) -> None:
    """Remove everything a split job's segments and join stored: buckets, parts, outputs, result files."""
    from shared import result_docs, storage
    from shared.db import RESULTS

    storage.delete_files(RESULTS, result_docs.job_files(job, legacy=False))
    result_docs.record_files(job["_id"], [])
    delete_segments(job)
    result_docs.delete_read_model(job["_id"], plan_layout(job))
