"""Audit trail pages: the admins' search (/admin/audit) and each owner's trail of a clip."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bson import ObjectId
from flask import Blueprint, abort, render_template, request
from flask_login import current_user, login_required

from shared.db import get_db
from web import audit, store

bp = Blueprint("trail", __name__)
FILTERS = ("user", "clip", "action", "since", "until")


def parse_time(value: str, *, end: bool = False) -> datetime | None:
    """A UTC time from a date (YYYY-MM-DD) or a date and time (YYYY-MM-DDTHH:MM[:SS]); None if empty.

    As an end, a date means the whole day and a time without seconds the whole minute, so "until
    2024-05-01" includes that day.
    """
    value = (value or "").strip().replace(" ", "T")
    if not value:
        return None
    for fmt, span in (("%Y-%m-%d", timedelta(days=1)), ("%Y-%m-%dT%H:%M", timedelta(minutes=1)),
                      ("%Y-%m-%dT%H:%M:%S", timedelta(seconds=1))):
        try:
            t = datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
        return t + span if end else t
    raise ValueError(f"{value!r} is not a date (YYYY-MM-DD) or a date and time (YYYY-MM-DDTHH:MM).")


def owner_names(entries: list[dict]) -> dict[str, str]:
    """Usernames of the clips' owners on one page (one lookup by `_id` list); deleted ones are missing."""
    ids = {e["owner"] for e in entries if e.get("owner") and ObjectId.is_valid(e["owner"])}
    if not ids:
        return {}
    found = get_db().users.find({"_id": {"$in": [ObjectId(i) for i in ids]}}, {"username": 1})
    return {str(u["_id"]): u["username"] for u in found}


@bp.get("/admin/audit")
@login_required
def admin():
    """Search the audit trail by user, clip, action and time, newest first (admins only)."""
    if not current_user.is_admin:
        abort(403)
    args = {k: (request.args.get(k) or "").strip() for k in FILTERS}
    page = max(1, request.args.get("page", 1, type=int) or 1)
    error, entries, more = None, [], False
    if args["action"] and args["action"] not in audit.ACTIONS:
        error = f"Unknown action {args['action']!r}."
    else:
        try:
            q = audit.query(clip_id=args["clip"], user=args["user"], action=args["action"],
                            since=parse_time(args["since"]), until=parse_time(args["until"], end=True))
        except ValueError as e:
            error = str(e)
        else:
            entries, more = audit.search(q, page)
    filters = {k: v for k, v in args.items() if v}
    return render_template("audit/admin.html", args=args, filters=filters, entries=entries, more=more,
                           page=page, error=error, actions=audit.ACTIONS,
                           owners=owner_names(entries)), 400 if error else 200


@bp.get("/clips/<job_id>/audit")
@login_required
def clip(job_id):
    """Who viewed, downloaded or exported this clip (its owner and admins only)."""
    c = store.get_clip(job_id, current_user)
    page = max(1, request.args.get("page", 1, type=int) or 1)
    entries, more = audit.for_clip(c["_id"], page)
    return render_template("audit/clip.html", clip=c, entries=entries, more=more, page=page)
