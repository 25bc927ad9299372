"""Loopback helpers shared by the tests and the benchmarks (no import of tests.conftest: benches use it)."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A loopback port nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    """The web app served by gunicorn (gthread, as bin/run runs it) on the services the environment names."""

    def __init__(self, *, workers: int = 2, threads: int = 8, upload_mb: int | None = None,
                 log: Path | None = None, env: dict | None = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "SECRET_KEY": uuid.uuid4().hex, **(env or {})}
        if upload_mb is not None:
            env["UPLOAD_MAX_MB"] = str(upload_mb)
        out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child keeps its copy
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}", "--workers", str(workers),
             "--worker-class", "gthread", "--threads", str(threads), "--timeout", "300",
             "web.app:create_app()"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        if log:
            out.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if self.request("GET", "/healthz", timeout=5).status == 200:
                    return
            except OSError:
                pass  # bound, but its workers are still loading the app
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gunicorn did not start{f'; see {log}' if log else ''}")

    def request(self, method: str, path: str, body=None, headers=None, timeout: float = 300):
        """One request on its own connection; the response with .body read."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            resp.body = resp.read()
        finally:
            conn.close()
        return resp

    def worker_pid(self) -> int:
        """The pid of its (first) worker process."""
        return psutil.Process(self.proc.pid).children()[0].pid

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
