"""MongoDB access: one client per process, created lazily (after Celery's fork), indexes, GridFS."""

from __future__ import annotations

import os
import threading

import gridfs
import pymongo
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import PyMongoError

from shared import cache
from shared.config import get_settings
from shared.errors import ServiceUnavailable

_lock = threading.Lock()
_client: pymongo.MongoClient | None = None
_client_pid: int | None = None
_indexed: set[str] = set()
_db: Database | None = None

# GridFS buckets: uploads (inputs), results (annotated videos, thumbnails, face crops), training.
UPLOADS, RESULTS, TRAINING = "uploads", "results", "training"


# Collections the web caches (shared/cache.py), with the revision each one's writes bump.
REVISED = {"jobs": "jobs", "users": "auth", "tokens": "auth"}
_WRITES = ("insert_one", "insert_many", "replace_one", "update_one", "update_many", "delete_one",
           "delete_many", "find_one_and_delete", "find_one_and_replace", "find_one_and_update",
           "bulk_write", "drop")


class RevisedCollection(Collection):
    """A collection whose every write bumps its cache revision, after the write (shared/cache.py)."""


def _written_ids(name: str, args: tuple, kwargs: dict, result) -> list | None:
    """The _ids a write touched, as far as its filter or result says; None when unknown."""
    if name == "insert_one":
        return [result.inserted_id] if result is not None else None
    if name == "insert_many":
        return list(result.inserted_ids) if result is not None else None
    if name in ("bulk_write", "drop"):
        return None
    query = args[0] if args else kwargs.get("filter")
    if not isinstance(query, dict) or "_id" not in query:
        return None
    value = query["_id"]
    if isinstance(value, dict):
        return list(value["$in"]) if set(value) == {"$in"} else None
    return [value]


def _bumping(name: str):
    write = getattr(Collection, name)

    def method(self, *args, **kwargs):
        result = None
        try:
            result = write(self, *args, **kwargs)
            return result
        finally:  # a write that failed may still have changed something
            cache.bump(self.database.name, REVISED[self.name], _written_ids(name, args, kwargs, result))

    method.__name__ = name
    method.__doc__ = f"{write.__doc__.splitlines()[0] if write.__doc__ else name}; bumps the revision."
    return method


for _name in _WRITES:
    setattr(RevisedCollection, _name, _bumping(_name))


class ProductDatabase(Database):
    """The product's database: the collections in REVISED come wrapped so that caches see every write."""

    def __getitem__(self, name: str) -> Collection:
        return RevisedCollection(self, name) if name in REVISED else super().__getitem__(name)

    def get_collection(self, name: str, *args, **kwargs) -> Collection:
        if name in REVISED:
            return RevisedCollection(self, name, *args, **kwargs)
        return super().get_collection(name, *args, **kwargs)

    def drop_collection(self, name_or_collection, *args, **kwargs):
        try:
            return super().drop_collection(name_or_collection, *args, **kwargs)
        finally:
            cache.forget(self.name)


def drop_database(name: str) -> None:
    """Drop a whole database, and with it everything any process cached from it."""
    get_client().drop_database(name)
    cache.forget(name)


def get_client() -> pymongo.MongoClient:
    """The process's MongoClient; a new one after fork, because pymongo clients are not fork-safe."""
    global _client, _client_pid
    with _lock:
        if _client is None or _client_pid != os.getpid():
            timeout_ms = int(get_settings().connect_timeout_s * 1000)
            _client = pymongo.MongoClient(
                get_settings().mongo_uri,
                serverSelectionTimeoutMS=timeout_ms,
                connectTimeoutMS=timeout_ms,
                tz_aware=True,
                connect=False,
            )
            _client_pid = os.getpid()
        return _client


def get_db() -> Database:
    """The product's database (named by the path of MONGO_URI, default 'maskwatch'), indexes ensured."""
    global _db
    client = get_client()
    db = _db
    if db is None or db.client is not client:
        db = _db = ProductDatabase(client, client.get_default_database(default="maskwatch").name)
    if db.name not in _indexed:
        ensure_indexes(db)
        _indexed.add(db.name)
    return db


def reset() -> None:
    """Forget the client (tests that switch databases or settings)."""
    global _client, _client_pid, _db
    with _lock:
        if _client is not None:
            _client.close()
        _client, _client_pid, _db = None, None, None
        _indexed.clear()


def ping() -> None:
    """Raise ServiceUnavailable with the cause and the fix when MongoDB does not answer in time."""
    uri = get_settings().mongo_uri
    try:
        get_client().admin.command("ping")
    except PyMongoError as e:
        raise ServiceUnavailable(
            f"MongoDB at {_redact(uri)} is unreachable ({type(e).__name__}); start it "
            "(bin/services start) or fix MONGO_URI"
        ) from None


def _redact(uri: str) -> str:
    """A URI with any password hidden, for messages."""
    if "@" not in uri:
        return uri
    scheme, rest = uri.split("://", 1)
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def ensure_indexes(db: Database) -> None:
    """Create the indexes every query relies on (idempotent)."""
    try:
        db.jobs.create_index([("owner", 1), ("created_at", -1)])
        db.jobs.create_index([("status", 1), ("updated_at", 1)])
        db.jobs.create_index([("retention.delete_at", 1)], sparse=True)  # the retention sweep
        # Results are found by _id alone (shared/result_docs.py); the per-frame index of the
        # one-document-per-frame layout would refuse buckets (no `frame` field) on MongoDB.
        if "job_id_1_frame_1" in db.frames.index_information():
            db.frames.drop_index("job_id_1_frame_1")
        db.users.create_index("username", unique=True)
        db.tokens.create_index("token_hash", unique=True)
        # The audit trail's searches (web/audit.py), newest first; FerretDB scans instead.
        for key in ("clip_id", "username", "user_id", "action"):
            db.audit.create_index([(key, 1), ("at", -1)])
        db.audit.create_index([("at", -1)])
        db.training_images.create_index("sha256", unique=True)
    except PyMongoError as e:
        raise ServiceUnavailable(
            f"MongoDB at {_redact(get_settings().mongo_uri)} refused index creation "
            f"({type(e).__name__}: {e}); start it (bin/services start) or fix MONGO_URI"
        ) from None


def gridfs_bucket(name: str) -> gridfs.GridFSBucket:
    """A GridFS bucket of the product's database (deletes; storage.put writes)."""
    return gridfs.GridFSBucket(get_db(), bucket_name=name)
