"""Sign-in plumbing: Flask-Login sessions, API tokens, CSRF, and who may see which clip."""

from __future__ import annotations

from flask import Flask, current_app, flash, jsonify, redirect, request, url_for
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFError, CSRFProtect, validate_csrf
from wtforms.validators import ValidationError

from web import users

login_manager = LoginManager()
csrf = CSRFProtect()
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
SESSION_EXPIRED = "maskwatch.session_expired"  # a WSGI environ key set by the session interface


def init_app(app: Flask) -> None:
    """Attach sessions and CSRF protection to the app."""
    login_manager.init_app(app)
    csrf.init_app(app)


@login_manager.user_loader
def load_user(user_id: str):
    """The session's user (None logs the session out, e.g. a deleted account)."""
    return users.get(user_id)


@login_manager.unauthorized_handler
def unauthorized():
    """JSON 401 for the API and scripts; pages go to the login form, saying why."""
    expired = session_expired()
    if wants_json():
        code = "session_expired" if expired else "unauthorized"
        message = ("Your session has expired; log in again." if expired
                   else "Log in, or send an API token: Authorization: Bearer <token>.")
        return jsonify(error=code, message=message), 401
    flash("Your session has expired; please log in again." if expired else "Please log in to continue.")
    # Only a page can be returned to; a form post would be replayed as a GET.
    back = request.full_path.rstrip("?") if request.method == "GET" else None
    return redirect(url_for("auth.login", next=back))


def session_expired() -> bool:
    """True when the request carried a session cookie that has expired."""
    return bool(request.environ.get(SESSION_EXPIRED))


def wants_json() -> bool:
    """True for API paths and for scripts that ask for JSON."""
    if request.path.startswith("/api/"):
        return True
    accept = request.accept_mimetypes
    return accept.best == "application/json" or request.headers.get("X-Requested-With") == "fetch"


def owner_scope(user: users.User) -> str | None:
    """The owner to filter clips by: None (everyone's) for admins."""
    return None if user.is_admin else user.id


def check_csrf_header() -> None:
    """CSRF check from the X-CSRFToken header alone (never parses the body, which may be a 1 GB upload)."""
    token = next((request.headers.get(h) for h in current_app.config["WTF_CSRF_HEADERS"]
                  if request.headers.get(h)), None)
    try:
        validate_csrf(token)
    except ValidationError as e:
        raise CSRFError(e.args[0] if e.args else "The CSRF token is missing.") from None


def authenticate_api() -> users.User | None:
    """Resolve the API caller: a Bearer token, else the cookie session (CSRF-checked for writes).

    A token is never stored in the session: each API request carries it.
    """
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return users.user_for_token(token.strip())
    if current_user.is_authenticated:
        if request.method not in SAFE_METHODS:
            check_csrf_header()
        return current_user
    return None
