"""The audit trail (`audit`): who viewed, downloaded or deleted which clip, when and from where.

One insert per event, never a read-modify-write, so concurrent requests cannot lose each other's
entries (FerretDB 1.24 can lose one of two concurrent updates of one document). Each entry copies
what it needs (the clip's id, file name and owner; the user's id and name), so it outlives the clip
and the account: who looked at what must be answerable after the data is gone.

Views (a results page, the API's results) are the most frequent entries and, as before, best effort:
they are written in batches, at most FLUSH_S after the event, in one insert (on FerretDB each insert
waits its turn at SQLite's single writer; 20 viewers made that the page's slowest step). Every other
entry is written before its request answers, pending views first, and a search writes them before it
reads, so the trail stays in order. A web process killed outright loses at most its last FLUSH_S of
views; one that stops normally writes them.

Queries filter on plain fields and sort by time: MongoDB answers them from the indexes that
shared/db.py creates; FerretDB (dev and CI only) scans the collection for them, since it pushes
down only `_id` lookups; pages are bounded by PAGE_SIZE either way.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from datetime import UTC, datetime

from bson import ObjectId
from flask import g, has_request_context, request
from flask_login import current_user
from pymongo.errors import PyMongoError

from shared.db import get_db
from shared.errors import ServiceUnavailable
from shared.retention import EXPIRE

log = logging.getLogger(__name__)
COLLECTION = "audit"
VIEW, DOWNLOAD, EXPORT, DELETE, ACCOUNT_DELETE = "view", "download", "export", "delete", "account_delete"
CHANGE = "change"  # a clip's privacy settings (retention, anonymised only)
ACTIONS = (VIEW, DOWNLOAD, EXPORT, DELETE, ACCOUNT_DELETE, CHANGE, EXPIRE)
PAGE_SIZE = 50
UA_MAX = 300  # enough to tell browsers and scripts apart; a client cannot make entries large
FLUSH_S = 0.2  # views wait at most this long to be written

_pending: list[dict] = []
_pending_lock = threading.Lock()
_flush_lock = threading.Lock()
_wake = threading.Event()
_writer: threading.Thread | None = None


def _who(user):
    """The acting user: the one given, else the API's caller, else the page's session."""
    if user is not None:
        return user
    if has_request_context():
        if g.get("user") is not None:
            return g.user
        if current_user and current_user.is_authenticated:
            return current_user
    return None


def entry(action: str, clip: dict | None = None, *, user=None, detail: str = "") -> dict:
    """The document recording one event of the current request."""
    who = _who(user)
    doc = {
        "at": datetime.now(UTC), "action": action, "detail": detail[:200],
        "user_id": who.id if who else None, "username": who.username if who else None,
        # remote_addr is what ProxyFix resolved (PROXY_FIX_HOPS): the client, not our own proxy.
        "addr": request.remote_addr if has_request_context() else None,
        "ua": (request.headers.get("User-Agent") or "")[:UA_MAX] if has_request_context() else "",
        "via": ("api" if request.path.startswith("/api/") else "page") if has_request_context() else None,
        "clip_id": None, "filename": None, "owner": None,
    }
    if clip is not None:
        doc.update(clip_id=str(clip["_id"]), filename=clip.get("filename"), owner=clip.get("owner"))
    return doc


def record(action: str, clip: dict | None = None, *, user=None, detail: str = "",
           required: bool = False) -> bool:
    """Write one entry; True when written.

    A failed write is logged and the request goes on, except with required=True (downloads),
    which raises ServiceUnavailable instead: personal data leaves only with its record.
    """
    doc = entry(action, clip, user=user, detail=detail)
    try:
        flush()
        get_db()[COLLECTION].insert_one(doc)
        return True
    except (PyMongoError, ServiceUnavailable) as e:
        log.error("audit entry not written (%s %s by %s): %s", action, doc["clip_id"], doc["username"], e)
        if required:
            raise ServiceUnavailable("The download could not be recorded in the audit trail, so it "
                                     "was not started; try again shortly.") from None
        return False


def viewed(clip: dict, detail: str) -> None:
    """Record a view of the clip's results, written with the next batch (at most FLUSH_S later)."""
    global _writer
    doc = entry(VIEW, clip, detail=detail)
    doc["_id"] = ObjectId()  # now: entries of one millisecond keep their order by _id
    with _pending_lock:
        _pending.append(doc)
        if _writer is None or not _writer.is_alive():  # one per process, started after gunicorn's fork
            _writer = threading.Thread(target=_write_views, name="audit-views", daemon=True)
            _writer.start()
    _wake.set()


def _write_views() -> None:
    while True:
        _wake.wait()
        _wake.clear()
        flush()
        time.sleep(FLUSH_S)  # gather the next batch


@atexit.register
def flush() -> None:
    """Write the pending views now (best effort: a failure is logged and they are dropped)."""
    with _flush_lock:  # and those another thread is writing: once this returns, they are stored
        with _pending_lock:
            docs = _pending[:]
            _pending.clear()
        if not docs:
            return
        try:
            get_db()[COLLECTION].insert_many(docs, ordered=False)
        except (PyMongoError, ServiceUnavailable) as e:
            log.error("%d view audit entries not written: %s", len(docs), e)


def record_download(clip: dict, what: str) -> None:
    """Record a download (pages and API alike) before it starts; refuses it when that fails."""
    if is_download_start():
        record(DOWNLOAD, clip, detail=what, required=True)


def is_download_start() -> bool:
    """False for a Range request past the first byte: a resumed download, already recorded."""
    value = request.headers.get("Range", "") if has_request_context() else ""
    return not value or value.replace(" ", "").startswith("bytes=0-")


def query(*, clip_id: str | None = None, user: str | None = None, action: str | None = None,
          since: datetime | None = None, until: datetime | None = None) -> dict:
    """The filter for a search: by clip, by user (a username or a user id), action and time."""
    q: dict = {}
    if clip_id:
        q["clip_id"] = clip_id.strip().lower()
    if user:
        user = user.strip()
        name = {"username": user.lower()}
        # 24 hex digits may be a user id or (rarely) a username: look for either.
        q.update({"$or": [{"user_id": user.lower()}, name]} if ObjectId.is_valid(user) else name)
    if action:
        q["action"] = action
    if since or until:
        q["at"] = {**({"$gte": since} if since else {}), **({"$lt": until} if until else {})}
    return q


def search(q: dict, page: int = 1, per_page: int = PAGE_SIZE) -> tuple[list[dict], bool]:
    """One page (from 1) of entries matching q, newest first, and whether there is a next page."""
    flush()
    cursor = (get_db()[COLLECTION].find(q).sort([("at", -1), ("_id", -1)])
              .skip((max(page, 1) - 1) * per_page).limit(per_page + 1))
    docs = list(cursor)
    return docs[:per_page], len(docs) > per_page


def for_clip(clip_id, page: int = 1, per_page: int = PAGE_SIZE) -> tuple[list[dict], bool]:
    """One page of one clip's trail, newest first (the caller checks the clip is the user's)."""
    return search({"clip_id": str(clip_id)}, page, per_page)


def as_json(doc: dict) -> dict:
    """An entry as the API serves it."""
    return {"id": str(doc["_id"]), "at": doc["at"].isoformat().replace("+00:00", "Z"),
            "action": doc["action"], "detail": doc.get("detail") or "",
            "user": {"id": doc.get("user_id"), "username": doc.get("username")},
            "address": doc.get("addr"), "user_agent": doc.get("ua") or "", "via": doc.get("via"),
            "clip": {"id": doc.get("clip_id"), "filename": doc.get("filename"), "owner": doc.get("owner")}}
