"""A running attempt's heartbeat: a small document per job, refreshed every few seconds by a thread.

It lives in its own collection, keyed by the job id, and only this thread writes it: the job document
itself keeps a single writer per attempt (FerretDB 1.24 can lose one of two concurrent updates of one
document). worker/recovery.py re-queues a running job whose heartbeat stopped.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from pymongo.errors import PyMongoError

from shared.db import get_db
from shared.jobs import now

log = logging.getLogger(__name__)
HEARTBEATS = "heartbeats"
EVERY_S = 10.0


class Heartbeat:
    """Context manager: beats for (job, run) from a daemon thread until the block ends."""

    def __init__(self, job_id, run_id: str, worker: str, every_s: float = EVERY_S):
        self.key, self.run_id, self.worker, self.every_s = str(job_id), run_id, worker, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self.key}", daemon=True)

    def beat(self) -> None:
        """Write one heartbeat now (a database outage is logged: the next beat tries again)."""
        try:
            doc = {"_id": self.key, "run_id": self.run_id, "worker": self.worker, "at": now()}
            get_db()[HEARTBEATS].replace_one({"_id": self.key}, doc, upsert=True)
        except PyMongoError as e:
            log.warning("heartbeat of job %s not written: %s", self.key, type(e).__name__)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.beat()

    def __enter__(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(self.every_s + 5)
        # A stale heartbeat of a finished job is ignored by recovery: failing to delete it is harmless.
        with contextlib.suppress(PyMongoError):
            get_db()[HEARTBEATS].delete_one({"_id": self.key, "run_id": self.run_id})
