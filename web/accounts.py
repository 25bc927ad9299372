"""Deleting an account: every clip with all its data, the API tokens, then the user itself."""

from __future__ import annotations

import logging

from bson import ObjectId

from shared import jobs
from shared.db import get_db
from shared.errors import IllegalTransition, NotFound
from web import audit
from web.actions import remove

log = logging.getLogger(__name__)


class StillRunning(Exception):
    """Clips of the account are still being analysed; the message is for the user."""


def _owned(user_id: str) -> list[dict]:
    return list(get_db().jobs.find({"owner": user_id}, {"_id": 1, "status": 1, "filename": 1, "owner": 1}))


def _stop(clip: dict) -> dict:
    """A queued clip cancelled at once (no worker can claim it any more); a running one asked to stop."""
    if clip["status"] not in (jobs.QUEUED, jobs.RUNNING):
        return clip
    try:
        return jobs.cancel(clip["_id"])
    except (IllegalTransition, NotFound):
        return get_db().jobs.find_one({"_id": clip["_id"]}) or {**clip, "status": "gone"}


def _still_running(running: list[dict]) -> str:
    first = running[0].get("filename") or "a clip"
    others = len(running) - 1
    what = first + (f" and {others} other clip{'s' if others > 1 else ''}" if others else "")
    verb, pronoun = ("are", "They are") if others else ("is", "It is")
    return (f"Nothing was deleted yet: {what} {verb} still being analysed. {pronoun} being stopped now; "
            "enter your password again in a few seconds to delete your account.")


def delete_account(user) -> int:
    """Delete the user's clips (with files and statistics), tokens and account; the number of clips.

    StillRunning (nothing deleted) while a clip is being analysed: it is cancelled, and a worker
    stops within a second or two, after which the same call succeeds. Deleting a running clip would
    leave the worker writing results for a clip and an account that no longer exist.
    """
    owned = [_stop(c) for c in _owned(user.id)]
    running = [c for c in owned if c["status"] == jobs.RUNNING]
    if running:
        raise StillRunning(_still_running(running))
    get_db().tokens.delete_many({"user_id": user.id})  # no script uploads while the clips go
    deleted = 0
    for clip in owned:
        deleted += _delete_clip(clip)
    get_db().users.delete_one({"_id": ObjectId(user.id)})
    # An upload that was being stored meanwhile (another tab) must not outlive the account.
    for clip in _owned(user.id):
        try:
            deleted += _delete_clip(_stop(clip))
        except StillRunning:
            log.warning("clip %s of deleted user %s was claimed meanwhile; delete it once it stops",
                        clip["_id"], user.id)
    audit.record(audit.ACCOUNT_DELETE, user=user, detail=f"{deleted} clip{'s' if deleted != 1 else ''}")
    return deleted


def _delete_clip(clip: dict) -> int:
    try:
        remove(clip, detail="with the account")
        return 1
    except NotFound:
        return 0  # deleted meanwhile
    except IllegalTransition:
        # Retried in another tab and claimed by a worker meanwhile: stop it and let the user try again.
        jobs.cancel(clip["_id"])
        raise StillRunning(_still_running([clip])) from None
