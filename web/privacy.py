"""A clip's privacy settings (retention period, keep statistics, anonymised only) and what they hide.

Pages and the API change them through apply(); every file route asks check_footage() first, so a
clip marked "anonymised only", or whose footage its retention policy deleted, serves no face.
"""

from __future__ import annotations

from datetime import datetime

from shared import anonymised, jobs, retention
from web import audit
from web.errors import ApiError


def parse_days(raw) -> float | None:
    """A retention period in days from a form or JSON value: blank or 0 means kept until deleted."""
    if raw in (None, "", 0, "0"):
        return None
    try:
        days = float(raw)
    except (TypeError, ValueError):
        raise ValueError("The retention period is a number of days (blank: keep until deleted).") from None
    if not 0 < days <= retention.MAX_DAYS:
        raise ValueError(f"The retention period is between 0 and {int(retention.MAX_DAYS)} days.")
    return days


def apply(clip: dict, *, days: float | None, keep_statistics: bool, anonymised_only: bool) -> dict:
    """Change the clip's settings (IllegalTransition once its footage is gone); the job, audited."""
    changed = []
    r = clip.get("retention") or {}
    if (r.get("days"), bool(r.get("keep_statistics"))) != (days, keep_statistics):
        clip = retention.set_for_clip(clip["_id"], days, keep_statistics)
        changed.append(f"retention {describe(clip)}")
    if bool(clip.get("anonymised_only")) != anonymised_only:
        clip = anonymised.set_only(clip["_id"], anonymised_only)
        changed.append("anonymised only" if anonymised_only else "faces shown again")
    if changed:
        audit.record(audit.CHANGE, clip, detail="; ".join(changed))
    return clip


def describe(clip: dict) -> str:
    """The policy in a few words: "30 days, statistics kept" / "kept until deleted"."""
    r = clip.get("retention") or {}
    if not r.get("days"):
        return "kept until deleted"
    return retention.period_text(r["days"]) + (", statistics kept" if r.get("keep_statistics") else "")


def schedule(clip: dict) -> list[tuple[str, datetime | None, bool]]:
    """When each part of the clip is (or was) deleted: (part, when or None for never, done already)."""
    r = clip.get("retention") or {}
    at, gone = r.get("delete_at"), r.get("footage_deleted_at")
    stats_kept = r.get("keep_statistics") and clip.get("status") == jobs.SUCCEEDED
    return [("Original, annotated video, face crops, explanations, anonymised copy", gone or at, bool(gone)),
            ("Frame data, people and charts", None if stats_kept else at, False)]


def hidden(clip: dict, *, anonymised_ok: bool = False) -> ApiError | None:
    """Why the clip's footage is not served (410 once deleted, 403 when anonymised only), or None."""
    if retention.footage_gone(clip):
        at = (clip.get("retention") or {}).get("footage_deleted_at")
        when = f" on {at:%Y-%m-%d %H:%M} UTC" if at else ""
        return ApiError(410, "footage_deleted", f"This clip's footage was deleted{when} under its retention "
                        "policy; its statistics are kept.")
    if clip.get("anonymised_only") and not anonymised_ok:
        return ApiError(403, "anonymised_only", "This clip is marked anonymised only: its faces, original "
                        "and annotated video are not shown; download the anonymised copy instead.")
    return None


def check_footage(clip: dict, *, anonymised_ok: bool = False) -> None:
    """Refuse a file of the clip that its settings hide (hidden())."""
    refusal = hidden(clip, anonymised_ok=anonymised_ok)
    if refusal is not None:
        raise refusal


def shows_faces(clip: dict) -> bool:
    """Whether the clip's pages may show its footage and face crops."""
    return not (retention.footage_gone(clip) or clip.get("anonymised_only"))


def account_policy(user_id: str) -> dict:
    """What the account's new uploads get: {days, keep_statistics, own} (own: an override is set)."""
    days, keep_statistics, source = retention.owner_settings(user_id)
    return {"days": days, "keep_statistics": keep_statistics, "own": source == "account"}
