"""Fixtures that reach the real services started by bin/test (Redis and FerretDB on loopback).

Each test session gets its own database and Redis database number, so a developer's running product
(and its worker) never sees test jobs. Nothing here starts a server: bin/services does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "artifacts"
RUN_TAG = uuid.uuid4().hex[:8]


def _isolate_environment() -> None:
    """Point MONGO_URI at a fresh database and REDIS_URL at a database 1-15, before any import reads them.

    A random Redis database keeps concurrent test sessions (and a dev instance on 0) from taking
    each other's jobs.
    """
    mongo, redis_url = os.environ.get("MONGO_URI"), os.environ.get("REDIS_URL")
    if not mongo or not redis_url:
        pytest.exit("MONGO_URI and REDIS_URL are not set: run the tests with bin/test", returncode=2)
    parts = urlsplit(mongo)
    os.environ["MONGO_URI"] = urlunsplit(parts._replace(path=f"/maskwatch_test_{RUN_TAG}"))
    r = urlsplit(redis_url)
    os.environ["REDIS_URL"] = urlunsplit(r._replace(path=f"/{_claim_redis_db(redis_url)}"))
    os.environ.setdefault("CONNECT_TIMEOUT_S", "3")


def _claim_redis_db(redis_url: str) -> int:
    """A Redis database number 1-15 that no other live test session holds (a key with a lease in it).

    Two sessions on one database take each other's jobs (each worker then finds no such job in its
    own MongoDB database and drops the message), so a number is claimed, not drawn.
    """
    import redis

    start = int(RUN_TAG, 16) % 15
    for i in range(15):
        n = 1 + (start + i) % 15
        r = redis.Redis.from_url(redis_url, db=n)
        try:
            if r.set(SESSION_KEY, RUN_TAG, nx=True, ex=4 * 3600):
                return n
        except redis.RedisError:
            break  # Redis down: the fixtures report it
    return 1 + start


SESSION_KEY = "maskwatch:test-session"

_isolate_environment()

from shared import db  # noqa: E402
from shared.config import Settings, set_settings  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def settings():
    """Settings of the test session; the test database is dropped at the end."""
    import redis

    s = Settings.from_env()
    set_settings(s)
    db.reset()
    r = redis.Redis.from_url(s.redis_url)
    # One transaction: between a flush and a new claim another session starting could take this number.
    r.pipeline(transaction=True).flushdb().set(SESSION_KEY, RUN_TAG, ex=4 * 3600).execute()
    yield s
    if r.get(SESSION_KEY) == RUN_TAG.encode():
        r.delete(SESSION_KEY)
    db.drop_database(db.get_db().name)
    db.reset()


@pytest.fixture
def mongo(settings):
    """The test database."""
    return db.get_db()


class WorkerProcess:
    """A real Celery worker process consuming the test queues."""

    def __init__(self, log_path: Path, env: dict | None = None, name: str = "test",
                 queues: str = "video,default", args: tuple[str, ...] = ()):
        self.log_path = log_path
        self.env = env or {}  # overrides of this process's environment (another stack's services...)
        self.name = name
        self.queues, self.args = queues, args  # e.g. "maintenance", ("-B", "-s", <schedule file>)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120) -> None:
        """Start the worker and wait until it says it is ready."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = self._spawn(log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited at start; see {self.log_path}")
            if b" ready." in self.log_path.read_bytes():
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker not ready after {timeout}s; see {self.log_path}")

    def _spawn(self, log) -> subprocess.Popen:
        """The worker process, its output appended to log."""
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.tasks", "worker", "-Q", self.queues, *self.args,
             "-c", "1", "--without-gossip", "--without-mingle", "--without-heartbeat",
             "-n", f"{self.name}-{RUN_TAG}-{time.monotonic_ns()}@%h", "--loglevel", "INFO"],
            cwd=ROOT, env={**os.environ, **self.env}, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def children(self) -> list[int]:
        """Pids of the pool processes (where tasks run)."""
        import psutil

        return [c.pid for c in psutil.Process(self.proc.pid).children(recursive=True)]

    def kill(self) -> None:
        """SIGKILL the whole worker (parent and pool): a machine that dies."""
        os.killpg(self.proc.pid, 9)
        self.proc.wait(30)

    def stop(self) -> None:
        """Warm shutdown, then kill if it hangs."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


@pytest.fixture(scope="session")
def worker(settings):
    """One real worker process for the session (models load once, on its first job)."""
    w = WorkerProcess(ARTIFACTS / "logs" / f"worker-{RUN_TAG}.log")
    w.start()
    yield w
    w.stop()


def wait_for_job(job_id, timeout: float = 300, until=("succeeded", "failed", "cancelled")) -> dict:
    """Poll MongoDB until the job reaches one of the states; the job document."""
    from shared import jobs

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = jobs.get(job_id)
        if job["status"] in until:
            return job
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} still {jobs.get(job_id)['status']} after {timeout}s")


@pytest.fixture
def asset():
    """Path of a cached asset by manifest name."""
    from shared.assets import asset_path

    return asset_path
