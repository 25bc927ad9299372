"""Fixtures of the web tests: the app on the test database, users, signed-in clients, seeded clips."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from werkzeug.serving import make_server

from tests.web.seed import seed_clip
from web import users
from web.app import create_app

PASSWORD = "correct horse battery"
CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


def new_app(settings, **config):
    """A fresh app on the test settings (TESTING on, CSRF on as in production)."""
    return create_app(settings, config={"TESTING": True, **config})


@contextmanager
def served(app) -> Iterator[int]:
    """The app on a free loopback port in a thread (threaded: a player opens several connections)."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join(10)


@pytest.fixture
def app(settings):
    """The web app on the test database."""
    return new_app(settings)


@pytest.fixture
def client(app):
    """A client that is not signed in."""
    return app.test_client()


def csrf_of(client) -> str:
    """The CSRF token of the client's session (from any page's meta tag)."""
    html = client.get("/login").get_data(as_text=True)
    return CSRF.search(html).group(1)


def login(client, username: str, password: str = PASSWORD, **kw):
    """POST the login form with its CSRF token."""
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf_token": csrf_of(client)}, **kw)


def unique(prefix: str = "u") -> str:
    """A username no other test uses."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def alice(settings):
    """A user who owns the seeded clips."""
    return users.create(unique("alice"), PASSWORD)


@pytest.fixture(scope="module")
def bob(settings):
    """Another user: alice's clips must be invisible to him."""
    return users.create(unique("bob"), PASSWORD)


@pytest.fixture(scope="module")
def admin(settings):
    """An admin: sees every clip."""
    return users.create(unique("admin"), PASSWORD, is_admin=True)


def client_for(app, user):
    """A test client of app with that user's session; .csrf holds its token."""
    c = app.test_client()
    resp = login(c, user.username)
    assert resp.status_code == 303, resp.get_data(as_text=True)
    c.csrf = csrf_of(c)
    c.user = user
    return c


@pytest.fixture
def signed_in(app):
    """signed_in(user) -> a client with that user's session; .csrf holds its token."""
    return lambda user: client_for(app, user)


@pytest.fixture(scope="module")
def video(alice, tmp_path_factory):
    """alice's finished 10-second video: 250 frames, 8 people, files stored."""
    return seed_clip(alice.id, frames=250, fps=25.0, n_persons=8, seed=1,
                     media_dir=tmp_path_factory.mktemp("seed"))


@pytest.fixture(scope="module")
def image(alice):
    """alice's finished still image with 3 faces."""
    return seed_clip(alice.id, kind="image", n_persons=3, seed=2)
