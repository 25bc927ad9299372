"""The dev server (FerretDB on SQLite, patched by bin/setup) copies each database's write-ahead log into
the database beside its writers, not inside their commits (README, "MongoDB here: FerretDB", item 8).

Read from the log's shared-memory index, as SQLite keeps it: how many frames the log holds (mxFrame)
and how many of them a checkpoint has copied (nBackfill). Upstream, a small write stays in the log
until a commit takes it past wal_autocheckpoint (64 MB here). Skipped on MongoDB and on a FerretDB
this checkout did not start.
"""

from __future__ import annotations

import os
import struct
import time

import pytest
from bson import Binary

from shared.config import ROOT

SQLITE_DIR = ROOT / ".run" / "ferretdb" / "sqlite"


def _log_state(shm) -> tuple[int, int]:
    """(frames in the log, frames copied into the database) from a -shm file (native byte order)."""
    with open(shm, "rb") as f:
        head = f.read(100)
    return struct.unpack_from("=I", head, 16)[0], struct.unpack_from("=I", head, 96)[0]


def test_a_small_write_is_checkpointed_within_a_second(mongo):
    info = mongo.command("buildInfo")
    shm = SQLITE_DIR / f"{mongo.name}.sqlite-shm"
    if "ferretdbVersion" not in info or not shm.exists():
        pytest.skip("not the FerretDB that bin/services starts")
    coll = mongo["wal_probe"]
    coll.insert_many([{"_id": f"probe-{i}", "data": Binary(os.urandom(1 << 20))} for i in range(2)])
    frames, copied = _log_state(shm)
    assert frames > 0
    deadline = time.monotonic() + 3
    while (state := _log_state(shm))[1] < state[0] and time.monotonic() < deadline:
        time.sleep(0.05)
    frames, copied = _log_state(shm)
    coll.drop()
    assert copied == frames > 0, (frames, copied)
