"""A large upload streams through the web into GridFS without growing the web process (real gunicorn)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid

import psutil
import pytest

from shared import jobs
from shared.db import UPLOADS, get_db
from tests.net import Gunicorn
from tests.web.conftest import PASSWORD, unique
from web import users

MIB = 1024 * 1024
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


def multipart(size: int, boundary: str):
    """A multipart body carrying one `size`-byte MP4-looking file, generated a MiB at a time."""
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.mp4\"\r\n"
            "Content-Type: video/mp4\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    block = os.urandom(MIB)

    def body():
        yield head
        yield MP4_HEAD + block[len(MP4_HEAD):]
        sent = MIB
        while sent < size:
            n = min(MIB, size - sent)
            yield block[:n]
            sent += n
        yield tail
    return body(), len(head) + size + len(tail)


class PeakRss(threading.Thread):
    """Samples a process's resident memory every 20 ms; .peak in bytes."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.proc, self.peak, self.running = psutil.Process(pid), 0, True

    def run(self):
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)


@pytest.fixture
def server(settings):
    s = Gunicorn(workers=1, threads=2, upload_mb=1024)  # one process: its memory is measured
    yield s
    s.stop()


def measure_upload(server: Gunicorn, size: int) -> dict:
    """Upload `size` bytes through the API; the web worker's RSS before and at its peak (bytes)."""
    user = users.create(unique("big"), PASSWORD)
    token, _ = users.create_token(user.id, "rss")
    auth = {"Authorization": f"Bearer {token}"}
    warm = server.request("GET", "/api/v1/me", headers=auth)  # warm up every import
    assert warm.status == 200, warm.body[:500]
    pid = server.worker_pid()
    base = psutil.Process(pid).memory_info().rss
    sampler = PeakRss(pid)
    sampler.start()
    boundary = uuid.uuid4().hex
    body, length = multipart(size, boundary)
    started = time.monotonic()
    resp = server.request("POST", "/api/v1/clips", body=body, headers={
        **auth, "Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(length)})
    seconds = time.monotonic() - started
    sampler.running = False
    sampler.join()
    assert resp.status == 201, resp.body[:500]
    clip = json.loads(resp.body)["clips"][0]
    return {"clip": clip, "base": base, "peak": sampler.peak, "seconds": seconds}


def test_a_256_mb_upload_keeps_the_web_process_small(server, mongo):
    size = 256 * MIB
    m = measure_upload(server, size)
    job = jobs.get(m["clip"]["id"])
    try:
        assert job["size"] == size
        assert get_db()[f"{UPLOADS}.files"].find_one({"_id": job["input_id"]})["length"] == size
        growth = (m["peak"] - m["base"]) / MIB
        print(f"upload {size // MIB} MiB in {m['seconds']:.1f} s: web RSS {m['base'] / MIB:.0f} MiB before, "
              f"{m['peak'] / MIB:.0f} MiB peak (+{growth:.1f} MiB)")
        assert growth < 32, f"the web process grew by {growth:.0f} MiB while streaming {size // MIB} MiB"
    finally:
        while jobs.get(job["_id"])["status"] == "running":  # a session worker may be rejecting it
            time.sleep(0.5)
        jobs.delete(job["_id"])


def test_over_the_limit_the_server_answers_413_before_reading(settings, mongo):
    s = Gunicorn(workers=1, threads=2, upload_mb=1)
    try:
        user = users.create(unique("big"), PASSWORD)
        token, _ = users.create_token(user.id, "rss")
        before = get_db()[f"{UPLOADS}.chunks"].count_documents({})
        body, length = multipart(64 * MIB, "b0undary")
        head = (f"POST /api/v1/clips HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: multipart/form-data; boundary=b0undary\r\nContent-Length: {length}\r\n\r\n")
        with socket.create_connection(("127.0.0.1", s.port), timeout=30) as sock:
            sock.sendall(head.encode() + next(body))  # the headers and a first bit, not the 64 MiB
            reply = b""
            while b"\r\n\r\n" not in reply or b'"}' not in reply:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 413 "), reply[:200]
        assert b'"error":"too_large"' in reply and b"uploads are limited to 1.0 MB" in reply
        assert get_db()[f"{UPLOADS}.chunks"].count_documents({}) == before
    finally:
        s.stop()
