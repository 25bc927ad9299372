"""Uploads under attack and under load, through the production web server (gunicorn, as bin/run runs it).

Aborted at several points (multipart and raw, page and API): nothing stored. Twenty at once: every
original reads back byte for byte. A corpus of bad files through both upload paths: each refused with
its status and sentence, or stored and failed with the worker's sentence; the worker stays up, and a
delete leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import requests

from shared.db import UPLOADS, get_db
from tests.conftest import ARTIFACTS, wait_for_job
from tests.faults.conftest import RECOVERY
from tests.faults.corpus import corpus
from tests.net import Gunicorn
from tests.worker.helpers import assert_one_set_of_everything, leftovers, stored_file_ids
from web import users

pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery"
UPLOAD_MAX_MB = 12
JSON = "application/json"
CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@pytest.fixture(scope="module")
def web(settings):
    """gunicorn with bin/run's flags on the test services; its base URL."""
    server = Gunicorn(upload_mb=UPLOAD_MAX_MB, log=ARTIFACTS / "logs" / "faults-web.log")
    yield server.base
    server.stop()


@dataclass
class Uploader:
    """A user of the fault tests and their API token."""

    id: str
    username: str
    token: str


@pytest.fixture(scope="module")
def user(settings):
    u = users.create(f"faults{uuid.uuid4().hex[:8]}", PASSWORD)
    return Uploader(u.id, u.username, users.create_token(u.id, "faults")[0])


class Page:
    """A signed-in browser session on the web pages (cookies + the page's CSRF token)."""

    def __init__(self, base: str, user):
        self.base, self.s = base, requests.Session()
        self.csrf = self._token()
        r = self.s.post(f"{base}/login", data={"username": user.username, "password": PASSWORD,
                                                "csrf_token": self.csrf}, allow_redirects=False)
        assert r.status_code == 303, r.text
        self.csrf = self._token()

    def _token(self) -> str:
        return CSRF.search(self.s.get(f"{self.base}/login").text).group(1)

    def upload(self, filename: str, data: bytes) -> requests.Response:
        return self.s.post(f"{self.base}/upload", data={"csrf_token": self.csrf},
                           files={"file": (filename, data)}, headers={"Accept": "application/json"},
                           allow_redirects=False)


def api_upload(base: str, user, filename: str, data: bytes, *, raw: bool = False) -> requests.Response:
    auth = {"Authorization": f"Bearer {user.token}"}
    if raw:
        return requests.post(f"{base}/api/v1/clips", params={"filename": filename}, data=data,
                             headers={**auth, "Content-Type": "application/octet-stream",
                                      "X-Content-SHA256": hashlib.sha256(data).hexdigest()})
    return requests.post(f"{base}/api/v1/clips", files={"file": (filename, data)}, headers=auth)


def uploads_stored() -> tuple[int, int]:
    """(files, chunks) in the uploads bucket: an aborted upload must add neither."""
    d = get_db()
    return d[f"{UPLOADS}.files"].count_documents({}), d[f"{UPLOADS}.chunks"].count_documents({})


def noise_clip(path: Path, frames: int, seed: int) -> Path:
    """An MJPEG AVI of random noise: megabytes that compress to nothing else (each upload unique)."""
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w", format="avi") as c:
        s = c.add_stream("mjpeg", rate=Fraction(25))
        s.width, s.height, s.pix_fmt = 320, 240, "yuvj420p"
        for _ in range(frames):
            f = av.VideoFrame.from_ndarray(rng.integers(0, 256, (240, 320, 3), np.uint8), format="rgb24")
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def multipart(fields: dict, filename: str, data: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body (fields first, then the file) and its Content-Type."""
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
             for k, v in fields.items()]
    parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                 f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def send_cut(base: str, path: str, headers: dict, body: bytes, sent: int, *, reset: bool) -> str:
    """Send the request declaring the whole body, stop after `sent` bytes; the status line (or 'reset')."""
    host, port = base.removeprefix("http://").split(":")
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    s = socket.create_connection((host, int(port)), timeout=60)
    try:
        s.sendall(head.encode() + body[:sent])
        if reset:  # the client vanishes (RST): nobody reads an answer
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
            return "reset"
        s.shutdown(socket.SHUT_WR)  # the client stops sending and waits for the answer
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
        return reply.split(b"\r\n", 1)[0].decode()
    finally:
        s.close()


def test_an_upload_aborted_anywhere_stores_nothing(web, user, tmp_path):
    data = noise_clip(tmp_path / "abort.avi", 40, seed=7).read_bytes()
    page = Page(web, user)
    cookie = "; ".join(f"{c.name}={c.value}" for c in page.s.cookies)
    form, form_type = multipart({"csrf_token": page.csrf}, "abort.avi", data)
    api_form, api_type = multipart({}, "abort.avi", data)
    sha = hashlib.sha256(data).hexdigest()
    ways = {
        "page multipart": ("/upload", {"Cookie": cookie, "Content-Type": form_type}, form),
        "page raw": ("/upload?filename=abort.avi", {"Cookie": cookie, "X-CSRFToken": page.csrf,
                                                   "Content-Type": "application/octet-stream",
                                                   "X-Content-SHA256": sha}, data),
        "API multipart": ("/api/v1/clips", {"Authorization": f"Bearer {user.token}",
                                            "Content-Type": api_type}, api_form),
        "API raw": ("/api/v1/clips?filename=abort.avi", {"Authorization": f"Bearer {user.token}",
                                                         "Content-Type": "application/octet-stream"}, data),
    }
    before = uploads_stored()
    jobs_before = get_db().jobs.count_documents({"owner": user.id})
    for way, (path, headers, body) in ways.items():
        # Before the body, inside the first part's headers, early in the file, half way, the file's
        # last byte missing, and (multipart) the whole file but not the boundary that ends it.
        end = body.rindex(data) + len(data)
        cuts = [0, 60, 5000, len(body) // 2, end - 1]
        if end < len(body):
            cuts += [end + 2, body.rindex(b"--") + 1]
        for sent in cuts:
            for reset in (False, True):
                status = send_cut(web, path, {**headers, "Accept": JSON}, body, sent, reset=reset)
                assert status == "reset" or " 400 " in status, (way, sent, reset, status)
    # A reset connection is noticed by the server on its next read: wait until it has given up on all.
    deadline = time.monotonic() + 60
    while uploads_stored() != before and time.monotonic() < deadline:
        time.sleep(0.5)
    assert uploads_stored() == before, "an aborted upload left a file or chunks behind"
    assert get_db().jobs.count_documents({"owner": user.id}) == jobs_before
    assert requests.get(f"{web}/healthz", timeout=5).ok
    # The same bodies sent whole are stored (so the cuts above, not the requests, were refused).
    for way, (path, headers, body) in ways.items():
        status = send_cut(web, path, {**headers, "Accept": JSON}, body, len(body), reset=False)
        assert " 201 " in status, (way, status)
    assert get_db().jobs.count_documents({"owner": user.id}) == jobs_before + len(ways)


def test_twenty_concurrent_uploads_all_read_back_byte_for_byte(web, user, worker, tmp_path):
    files = [noise_clip(tmp_path / f"c{i:02d}.avi", 60, seed=i).read_bytes() for i in range(20)]
    page = Page(web, user)

    def upload(i: int) -> dict:
        r = (page.upload(f"c{i:02d}.avi", files[i]) if i % 2 else
             api_upload(web, user, f"c{i:02d}.avi", files[i], raw=i % 4 == 0))
        assert r.status_code in (201, 303), (i, r.status_code, r.text[:300])
        return r.json()["clips"][0] if r.status_code == 201 else None

    started = time.monotonic()
    with ThreadPoolExecutor(20) as pool:
        outcomes = list(pool.map(upload, range(20)))
    took = time.monotonic() - started
    found = get_db().jobs.find({"owner": user.id, "filename": {"$regex": r"^c\d\d\.avi$"}})
    mine = {j["filename"]: j for j in found}
    assert sorted(mine) == [f"c{i:02d}.avi" for i in range(20)]
    assert all(o is None or o["filename"] in mine for o in outcomes)
    auth = {"Authorization": f"Bearer {user.token}"}
    for i, data in enumerate(files):
        job = mine[f"c{i:02d}.avi"]
        back = requests.get(f"{web}/api/v1/clips/{job['_id']}/download/original", headers=auth)
        assert back.status_code == 200
        assert hashlib.sha256(back.content).hexdigest() == hashlib.sha256(data).hexdigest(), f"c{i:02d}"
    RECOVERY[f"20 concurrent uploads of {sum(map(len, files)) / 2**20:.0f} MB stored"] = took
    for job in mine.values():
        done = wait_for_job(job["_id"], timeout=300)
        assert_one_set_of_everything(done, 60)
        ids = stored_file_ids(done)
        assert requests.delete(f"{web}/api/v1/clips/{job['_id']}", headers=auth).status_code == 204
        assert leftovers(done, ids) == {}


def test_bad_files_through_both_upload_paths_get_their_sentence_and_leave_nothing(web, user, worker,
                                                                                  tmp_path):
    cases = corpus(tmp_path)
    page = Page(web, user)
    auth = {"Authorization": f"Bearer {user.token}"}
    before = uploads_stored()
    failed = []
    for bad in cases:
        for way, r in (("page", page.upload(bad.filename, bad.data)),
                       ("API", api_upload(web, user, bad.filename, bad.data))):
            body = r.json()
            if bad.status is not None:  # refused at upload
                assert r.status_code == bad.status, (bad.case, way, r.status_code, body)
                assert bad.says in body["message"], (bad.case, way, body)
                continue
            assert r.status_code == 201, (bad.case, way, r.status_code, body)
            failed.append((bad, way, body["clips"][0]["id"]))
    # An oversized upload is refused with 413 on both paths, and stores nothing either.
    head = noise_clip(tmp_path / "big.avi", 2, seed=5).read_bytes()  # looks like a video to the sniffer
    big = head + os.urandom(UPLOAD_MAX_MB * 2**20 + 1 - len(head))
    for way, r in (("page", page.upload("big.avi", big)), ("API", api_upload(web, user, "big.avi", big))):
        assert r.status_code == 413, (way, r.status_code)
    wrong = []
    for bad, way, job_id in failed:
        done = wait_for_job(job_id, timeout=180)
        if done["status"] != "failed" or bad.says not in done["error"] or "internal error" in done["error"]:
            wrong.append((bad.case, way, done["status"], done["error"]))
        assert done["retryable"] is False and done["result"] is None, bad.case
        ids = stored_file_ids(done)
        assert requests.delete(f"{web}/api/v1/clips/{job_id}", headers=auth).status_code == 204
        assert leftovers(done, ids) == {}, (bad.case, way)
    assert wrong == [], "\n".join(map(str, wrong))
    assert uploads_stored() == before  # nothing of the refused ones, nothing left of the deleted ones
    assert worker.proc.poll() is None
    good = noise_clip(tmp_path / "after.avi", 20, seed=99).read_bytes()
    after = wait_for_job(api_upload(web, user, "after.avi", good).json()["clips"][0]["id"], timeout=180)
    assert_one_set_of_everything(after, 20)  # the worker that saw all of it still works
    assert len(cases) >= 30
