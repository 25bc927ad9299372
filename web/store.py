"""The web's read side: a clip by id for a given user, and a pre-serialised view of its results.

A succeeded job's `result` never changes (succeeded is final), so its large parts (per-second
bins, the per-person ledger) are serialised once into a `result_views` document keyed by the job
id. FerretDB's SQLite backend decodes a structured document field by field (about 1 ms per KB
here) but a string in one go, and it only uses an index for `_id` equality: so the results page
and its JSON read one document by `_id` whose bulk is a few strings, and never touch `frames`.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

from bson import ObjectId

from shared import jobs
from shared.db import get_db
from shared.errors import NotFound

VIEWS = "result_views"
VIEW_VERSION = 1
PERSONS_PAGE = 100
VIOLATION_VOTES = ("unmasked", "incorrect")
# Fields of `result` that are big and live in the view's strings instead of its summary.
BULKY = ("bins", "persons")


def _default(o):
    if isinstance(o, ObjectId):
        return str(o)
    if isinstance(o, datetime):
        return (o if o.tzinfo else o.replace(tzinfo=UTC)).isoformat()
    if isinstance(o, date):
        return o.isoformat()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def dumps(obj) -> str:
    """Compact JSON (ids and times as strings) that is also safe inside an HTML <script> element."""
    text = json.dumps(obj, default=_default, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def plain(obj):
    """The object with ids and times turned into JSON-friendly strings."""
    return json.loads(dumps(obj))


def can_see(user, owner: str | None) -> bool:
    """Admins see every clip; others only their own."""
    return user is not None and (user.is_admin or owner == user.id)


def get_clip(job_id, user) -> dict:
    """The job as `user` may see it (NotFound otherwise); a succeeded one carries its `view`.

    Lookups are by `_id` alone and ownership is checked here, so one indexed read serves each call.
    """
    oid = jobs.object_id(job_id)
    view = get_db()[VIEWS].find_one({"_id": str(oid)})
    if view is not None and view.get("v") == VIEW_VERSION:
        if not can_see(user, view["owner"]):
            raise NotFound(f"no job {job_id}")
        return {**view["job"], "view": view}
    job = jobs.get(oid)
    if not can_see(user, job.get("owner")):
        raise NotFound(f"no job {job_id}")
    if job["status"] == jobs.SUCCEEDED and job.get("result"):
        view = build_view(job)
        return {**view["job"], "view": view}
    return job


def build_view(job: dict) -> dict:
    """Serialise a succeeded job's results into its view document (idempotent) and return it."""
    result = job["result"]
    summary = {k: v for k, v in result.items() if k not in BULKY}
    head = {k: v for k, v in job.items() if k not in ("result", "explanations")}
    head["result"] = summary
    bins = result.get("bins") or {}
    persons = list(result.get("persons") or [])
    violations = sorted(
        ({"track_id": p.get("track_id"), "vote": p.get("vote"), "first_s": p.get("first_s"),
          "last_s": p.get("last_s"), "crop_id": p.get("crop_id")}
         for p in persons if p.get("vote") in VIOLATION_VOTES),
        key=lambda v: (v["first_s"] is None, v["first_s"] or 0),
    )
    view = {
        "_id": str(job["_id"]),
        "v": VIEW_VERSION,
        "owner": job.get("owner"),
        "built_at": datetime.now(UTC),
        "job": head,
        "summary_json": dumps(summary),
        "bins_json": {unit: dumps(bins.get(unit) or []) for unit in ("second", "minute")},
        "n_persons": len(persons),
        "persons_json": [dumps(persons[i:i + PERSONS_PAGE]) for i in range(0, len(persons), PERSONS_PAGE)],
        "n_violations": len(violations),
        "violations_json": dumps(violations),
    }
    get_db()[VIEWS].replace_one({"_id": view["_id"]}, view, upsert=True)
    return view


def drop_view(job_id) -> None:
    """Forget a job's view (its job is being deleted)."""
    get_db()[VIEWS].delete_one({"_id": str(jobs.object_id(job_id))})


def persons_page(view: dict, page: int) -> list[dict]:
    """One page (from 1) of the per-person ledger; empty beyond the last page."""
    pages = view.get("persons_json") or []
    if page < 1 or page > len(pages):
        return []
    return json.loads(pages[page - 1])


def page_count(view: dict) -> int:
    """How many pages the per-person ledger has (at least 1)."""
    return max(1, len(view.get("persons_json") or []))


def all_persons_json(view: dict) -> str:
    """The whole per-person ledger as one JSON array, joined from the stored pages."""
    inner = [p[1:-1] for p in view.get("persons_json") or [] if p != "[]"]
    return "[" + ",".join(inner) + "]"


def violations(view: dict) -> list[dict]:
    """People whose vote is not masked (unmasked or mask worn incorrectly), by first appearance."""
    return json.loads(view.get("violations_json") or "[]")


def bins_json(view: dict, unit: str) -> str:
    """The chart bins of one unit ('second' | 'minute') as a JSON array."""
    return (view.get("bins_json") or {}).get(unit) or "[]"


def chart_unit(summary: dict) -> str:
    """Per-second bins for clips up to 15 minutes, per-minute beyond (the chart stays readable)."""
    return "second" if (summary.get("duration_s") or 0) <= 15 * 60 else "minute"
