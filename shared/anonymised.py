"""The anonymised export of a clip: its state on the job document (`anonymised`), changed only here.

{status: pending | running | done | failed, boxes, requested_at, started_at, progress, file_id,
finished_at, error} (boxes: the compliance boxes are drawn, as outlines without text): one
sub-document written by the web (request) and by the one task making it, never by two writers at
once. The export's file is a `results` file of the job (role "anonymised"): deleting the clip
deletes it (shared/result_docs.job_files).
"""

from __future__ import annotations

from pymongo import ReturnDocument

from shared.db import get_db
from shared.errors import IllegalTransition
from shared.jobs import SUCCEEDED, get, now, object_id

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"


def request(job_id, *, boxes: bool = False) -> dict:
    """Ask for a (new) anonymised export of a succeeded clip, with its compliance boxes drawn or not; the
    caller enqueues it. The job."""
    t = now()
    doc = get_db().jobs.find_one_and_update(
        {"_id": object_id(job_id), "status": SUCCEEDED, "anonymised.status": {"$nin": [PENDING, RUNNING]},
         "retention.footage_deleting_at": None},
        # Field by field: a previous export's file_id stays until the new one replaces it.
        {"$set": {"anonymised.status": PENDING, "anonymised.requested_at": t,
                  "anonymised.progress": 0.0, "anonymised.error": None, "anonymised.boxes": bool(boxes),
                  "updated_at": t}},
        return_document=ReturnDocument.AFTER)
    if doc is None:
        job = get(job_id)
        if job["status"] != SUCCEEDED:
            raise IllegalTransition(f"the clip is {job['status']}; only a finished clip can be anonymised")
        if (job.get("retention") or {}).get("footage_deleting_at"):
            raise IllegalTransition("the clip's footage was deleted under its retention policy")
        raise IllegalTransition("an anonymised copy of this clip is already being made")
    return doc


def start(job_id) -> dict | None:
    """The task takes the pending request; None when there is none (deleted, or taken already)."""
    return get_db().jobs.find_one_and_update(
        {"_id": object_id(job_id), "status": SUCCEEDED, "anonymised.status": PENDING},
        {"$set": {"anonymised.status": RUNNING, "anonymised.started_at": now()}},
        return_document=ReturnDocument.AFTER)


def progress(job_id, fraction: float) -> bool:
    """Record how far the running export is; False when the clip is gone (deleted meanwhile)."""
    res = get_db().jobs.update_one({"_id": object_id(job_id), "anonymised.status": RUNNING},
                                   {"$set": {"anonymised.progress": round(float(fraction), 4)}})
    return res.matched_count == 1


def finish(job_id, file_id) -> bool:
    """Record the stored export; False when the clip was deleted meanwhile (the caller deletes the file)."""
    t = now()
    res = get_db().jobs.update_one(
        {"_id": object_id(job_id), "anonymised.status": RUNNING},
        {"$set": {"anonymised.status": DONE, "anonymised.file_id": file_id, "anonymised.progress": 1.0,
                  "anonymised.finished_at": t, "updated_at": t}})
    return res.matched_count == 1


def fail(job_id, reason: str) -> None:
    """Record that the export could not be made, with a sentence for the user."""
    t = now()
    get_db().jobs.update_one({"_id": object_id(job_id), "anonymised.status": {"$in": [PENDING, RUNNING]}},
                             {"$set": {"anonymised.status": FAILED, "anonymised.error": reason,
                                       "anonymised.finished_at": t, "updated_at": t}})


def set_only(job_id, on: bool) -> dict:
    """Mark a clip "anonymised only" (its pages show no face, original or annotated video) or not; the job."""
    t = now()
    get_db().jobs.update_one({"_id": object_id(job_id)},
                             {"$set": {"anonymised_only": bool(on), "updated_at": t}})
    return get(job_id)
