"""Retention: how long a clip is kept, and the sweep that deletes what has expired.

A clip's policy is fixed at upload on its job document, `retention`:
{days, keep_statistics, source, delete_at, footage_deleted_at}, from the owner's account override
(`users.retention`) or else the settings (RETENTION_DAYS, RETENTION_KEEP_STATISTICS); the owner can
change it on the clip's page. delete_at is the upload time plus the period (None: kept until deleted).
Once it has passed and the clip is not queued or running, the sweep (worker/retention.py, run by
Celery beat every RETENTION_SWEEP_S) deletes
- the whole clip (jobs.delete: upload, outputs, crops, explanations, frame data, people, charts), or
- with keep_statistics, and only for a clip that has statistics, its footage: the upload, the
  annotated video and poster, the face crops, the explanation images and the anonymised copy. The
  numbers stay; the job records footage_deleted_at and every page stops linking to the files.
Each deletion is one entry in the audit trail (action "expire"), so it can be shown that it happened.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from shared import jobs, result_docs, storage
from shared.config import get_settings
from shared.db import RESULTS, UPLOADS, get_db
from shared.errors import IllegalTransition, NotFound

log = logging.getLogger(__name__)
EXPIRE = "expire"  # the audit action of a deletion by the retention policy
DONE_STATES = (jobs.SUCCEEDED, jobs.FAILED, jobs.CANCELLED)
MAX_DAYS = 36500.0


def policy(days: float | None, keep_statistics: bool, source: str, created_at: datetime) -> dict:
    """The `retention` sub-document of a clip uploaded at created_at (days None or 0: kept)."""
    days = float(days) if days else None
    if days is not None and not 0 < days <= MAX_DAYS:
        raise ValueError(f"a retention period is more than 0 and at most {int(MAX_DAYS)} days")
    return {"days": days, "keep_statistics": bool(keep_statistics), "source": source,
            "delete_at": created_at + timedelta(days=days) if days else None, "footage_deleted_at": None}


def owner_settings(owner: str) -> tuple[float | None, bool, str]:
    """(days, keep_statistics, source) for this owner's new uploads: the account's override ("account"),
    else the settings' ("default")."""
    try:
        user = get_db().users.find_one({"_id": jobs.object_id(owner)}, {"retention": 1})
    except NotFound:  # not an account id (a CLI or test owner): the settings apply
        user = None
    own = (user or {}).get("retention")
    if own:
        return own.get("days") or None, bool(own.get("keep_statistics")), "account"
    s = get_settings()
    return s.retention_days or None, s.retention_keep_statistics, "default"


def for_owner(owner: str, created_at: datetime) -> dict:
    """The policy a new upload of this owner gets."""
    days, keep_statistics, source = owner_settings(owner)
    return policy(days, keep_statistics, source, created_at)


def set_for_clip(job_id, days: float | None, keep_statistics: bool) -> dict:
    """Change one clip's policy (its period counts from its upload); the job. Not once footage is gone."""
    job = jobs.get(job_id)
    if (job.get("retention") or {}).get("footage_deleted_at"):
        raise IllegalTransition("this clip's footage was deleted already; its policy cannot change")
    new = policy(days, keep_statistics, "clip", job["created_at"])
    res = get_db().jobs.update_one({"_id": job["_id"], "retention.footage_deleted_at": None},
                                   {"$set": {"retention": new, "updated_at": jobs.now()}})
    if res.matched_count == 0:
        raise IllegalTransition("this clip's footage was deleted meanwhile; its policy cannot change")
    return {**job, "retention": new}


def set_for_account(user_id: str, days: float | None, keep_statistics: bool) -> None:
    """The account's override for clips uploaded from now on (days None: kept until deleted)."""
    policy(days, keep_statistics, "account", jobs.now())  # validates
    get_db().users.update_one({"_id": jobs.object_id(user_id)},
                              {"$set": {"retention": {"days": float(days) if days else None,
                                                      "keep_statistics": bool(keep_statistics)}}})


def clear_for_account(user_id: str) -> None:
    """Drop the account's override: its new uploads get the settings' policy again."""
    get_db().users.update_one({"_id": jobs.object_id(user_id)}, {"$unset": {"retention": ""}})


def expired(now: datetime | None = None, limit: int = 200) -> list[dict]:
    """Clips whose period has passed and that nothing is working on, oldest deadline first.

    A range query on a plain field: MongoDB answers it from the index shared/db.py makes; FerretDB
    scans `jobs` for it (it pushes down only equality), once per sweep, which is what a sweep costs.
    """
    now = now or jobs.now()
    query = {"retention.delete_at": {"$lte": now}, "retention.footage_deleted_at": None,
             "status": {"$in": list(DONE_STATES)}}
    return list(get_db().jobs.find(query).sort("retention.delete_at", 1).limit(limit))


def expire(job: dict) -> str | None:
    """Delete what has expired of one clip; what was deleted ("clip" | "footage"), None when skipped."""
    keep = (job.get("retention") or {}).get("keep_statistics") and job["status"] == jobs.SUCCEEDED
    try:
        if keep:
            delete_footage(job)
        else:
            jobs.delete(job["_id"])
    except (NotFound, IllegalTransition) as e:
        log.info("retention: clip %s skipped: %s", job["_id"], e)  # deleted or restarted meanwhile
        return None
    what = "footage" if keep else "clip"
    _record(job, what)
    return what


def delete_footage(job: dict) -> None:
    """Remove a succeeded clip's footage and keep its numbers (see the module's docstring)."""
    t = jobs.now()
    # Hidden first (every page checks footage_gone), then removed; footage_deleted_at is set last, so
    # a sweep interrupted in between does it again instead of leaving files behind.
    res = get_db().jobs.update_one(
        {"_id": job["_id"], "status": jobs.SUCCEEDED, "retention.footage_deleted_at": None},
        {"$set": {"retention.footage_deleting_at": t, "updated_at": t}})
    if res.matched_count == 0:
        raise IllegalTransition("the clip is no longer a finished clip with its footage")
    job = jobs.get(job["_id"])
    storage.delete_files(UPLOADS, [job["input_id"], *jobs.plan_sources(job)])
    storage.delete_files(RESULTS, result_docs.job_files(job, legacy=False))
    result_docs.forget_files(job["_id"])
    t = jobs.now()
    get_db().jobs.update_one(
        {"_id": job["_id"]},
        {"$set": {"retention.footage_deleted_at": t, "result.output_id": None, "result.thumbnail_id": None,
                  "updated_at": t},
         "$unset": {"anonymised": "", "explanations": ""}})


def footage_gone(job: dict) -> bool:
    """Whether the clip's footage was deleted (or is being deleted) by its retention policy."""
    r = job.get("retention") or {}
    return bool(r.get("footage_deleted_at") or r.get("footage_deleting_at"))


def sweep(now: datetime | None = None) -> dict[str, int]:
    """Delete everything that has expired; how many clips and footages were deleted."""
    counts = {"clip": 0, "footage": 0}
    for job in expired(now):
        what = expire(job)
        if what:
            counts[what] += 1
    return counts


def _record(job: dict, what: str) -> None:
    """The audit entry of one deletion (the same fields as web/audit.py's entries, by no user)."""
    r = job.get("retention") or {}
    detail = ("footage deleted, statistics kept" if what == "footage" else "clip deleted") + \
        f" after {period_text(r.get('days'))} ({r.get('source') or 'default'} policy)"
    try:
        get_db().audit.insert_one({
            "at": jobs.now(), "action": EXPIRE, "detail": detail, "user_id": None,
            "username": "retention policy", "addr": None, "ua": "", "via": "worker",
            "clip_id": str(job["_id"]), "filename": job.get("filename"), "owner": job.get("owner")})
    except Exception as e:  # noqa: BLE001 - the deletion happened; a missing entry must not undo it
        log.error("retention: audit entry for clip %s not written: %s", job["_id"], e)


def period_text(days: float | None) -> str:
    """A period for people: "30 days", "1 day", "45 s" (tests use seconds), "no limit"."""
    if not days:
        return "no limit"
    if days >= 1:
        return f"{days:g} day{'s' if days != 1 else ''}"
    return f"{days * 86400:.0f} s"
