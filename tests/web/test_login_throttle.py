"""Password guessing is slowed down: failed logins are counted per account and per address."""

from __future__ import annotations

from tests.web.conftest import PASSWORD, csrf_of, unique
from web import throttle, users


def attempt(app, username: str, password: str, address: str):
    """One login form post from a fresh browser at `address` (the WSGI REMOTE_ADDR)."""
    c = app.test_client()
    c.environ_base["REMOTE_ADDR"] = address
    return c.post("/login", data={"username": username, "password": password, "csrf_token": csrf_of(c)})


def test_an_account_is_locked_after_five_failures_whoever_tries(app):
    carol = users.create(unique("carol"), PASSWORD)
    for i in range(throttle.ACCOUNT_LIMIT):
        assert attempt(app, carol.username, "guess", f"192.0.2.{i}").status_code == 400
    locked = attempt(app, carol.username, PASSWORD, "192.0.2.99")  # even the right password, elsewhere
    assert locked.status_code == 429
    text = locked.get_data(as_text=True)
    assert "Too many failed logins" in text and "15 minutes" in text
    # Another account is not affected.
    dave = users.create(unique("dave"), PASSWORD)
    assert attempt(app, dave.username, PASSWORD, "192.0.2.99").status_code == 303


def test_one_address_guessing_many_accounts_is_stopped(app):
    address = "198.51.100.7"
    for _ in range(throttle.ADDRESS_LIMIT):
        assert attempt(app, unique("nobody"), "guess", address).status_code == 400
    erin = users.create(unique("erin"), PASSWORD)
    assert attempt(app, erin.username, PASSWORD, address).status_code == 429
    assert attempt(app, erin.username, PASSWORD, "198.51.100.8").status_code == 303


def test_a_correct_password_clears_the_accounts_count(app):
    frank = users.create(unique("frank"), PASSWORD)
    for round_ in range(3):
        for _ in range(throttle.ACCOUNT_LIMIT - 1):
            assert attempt(app, frank.username, "guess", f"203.0.113.{round_}").status_code == 400
        assert attempt(app, frank.username, PASSWORD, f"203.0.113.{round_}").status_code == 303
