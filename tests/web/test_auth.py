"""Accounts: register, log in and out, CSRF, cookies, expired sessions, admins from the command line."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta

from shared.db import get_db
from tests.conftest import ROOT
from tests.web.conftest import PASSWORD, csrf_of, login, new_app, unique
from web import users


def register(client, username, password=PASSWORD, confirm=None, **kw):
    return client.post("/register", data={"username": username, "password": password,
                                          "confirm": password if confirm is None else confirm,
                                          "csrf_token": csrf_of(client)}, **kw)


def test_register_signs_in_and_stores_only_a_password_hash(client, mongo):
    name = unique("Carol")
    resp = register(client, name)
    assert resp.status_code == 303 and resp.headers["Location"] == "/"
    page = client.get("/").get_data(as_text=True)
    assert name.lower() in page and "Log out" in page
    doc = mongo.users.find_one({"username": name.lower()})
    assert doc["password_hash"] != PASSWORD and PASSWORD not in str(doc)
    assert doc["password_hash"].startswith(("scrypt:", "pbkdf2:"))
    assert doc["is_admin"] is False


def test_register_refuses_taken_names_weak_passwords_and_typos(client, alice):
    taken = register(client, alice.username.upper())
    assert taken.status_code == 400 and "is taken" in taken.get_data(as_text=True)
    weak = register(client, unique(), password="short")
    assert weak.status_code == 400 and "at least 8" in weak.get_data(as_text=True)
    typo = register(client, unique(), confirm="something else")
    assert typo.status_code == 400 and "The passwords differ." in typo.get_data(as_text=True)
    bad = register(client, "a b<script>")
    assert bad.status_code == 400 and "Usernames have 3 to 32" in bad.get_data(as_text=True)
    assert "a b<script>" not in bad.get_data(as_text=True)


def test_login_wrong_password_and_unknown_user_look_the_same(client, alice):
    wrong = login(client, alice.username, "not the password")
    unknown = login(client, unique("nobody"), "not the password")
    for resp in (wrong, unknown):
        assert resp.status_code == 400
        assert "Unknown username or wrong password." in resp.get_data(as_text=True)
    assert client.get("/").status_code == 302  # still signed out


def test_login_redirects_to_next_but_never_off_site(client, alice):
    resp = login(client, alice.username, query_string={"next": "/settings"})
    assert resp.headers["Location"] == "/settings"
    client.post("/logout", data={"csrf_token": csrf_of(client)})
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        resp = login(client, alice.username, query_string={"next": evil})
        assert resp.headers["Location"] == "/", evil
        client.post("/logout", data={"csrf_token": csrf_of(client)})


def test_pages_need_login_and_say_so(client):
    for path in ("/", "/settings", "/model", f"/clips/{'a' * 24}"):
        resp = client.get(path)
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/login?next="), path
    page = client.get("/", follow_redirects=True).get_data(as_text=True)
    assert "Please log in to continue." in page


def test_logout_is_a_csrf_protected_post(signed_in, alice):
    c = signed_in(alice)
    assert c.get("/logout").status_code == 405
    refused = c.post("/logout", data={})
    assert refused.status_code == 400 and "CSRF" in refused.get_data(as_text=True)
    assert c.get("/").status_code == 200  # still signed in
    assert c.post("/logout", data={"csrf_token": c.csrf}).status_code == 303
    assert c.get("/").status_code == 302


def test_forms_without_csrf_token_are_refused(client, alice):
    resp = client.post("/login", data={"username": alice.username, "password": PASSWORD})
    assert resp.status_code == 400
    assert "The CSRF token is missing." in resp.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_session_cookie_is_httponly_samesite_and_secure_over_https(app, alice):
    c = app.test_client()
    resp = login(c, alice.username)
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    assert "Expires=" in cookie  # a permanent session: it ends after PERMANENT_SESSION_LIFETIME
    https = app.test_client()
    html = https.get("/login", base_url="https://localhost").get_data(as_text=True)
    token = html.split('name="csrf-token" content="')[1].split('"')[0]
    resp = https.post("/login", base_url="https://localhost", headers={"Referer": "https://localhost/login"},
                      data={"username": alice.username, "password": PASSWORD, "csrf_token": token})
    assert resp.status_code == 303 and "Secure" in resp.headers["Set-Cookie"]


def test_secure_cookie_can_be_forced_by_config(settings, alice):
    app = new_app(settings, SESSION_COOKIE_SECURE=True)
    resp = login(app.test_client(), alice.username)
    assert "Secure" in resp.headers["Set-Cookie"]


def test_an_expired_session_asks_to_log_in_again(settings, alice):
    app = new_app(settings, PERMANENT_SESSION_LIFETIME=timedelta(seconds=1))
    c = app.test_client()
    assert login(c, alice.username).status_code == 303
    assert c.get("/").status_code == 200
    time.sleep(2.1)
    page = c.get("/", follow_redirects=True).get_data(as_text=True)
    assert "Your session has expired; please log in again." in page
    login(c, alice.username)
    time.sleep(2.1)
    api = c.get("/api/v1/clips")
    assert api.status_code == 401 and api.get_json()["error"] == "session_expired"


def test_secret_key_comes_from_settings(settings):
    app = new_app(settings.replace(secret_key="s3cret-from-env"))
    assert app.secret_key == "s3cret-from-env"
    other = new_app(settings.replace(secret_key=""))
    third = new_app(settings.replace(secret_key=""))
    assert len(other.secret_key) >= 32 and other.secret_key != third.secret_key


def test_create_admin_with_the_flask_cli(app, mongo):
    name = unique("root")
    out = app.test_cli_runner().invoke(args=["create-admin", name, "--password-stdin"], input=PASSWORD + "\n")
    assert out.exit_code == 0, out.output
    assert f"created admin {name}" in out.output
    assert users.authenticate(name, PASSWORD).is_admin
    promoted = users.create(unique("dave"), PASSWORD)
    out = app.test_cli_runner().invoke(args=["create-admin", promoted.username, "--password-stdin"],
                                       input="\n")
    assert out.exit_code == 0 and "made admin" in out.output
    assert users.authenticate(promoted.username, PASSWORD).is_admin  # password unchanged
    weak = app.test_cli_runner().invoke(args=["create-admin", unique(), "--password-stdin"], input="short\n")
    assert weak.exit_code == 1 and "at least 8" in weak.output


def test_create_admin_with_python_m(settings, mongo):
    name = unique("ops")
    proc = subprocess.run([sys.executable, "-m", "web.admin", "create", name, "--password-stdin"],
                          input=PASSWORD + "\n", capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"created admin {name}" in proc.stdout
    assert get_db().users.find_one({"username": name})["is_admin"] is True
