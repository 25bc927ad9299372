"""The fault suite's own stack: private Redis and FerretDB (restartable), real worker and web processes.

Restarting a service must not disturb the rest of the test session (or another developer's tests on
this machine), so every test here runs against servers of its own, started by bin/services in a
private run folder, and talks to them only as the product does: real processes, real sockets.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from shared import db
from shared.celery_app import PROCESS_JOB, make_celery
from shared.config import Settings, get_settings, set_settings
from tests.conftest import ARTIFACTS, ROOT, WorkerProcess
from tests.net import free_port

RECOVERY: dict[str, float] = {}  # fault -> seconds until the product had recovered (printed at the end)


def pytest_terminal_summary(terminalreporter):
    """Print the measured times to recover, one line per fault."""
    if RECOVERY:
        terminalreporter.section("fault suite: time to recover")
        for fault, seconds in RECOVERY.items():
            terminalreporter.write_line(f"{seconds:7.1f} s  {fault}")


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
            db.drop_database(db.get_db().name)
        s.close()
        set_settings(settings)
        db.reset()
