"""bin/services: a service that stopped comes back on its port, and Redis keeps what was queued."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time

import redis

from tests.conftest import ROOT
from tests.net import free_port


def services(run_dir, *args: str, **env: str) -> subprocess.CompletedProcess:
    e = {**os.environ, "MASKWATCH_RUN_DIR": str(run_dir), **env}
    return subprocess.run([str(ROOT / "bin" / "services"), *args], env=e, capture_output=True, text=True,
                          timeout=120, check=False)


def state(run_dir) -> dict:
    return json.loads((run_dir / "services.json").read_text())


def wait_for(check, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"still not {what} after {timeout}s"
        time.sleep(0.05)


def test_a_killed_redis_comes_back_on_its_port_with_its_queue(tmp_path):
    env = {"REDIS_PORT": str(free_port()), "MONGO_PORT": str(free_port())}
    try:
        started = services(tmp_path, "start", **env)
        assert started.returncode == 0, started.stderr
        first = state(tmp_path)
        r = redis.Redis.from_url(first["redis"]["url"])
        r.lpush("video", "job-1")  # what Celery's Redis transport keeps for a queued job
        aof = tmp_path / "redis"
        wait_for(lambda: any(b"job-1" in f.read_bytes() for f in aof.rglob("*.aof*") if f.is_file()),
                 "in the append-only file")
        os.kill(first["redis"]["pid"], signal.SIGKILL)
        wait_for(lambda: not _answers(first["redis"]["port"]), "down")
        # The other default port is taken meanwhile: the restart must still pick the old one.
        again = services(tmp_path, "start", **{**env, "REDIS_PORT": "1"})
        assert again.returncode == 0, again.stderr
        second = state(tmp_path)
        assert second["redis"]["port"] == first["redis"]["port"]
        assert second["mongo"] == first["mongo"]  # the live one is reused as it is
        assert redis.Redis.from_url(second["redis"]["url"]).lrange("video", 0, -1) == [b"job-1"]
        # After a full stop, the next start comes back on the same ports too.
        assert services(tmp_path, "stop").returncode == 0
        assert services(tmp_path, "start", **env).returncode == 0
        third = state(tmp_path)
        ports = (third["redis"]["port"], third["mongo"]["port"])
        assert ports == (first["redis"]["port"], first["mongo"]["port"])
    finally:
        services(tmp_path, "stop")


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
