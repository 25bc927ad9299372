"""Per-process caches that are never stale: each entry is kept with the revision of its source.

A revision is a Redis counter that every write to the source collection bumps (shared/db.py wraps the
`jobs`, `users` and `tokens` collections so that no write can forget to), plus an epoch that changes
whenever Redis loses its data. A lookup reads the current revision (one Redis round trip, far cheaper
than a FerretDB query) and uses an entry only while its revision is current, so a change made by any
process (a worker's progress, a cancel from the other gunicorn worker) is seen by the next request.
When Redis cannot be reached, lookups go to MongoDB and nothing is cached.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import redis

from shared.config import get_settings

log = logging.getLogger(__name__)
PREFIX = "maskwatch:rev:"
# A bound on staleness should a bump ever be lost (Redis unreachable just after a write).
MAX_AGE_S = 10.0

SOURCES = ("jobs", "auth")  # what the revisions are of (shared/db.py REVISED names the collections)
LOG_MAX = 5000  # changes kept per source: an entry older than that is rebuilt in full
CHANGES_MAX = 200  # more changed documents than this: rebuild rather than patch
UNKNOWN = "*"  # a write whose documents are not known (a filter other than _id)
# One round trip: the new revision and, scored by it, each changed _id ("<id> <revision>", unique).
_BUMP = """
local n = redis.call('INCR', KEYS[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[2], n, ARGV[i] .. ' ' .. n) end
redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -tonumber(ARGV[1]) - 1)
return n
"""

_lock = threading.Lock()
_local = threading.local()
_client: redis.Redis | None = None
_client_url: str | None = None


def _redis() -> redis.Redis:
    global _client, _client_url
    settings = get_settings()
    with _lock:
        if _client is None or _client_url != settings.redis_url:
            timeout = settings.connect_timeout_s
            _client = redis.Redis.from_url(settings.redis_url, socket_timeout=timeout,
                                           socket_connect_timeout=timeout)
            _client_url = settings.redis_url
        return _client


def _keys(database: str, source: str) -> tuple[str, str]:
    return f"{PREFIX}{database}:epoch", f"{PREFIX}{database}:{source}"


def _fetch(database: str) -> dict[str, tuple[bytes, int]] | None:
    """Every source's revision in one round trip; None when Redis is unreachable."""
    epoch_key = _keys(database, "")[0]
    counter_keys = [_keys(database, s)[1] for s in SOURCES]
    try:
        r = _redis()
        epoch, *counters = r.mget(epoch_key, *counter_keys)
        if epoch is None:  # first use, or Redis lost its data: entries built before are unusable
            r.set(epoch_key, uuid.uuid4().hex, nx=True)
            epoch, *counters = r.mget(epoch_key, *counter_keys)
        return {s: (epoch, int(c or 0)) for s, c in zip(SOURCES, counters, strict=True)}
    except redis.RedisError as e:
        log.warning("cache bypassed: Redis unreachable (%s)", type(e).__name__)
        return None


def revision(database: str, source: str) -> tuple[bytes, int] | None:
    """The source's current revision (epoch, counter); None when Redis is unreachable.

    Between begin_snapshot() and end_snapshot() they are read once, on first use: a web request
    costs one round trip.
    """
    memo = getattr(_local, "snapshot", None)
    if memo is None:
        revs = _fetch(database)
    else:
        if database not in memo:
            memo[database] = _fetch(database)
        revs = memo[database]
    return None if revs is None else revs[source]


def begin_snapshot() -> None:
    """Until end_snapshot() this thread reads each revision once (its own writes read them again)."""
    _local.snapshot = {}


def end_snapshot() -> None:
    """Read revisions afresh again."""
    _local.snapshot = None


def bump(database: str, source: str, ids: Iterable[str] | None = None) -> None:
    """Say the source changed (the documents with these _ids; None: which is unknown).

    Every process's entries built from it are stale from now on; the change log lets an entry that
    holds none of the changed documents be kept, and one that does be patched, without a full read.
    """
    if getattr(_local, "snapshot", None):
        _local.snapshot.clear()  # this thread must see its own write
    counter_key = _keys(database, source)[1]
    members = [str(i) for i in ids] if ids is not None else [UNKNOWN]
    try:
        _redis().eval(_BUMP, 2, counter_key, counter_key + ":log", LOG_MAX, *members)
    except redis.RedisError as e:
        log.warning("cache revision of %s not bumped: Redis unreachable (%s); entries expire in %.0f s",
                    source, type(e).__name__, MAX_AGE_S)


def changes(database: str, source: str, since: int, until: int) -> set[str] | None:
    """The _ids written after revision since up to until; None when the log cannot tell."""
    key = _keys(database, source)[1] + ":log"
    try:
        oldest, found = (_redis().pipeline(transaction=False).zrange(key, 0, 0, withscores=True)
                         .zrangebyscore(key, f"({since}", until).execute())
    except redis.RedisError:
        return None
    # The log must reach back past the entry's revision: trimming may have cut one bump's ids in part.
    if not oldest or oldest[0][1] > since:
        return None
    ids = {m.decode().split(" ", 1)[0] for m in found}
    return None if UNKNOWN in ids or len(ids) > CHANGES_MAX else ids


def forget(database: str) -> None:
    """Invalidate everything cached from a database (it was dropped)."""
    try:
        _redis().delete(_keys(database, "")[0])
    except redis.RedisError as e:
        log.warning("cache epoch of %s not reset: Redis unreachable (%s)", database, type(e).__name__)


def unless_written(doc_id: str | None = None):
    """A keep function for entries built from one document: doc_id, or else the value's own `_id`."""
    def keep(value, changed: set[str]):
        if value is None:
            return None
        return None if str(doc_id if doc_id is not None else value["_id"]) in changed else value
    return keep


class Versioned:
    """A bounded LRU of values built from one source collection; callers must not mutate the values."""

    def __init__(self, source: str, max_entries: int = 1024):
        self.source = source
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[tuple[bytes, int], float, Any]] = OrderedDict()
        self._building: dict[Hashable, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(self, database: str, key: Hashable, build: Callable[[], Any],
            keep: Callable[[Any, set[str]], Any] | None = None) -> Any:
        """The cached value for key while the source is unchanged, else build() (once per process).

        keep(value, changed_ids), when given, turns an older entry into a current one: the value
        itself when it holds none of the changed documents, a patched copy, or None to build.
        """
        rev = revision(database, self.source)
        if rev is None:
            return build()
        key = (database, key)
        entry = self._entry(key)
        if entry is not None and entry[0] == rev:
            return entry[2]
        with self._lock:
            building = self._building.setdefault(key, threading.Lock())
        with building:  # concurrent requests for one key wait for a single build
            entry = self._entry(key)
            if entry is not None and entry[0] == rev:
                return entry[2]
            value, built = None, time.monotonic()
            if entry is not None and keep is not None and entry[0][0] == rev[0] and entry[0][1] < rev[1]:
                ids = changes(database, self.source, entry[0][1], rev[1])
                if ids is not None:
                    value, built = keep(entry[2], ids), entry[1]  # max age runs from the full build
            if value is None:
                value, built = build(), time.monotonic()
            with self._lock:
                self._entries[key] = (rev, built, value)
                self._entries.move_to_end(key)
                while len(self._entries) > self.max_entries:
                    self._entries.popitem(last=False)
                self._building.pop(key, None)
            return value

    def _entry(self, key: Hashable) -> tuple[tuple[bytes, int], float, Any] | None:
        """The entry for key unless older than MAX_AGE_S."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or time.monotonic() - entry[1] > MAX_AGE_S:
                return None
            self._entries.move_to_end(key)
            return entry

    def clear(self) -> None:
        """Drop every entry (tests)."""
        with self._lock:
            self._entries.clear()
