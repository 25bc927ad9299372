"""The web's read side: a clip by id for a given user, and a pre-serialised view of its results.

A succeeded job's `result` never changes (succeeded is final), so it is serialised once into two
`result_views` documents: a small head keyed by the job id (owner, state, summary: enough for
status polls, media and ownership checks) and its data keyed "<job id>:data" (per-second bins and
the per-person ledger as JSON strings). FerretDB's SQLite backend decodes a structured document
field by field (about 1 ms per KB here) but a string in one go, and it only uses an index for
`_id` equality: so the results page and its JSON read two documents by `_id` and never touch
`frames` or the large job document.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

from bson import ObjectId

from shared import jobs
from shared.db import get_db
from shared.errors import NotFound

VIEWS = "result_views"
VIEW_VERSION = 2
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
    """The job as `user` may see it (NotFound otherwise); a succeeded one carries its `view` head.

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
        head, body = build_view(job)
        return {**head["job"], "view": head, "_data": body}
    return job


def data(clip: dict) -> dict:
    """The serialised results of a succeeded clip (a second document, read only when needed)."""
    if "_data" not in clip:
        body = get_db()[VIEWS].find_one({"_id": f"{clip['_id']}:data"})
        if body is None:  # deleted meanwhile, or a head written by an interrupted build
            raise NotFound(f"no results for job {clip['_id']}")
        clip["_data"] = body
    return clip["_data"]


def build_view(job: dict) -> tuple[dict, dict]:
    """Serialise a succeeded job's results into its view (idempotent); (head, data) documents.

    The head is small (what status, media and ownership checks need); the data holds the strings.
    The data is written first, so a head never points at missing data.
    """
    result = job["result"]
    summary = {k: v for k, v in result.items() if k not in BULKY}
    persons = list(result.get("persons") or [])
    bins = result.get("bins") or {}
    violations = sorted(
        ({"track_id": p.get("track_id"), "vote": p.get("vote"), "first_s": p.get("first_s"),
          "last_s": p.get("last_s"), "crop_id": p.get("crop_id")}
         for p in persons if p.get("vote") in VIOLATION_VOTES),
        key=lambda v: (v["first_s"] is None, v["first_s"] or 0),
    )
    jid = str(job["_id"])
    body = {
        "_id": f"{jid}:data",
        "summary_json": dumps(summary),
        "bins_json": {unit: dumps(bins.get(unit) or []) for unit in ("second", "minute")},
        "persons_json": [dumps(persons[i:i + PERSONS_PAGE]) for i in range(0, len(persons), PERSONS_PAGE)],
        "violations_json": dumps(violations),
    }
    head_job = {k: v for k, v in job.items() if k not in ("result", "explanations")}
    head = {
        "_id": jid, "v": VIEW_VERSION, "owner": job.get("owner"), "built_at": datetime.now(UTC),
        "job": {**head_job, "result": summary}, "n_persons": len(persons),
        "persons_pages": len(body["persons_json"]), "n_violations": len(violations),
    }
    views = get_db()[VIEWS]
    views.replace_one({"_id": body["_id"]}, body, upsert=True)
    views.replace_one({"_id": jid}, head, upsert=True)
    return head, body


def drop_view(job_id) -> None:
    """Forget a job's view (its job is being deleted)."""
    jid = str(jobs.object_id(job_id))
    get_db()[VIEWS].delete_one({"_id": jid})
    get_db()[VIEWS].delete_one({"_id": f"{jid}:data"})


def page_count(view: dict) -> int:
    """How many pages the per-person ledger has (at least 1), from the view head."""
    return max(1, view.get("persons_pages") or 0)


def persons_page(body: dict, page: int) -> list[dict]:
    """One page (from 1) of the per-person ledger; empty beyond the last page."""
    pages = body.get("persons_json") or []
    if page < 1 or page > len(pages):
        return []
    return json.loads(pages[page - 1])


def all_persons_json(body: dict) -> str:
    """The whole per-person ledger as one JSON array, joined from the stored pages."""
    inner = [p[1:-1] for p in body.get("persons_json") or [] if p != "[]"]
    return "[" + ",".join(inner) + "]"


def violations(body: dict) -> list[dict]:
    """People whose vote is not masked (unmasked or mask worn incorrectly), by first appearance."""
    return json.loads(body.get("violations_json") or "[]")


def bins_json(body: dict, unit: str) -> str:
    """The chart bins of one unit ('second' | 'minute') as a JSON array."""
    return (body.get("bins_json") or {}).get(unit) or "[]"


def chart_unit(summary: dict) -> str:
    """Per-second bins for clips up to 15 minutes, per-minute beyond (the chart stays readable)."""
    return "second" if (summary.get("duration_s") or 0) <= 15 * 60 else "minute"
