"""The fault suite's own stack: private Redis and FerretDB (restartable), real worker and web processes.

Restarting a service must not disturb the rest of the test session (or another developer's tests on
this machine), so every test here runs against servers of its own, started by bin/services in a
private run folder, and talks to them only as the product does: real processes, real sockets.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from shared import db, result_docs
from shared.celery_app import PROCESS_JOB, make_celery
from shared.config import Settings, get_settings, set_settings
from shared.db import RESULTS, UPLOADS, get_db
from tests.conftest import ARTIFACTS, ROOT, WorkerProcess

RECOVERY: dict[str, float] = {}  # fault -> seconds until the product had recovered (printed at the end)


def pytest_terminal_summary(terminalreporter):
    """Print the measured times to recover, one line per fault."""
    if RECOVERY:
        terminalreporter.section("fault suite: time to recover")
        for fault, seconds in RECOVERY.items():
            terminalreporter.write_line(f"{seconds:7.1f} s  {fault}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """Redis + FerretDB of one test module (bin/services in a private run folder), and what uses them."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.ports = {"REDIS_PORT": str(free_port()), "MONGO_PORT": str(free_port())}
        self.workers: list[WorkerProcess] = []
        self.procs: list[subprocess.Popen] = []

    def services(self, *args: str) -> None:
        env = {**os.environ, "MASKWATCH_RUN_DIR": str(self.run_dir), **self.ports}
        out = subprocess.run([str(ROOT / "bin" / "services"), *args], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr

    def state(self) -> dict:
        return json.loads((self.run_dir / "services.json").read_text())

    @property
    def env(self) -> dict:
        """The environment of a process of this stack (the product reads MONGO_URI and REDIS_URL)."""
        s = self.state()
        return {**os.environ, "MONGO_URI": s["mongo"]["url"].rsplit("/", 1)[0] + "/maskwatch_faults",
                "REDIS_URL": s["redis"]["url"], "STALLED_AFTER_S": "6"}

    def settings(self) -> Settings:
        e = self.env
        return get_settings().replace(mongo_uri=e["MONGO_URI"], redis_url=e["REDIS_URL"], stalled_after_s=6)

    def restart(self, service: str, *, pause_s: float = 2.0, lose_data: bool = False) -> float:
        """Stop one service, wait, start it again on its port; the monotonic time it answered again."""
        self.services("stop", service)
        if lose_data and service == "redis":  # a production Redis without persistence
            for f in (self.run_dir / "redis").rglob("*"):
                if f.is_file():
                    f.unlink()
        time.sleep(pause_s)
        self.services("start")
        return time.monotonic()

    def enqueue(self, job_id) -> None:
        """Send a job to this stack's broker, by name, as the web does."""
        app = make_celery(self.settings())
        try:
            app.send_task(PROCESS_JOB, args=[str(job_id)])
        finally:
            app.close()

    def worker(self) -> WorkerProcess:
        log = ARTIFACTS / "logs" / f"faults-worker-{len(self.workers)}.log"
        w = WorkerProcess(log, self.env, name="faults")
        w.start()
        self.workers.append(w)
        return w

    def spawn(self, *argv: str, log: str) -> subprocess.Popen:
        """A product process (recovery, web) on this stack, its output in artifacts/logs/LOG."""
        path = ARTIFACTS / "logs" / log
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            proc = subprocess.Popen(list(argv), cwd=ROOT, env=self.env, stdout=f, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for w in self.workers:
            w.stop()
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
        self.services("stop")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, settings):
    """Private services for this module; this process's database client points at them meanwhile."""
    s = Stack(tmp_path_factory.mktemp("faults-run"))
    s.services("start")
    set_settings(s.settings())
    db.reset()
    try:
        yield s
    finally:
        with contextlib.suppress(Exception):  # the servers may be what the test broke
            db.get_client().drop_database(db.get_db().name)
        s.close()
        set_settings(settings)
        db.reset()


def wait_for(predicate, timeout: float, what: str):
    """Poll until predicate() is truthy (its value), or fail saying what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 - a server being restarted answers with errors meanwhile
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not {what} after {timeout:.0f} s")


def finished(job_id):
    """The job once it is final, else None."""
    from shared import jobs

    job = jobs.get(job_id)
    return job if job["status"] in jobs.FINAL else None


def assert_one_set_of_everything(job: dict, frames: int) -> None:
    """A succeeded job has exactly one record per frame, one annotated output and one poster."""
    from tests.worker.helpers import frame_records, result_files

    assert job["status"] == "succeeded", job.get("error")
    numbers = [r["frame"] for r in frame_records(job)]
    assert numbers == list(range(frames)), "frame records missing or repeated"
    roles = sorted(f["metadata"]["role"] for f in result_files(job["_id"]))
    assert roles.count("annotated") == 1 and roles.count("poster") == 1, roles
    bucket_ids = [d["_id"] for d in get_db()[result_docs.FRAMES].find({"job_id": job["_id"]}, {"_id": 1})]
    assert len(bucket_ids) == job["result"]["layout"]["buckets"], "a bucket of another attempt was left"


def stored_file_ids(job: dict) -> list:
    """The job's `results` files as recorded and as found by metadata (take this before a delete)."""
    found = get_db()[f"{RESULTS}.files"].find({"metadata.job_id": job["_id"]}, {"_id": 1})
    by_meta = [f["_id"] for f in found]
    return sorted(set(result_docs.job_files(job)) | set(by_meta))


def leftovers(job: dict, file_ids: list = ()) -> dict[str, int]:
    """Everything still stored for a job, by where (empty once it is deleted)."""
    jid = str(job["_id"])
    d = get_db()
    found = {
        "jobs": d.jobs.count_documents({"_id": job["_id"]}),
        "upload": d[f"{UPLOADS}.files"].count_documents({"_id": job["input_id"]}),
        "upload chunks": d[f"{UPLOADS}.chunks"].count_documents({"files_id": job["input_id"]}),
        "result files": d[f"{RESULTS}.files"].count_documents({"metadata.job_id": job["_id"]}),
        "result chunks": d[f"{RESULTS}.chunks"].count_documents({"files_id": {"$in": list(file_ids)}}),
        "heartbeats": d.heartbeats.count_documents({"_id": jid}),
        result_docs.FILES: d[result_docs.FILES].count_documents({"_id": jid}),
    }
    for name in (result_docs.FRAMES, result_docs.ROWS, result_docs.PERSONS, result_docs.BINS,
                 result_docs.DETAILS):
        found[name] = d[name].count_documents({"job_id": job["_id"]})
    return {k: v for k, v in found.items() if v}


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
