"""Uploads are all or nothing: a raw body cut short, or not matching its checksum, stores nothing."""

from __future__ import annotations

import hashlib
import socket

import pytest

from shared.db import UPLOADS, get_db
from tests.media import make_clip
from tests.web.conftest import new_app, served
from web import users


@pytest.fixture
def server(settings):
    """The app on a free loopback port in a thread: a real socket, so a client can stop mid-body."""
    with served(new_app(settings)) as port:
        yield port


def raw_upload(port: int, token: str, body: bytes, *, declared: int, headers: dict | None = None) -> str:
    """POST a raw body declaring `declared` bytes, send `body`, stop sending; the reply's status line."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (f"POST /api/v1/clips?filename=cut.mp4 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {declared}\r\n{extra}Connection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(head + body)
        s.shutdown(socket.SHUT_WR)  # the client stops here: its connection drops mid-upload
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    return reply.split(b"\r\n", 1)[0].decode()


def stored(owner: str) -> int:
    return get_db()[f"{UPLOADS}.files"].count_documents({"metadata.owner": owner})


def test_a_cut_raw_upload_and_a_wrong_checksum_store_nothing(server, alice, tmp_path):
    token, _ = users.create_token(alice.id, "integrity")
    clip = make_clip(tmp_path / "c.mp4", frames=60).read_bytes()
    before = stored(alice.id)
    jobs_before = get_db().jobs.count_documents({"owner": alice.id})
    for sent in (0, 1000, len(clip) // 2, len(clip) - 1):
        status = raw_upload(server, token, clip[:sent], declared=len(clip))
        assert " 400 " in status, (sent, status)
    bad = raw_upload(server, token, clip, declared=len(clip), headers={"X-Content-SHA256": "0" * 64})
    assert " 400 " in bad
    assert stored(alice.id) == before and get_db().jobs.count_documents({"owner": alice.id}) == jobs_before
    # The whole file, with its right checksum, is stored.
    good = raw_upload(server, token, clip, declared=len(clip),
                      headers={"X-Content-SHA256": hashlib.sha256(clip).hexdigest()})
    assert " 201 " in good
    assert stored(alice.id) == before + 1
