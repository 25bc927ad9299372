"""HTTP Range on every media route over a real connection: 206 lengths, HEAD, multi-range, empty files."""

from __future__ import annotations

import http.client
import io
import re
import uuid
from urllib.parse import urlencode

import pytest

from shared import jobs, storage
from shared.db import UPLOADS
from tests.web.conftest import PASSWORD, new_app, served
from web import users

CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


class Http:
    """Requests to a live server on loopback, with alice's session cookie or her API token."""

    def __init__(self, port: int):
        self.port = port
        self.cookie = ""

    def request(self, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
        """(response, body bytes) of one request on a fresh connection."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            hdrs = {"Cookie": self.cookie} if self.cookie else {}
            conn.request(method, path, body=body, headers={**hdrs, **(headers or {})})
            resp = conn.getresponse()
            return resp, resp.read()
        finally:
            conn.close()

    def log_in(self, username: str) -> None:
        """Sign in through the login form, as a browser does."""
        resp, page = self.request("GET", "/login")
        self.cookie = resp.getheader("Set-Cookie").split(";")[0]
        token = CSRF.search(page.decode()).group(1)
        form = urlencode({"username": username, "password": PASSWORD, "csrf_token": token}).encode()
        resp, _ = self.request("POST", "/login", {"Content-Type": "application/x-www-form-urlencoded"}, form)
        assert resp.status == 303
        self.cookie = resp.getheader("Set-Cookie").split(";")[0]


@pytest.fixture
def server(settings):
    """The app on a free loopback port, in a thread."""
    with served(new_app(settings.replace(secret_key=uuid.uuid4().hex))) as port:
        yield port


@pytest.fixture
def page_client(server, alice):
    """alice signed in over HTTP."""
    c = Http(server)
    c.log_in(alice.username)
    return c


@pytest.fixture
def api_client(server, alice):
    """Requests with alice's API token."""
    token, _ = users.create_token(alice.id, "ranges")
    c = Http(server)
    c.token = {"Authorization": f"Bearer {token}"}
    return c


def media_routes(clip: dict) -> tuple[list[str], list[str]]:
    """(page routes, API routes) that serve a stored file of the clip."""
    jid, crop = clip["_id"], clip["result"]["persons"][0]["crop_id"]
    pages = [f"/clips/{jid}/video", f"/clips/{jid}/poster", f"/clips/{jid}/original",
             f"/clips/{jid}/files/{crop}", f"/clips/{jid}/download/annotated",
             f"/clips/{jid}/download/original"]
    api = [f"/api/v1/clips/{jid}/download/annotated", f"/api/v1/clips/{jid}/download/original",
           f"/api/v1/clips/{jid}/files/{crop}"]
    return pages, api


def check_ranges(client: Http, path: str, auth: dict) -> None:
    """Whole file, a middle range, a suffix, HEAD (with and without Range), multi-range, beyond the end."""
    whole, body = client.request("GET", path, auth)
    size = len(body)
    assert whole.status == 200 and int(whole.getheader("Content-Length")) == size > 20, path
    assert whole.getheader("Accept-Ranges") == "bytes", path
    part, data = client.request("GET", path, {**auth, "Range": "bytes=5-14"})
    assert part.status == 206 and data == body[5:15], path
    assert int(part.getheader("Content-Length")) == 10, path
    assert part.getheader("Content-Range") == f"bytes 5-14/{size}", path
    tail, data = client.request("GET", path, {**auth, "Range": "bytes=-7"})
    assert tail.status == 206 and data == body[-7:] and int(tail.getheader("Content-Length")) == 7, path
    head, data = client.request("HEAD", path, auth)
    assert head.status == 200 and data == b"" and int(head.getheader("Content-Length")) == size, path
    head_part, data = client.request("HEAD", path, {**auth, "Range": "bytes=0-3"})
    assert head_part.status == 206 and data == b"" and int(head_part.getheader("Content-Length")) == 4, path
    # Several ranges at once are ignored (RFC 9110 allows it): the whole file, never a wrong part.
    multi, data = client.request("GET", path, {**auth, "Range": "bytes=0-1,5-6"})
    assert multi.status == 200 and data == body, path
    beyond, data = client.request("GET", path, {**auth, "Range": f"bytes={size}-"})
    assert beyond.status == 416 and beyond.getheader("Content-Range") == f"bytes */{size}", path


def test_every_page_media_route_serves_ranges(page_client, video):
    pages, _ = media_routes(video)
    for path in pages:
        check_ranges(page_client, path, {})


def test_every_api_media_route_serves_ranges(api_client, video):
    _, api = media_routes(video)
    for path in api:
        check_ranges(api_client, path, api_client.token)


def test_an_empty_original_is_an_empty_200_and_any_range_is_416(page_client, api_client, alice):
    fid = storage.put(UPLOADS, io.BytesIO(b""), "empty.mp4", content_type="video/mp4")
    job = jobs.create(owner=alice.id, filename="empty.mp4", kind="video", input_id=fid, size=0,
                      content_type="video/mp4")
    api_path = f"/api/v1/clips/{job['_id']}/download/original"
    for client, path, auth in ((page_client, f"/clips/{job['_id']}/original", {}),
                               (api_client, api_path, api_client.token)):
        whole, body = client.request("GET", path, auth)
        assert whole.status == 200 and body == b"" and whole.getheader("Content-Length") == "0", path
        head, body = client.request("HEAD", path, auth)
        assert head.status == 200 and body == b"" and head.getheader("Content-Length") == "0", path
        for rng in ("bytes=0-", "bytes=-5", "bytes=0-0"):
            part, _ = client.request("GET", path, {**auth, "Range": rng})
            assert part.status == 416 and part.getheader("Content-Range") == "bytes */0", (path, rng)
