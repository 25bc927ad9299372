"""MongoDB access: one client per process, created lazily (after Celery's fork), indexes, GridFS."""

from __future__ import annotations

import os
import threading

import gridfs
import pymongo
from pymongo.database import Database
from pymongo.errors import PyMongoError

from shared.config import get_settings
from shared.errors import ServiceUnavailable

_lock = threading.Lock()
_client: pymongo.MongoClient | None = None
_client_pid: int | None = None
_indexed: set[str] = set()

# GridFS buckets: uploads (inputs), results (annotated videos, thumbnails, face crops), training.
UPLOADS, RESULTS, TRAINING = "uploads", "results", "training"


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
    client = get_client()
    db = client.get_default_database(default="maskwatch")
    if db.name not in _indexed:
        ensure_indexes(db)
        _indexed.add(db.name)
    return db


def reset() -> None:
    """Forget the client (tests that switch databases or settings)."""
    global _client, _client_pid
    with _lock:
        if _client is not None:
            _client.close()
        _client, _client_pid = None, None
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
