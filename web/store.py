"""The web's read side: a clip by id for a given user, and its results as the worker stored them.

Reads never write: the worker writes every document a results page reads (shared/result_docs.py)
before it marks the job succeeded, so a GET only looks documents up by `_id`: the small job document
(summary and layout), one person page, the violations list, the bins of one unit.
"""

from __future__ import annotations

import json

from bson import ObjectId

from shared import cache, jobs, result_docs, results
from shared.db import get_db
from shared.errors import NotFound

PERSONS_PAGE = result_docs.PERSONS_PAGE
dumps = results.dumps
# Job documents and lists as of the jobs collection's revision: a page load polled by 20 clients
# costs one Redis round trip, not a FerretDB scan of every job (README, "Caches").
_jobs = cache.Versioned("jobs", max_entries=4096)
_lists = cache.Versioned("jobs", max_entries=256)


def plain(obj):
    """The object with ids and times turned into JSON-friendly strings."""
    return json.loads(dumps(obj))


def can_see(user, owner: str | None) -> bool:
    """Admins see every clip; others only their own."""
    return user is not None and (user.is_admin or owner == user.id)


def get_clip(job_id, user) -> dict:
    """The job as `user` may see it (NotFound otherwise): one lookup by `_id`, ownership checked here."""
    oid = jobs.object_id(job_id)
    job = _jobs.get(get_db().name, oid, lambda: jobs.get(oid), keep=cache.unless_written(str(oid)))
    if not can_see(user, job.get("owner")):
        raise NotFound(f"no job {job_id}")
    return job


def list_clips(owner: str | None, limit: int, skip: int = 0) -> list[dict]:
    """Newest clips first (everyone's for owner None), as of the last change to any job; read-only.

    After a change only the written jobs are read again (by `_id`), not the whole list: a running
    job's progress, written every second, costs one lookup, not a scan of every job.
    """
    return _lists.get(get_db().name, (owner, limit, skip), lambda: jobs.list_for(owner, limit, skip),
                      keep=lambda old, changed: _patched(old, changed, owner, limit, skip))


def of_list(entries: cache.Versioned, key, clips: list[dict], render):
    """render(), cached in entries while clips (from list_clips) is the list it was made from."""
    return entries.get(get_db().name, key, lambda: (clips, render()),
                       keep=lambda old, changed: old if old[0] is clips else None)[1]


def _patched(old: list[dict], changed: set[str], owner: str | None, limit: int, skip: int):
    """The list with the changed jobs read again; old itself when none of them is in it or joins it;
    None when only a full read can tell (one left the list, or a new one shifts a later page)."""
    ids = [jobs.object_id(i) for i in changed if ObjectId.is_valid(i)]
    if not ids:
        return old
    now = jobs.listed(ids)
    new, at, touched = list(old), {d["_id"]: i for i, d in enumerate(old)}, False
    for oid in ids:
        doc = now.get(oid)
        if oid in at:
            if doc is None or doc.get("owner") != old[at[oid]].get("owner"):
                return None  # it left the list: what follows the last row is not known
            new[at[oid]], touched = doc, True
        elif doc is not None and (owner is None or doc.get("owner") == owner):
            # Not listed but listable: a new job (created_at never changes), or one older than the list.
            if len(new) >= limit and doc["created_at"] <= new[-1]["created_at"]:
                continue
            if skip:
                return None
            new.append(doc)
            new.sort(key=lambda d: d["created_at"], reverse=True)
            del new[limit:]
            touched = True
    return new if touched else old


def layout(clip: dict) -> dict:
    """Where a succeeded clip's results are stored (counts of buckets and pages)."""
    return (clip.get("result") or {}).get("layout") or {}


def summary(clip: dict) -> dict:
    """The result summary shown and served, with the run's details (models, settings); no layout."""
    out = {k: v for k, v in (clip.get("result") or {}).items() if k != "layout"}
    out.update(json.loads(result_docs.text(result_docs.DETAILS, result_docs.details_id(clip["_id"]), "{}")))
    return out


def page_count(clip: dict) -> int:
    """How many pages the per-person ledger has (at least 1)."""
    return max(1, layout(clip).get("person_pages") or 0)


def n_persons(clip: dict) -> int:
    """How many people the ledger lists."""
    return layout(clip).get("persons") or 0


def persons_page(clip: dict, page: int) -> list[dict]:
    """One page (from 1) of the per-person ledger; empty beyond the last page."""
    if page < 1 or page > (layout(clip).get("person_pages") or 0):
        return []
    return json.loads(result_docs.persons_page_text(clip["_id"], page))


def all_persons_json(clip: dict) -> str:
    """The whole per-person ledger as one JSON array."""
    return result_docs.all_persons_text(clip["_id"], layout(clip).get("person_pages") or 0)


def violations_json(clip: dict) -> str:
    """People whose vote is not masked, by first appearance, as a JSON array."""
    return result_docs.text(result_docs.PERSONS, result_docs.violations_id(clip["_id"]))


def violations(clip: dict) -> list[dict]:
    """violations_json parsed."""
    return json.loads(violations_json(clip))


def bins_json(clip: dict, unit: str) -> str:
    """The chart bins of one unit ('second' | 'minute') as a JSON array."""
    return result_docs.text(result_docs.BINS, result_docs.bins_id(clip["_id"], unit))


def chart_unit(summary: dict) -> str:
    """Per-second bins for clips up to 15 minutes, per-minute beyond (the chart stays readable)."""
    return "second" if (summary.get("duration_s") or 0) <= 15 * 60 else "minute"
