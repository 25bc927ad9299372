"""The web application factory (Flask); it reads MongoDB and queues work by task name only."""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta

from flask import Flask, request
from flask.sessions import SecureCookieSessionInterface
from werkzeug.middleware.proxy_fix import ProxyFix

from shared import cache
from shared.config import Settings, get_settings, set_settings
from web.auth import SESSION_EXPIRED

# Form posts and API calls are small; only the upload views raise the limit (per request).
SMALL_BODY_BYTES = 1024 * 1024
CSP = ("default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; style-src 'self'; "
       "script-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'")


class SessionInterface(SecureCookieSessionInterface):
    """Signed-cookie sessions: Secure whenever the request came over HTTPS; expiry is noticed."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(app.config["SESSION_COOKIE_SECURE"]) or request.is_secure

    def open_session(self, app: Flask, request):
        session = super().open_session(app, request)
        # A cookie that no longer loads is past PERMANENT_SESSION_LIFETIME (or signed with an old
        # key): remember it, so the login page and the API can say "expired" rather than "log in".
        if request.cookies.get(self.get_cookie_name(app)) and session is not None and not session:
            request.environ[SESSION_EXPIRED] = True
        return session


def create_app(settings: Settings | None = None, config: dict | None = None) -> Flask:
    """Build the app; settings default to the environment's, config overrides Flask's own keys."""
    if settings is not None:
        set_settings(settings)
    settings = get_settings()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key or secrets.token_hex(32),
        MAX_CONTENT_LENGTH=SMALL_BODY_BYTES,
        UPLOAD_MAX_BYTES=settings.upload_max_bytes,
        SESSION_COOKIE_NAME="maskwatch_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.session_cookie_secure,  # and on every HTTPS request anyway
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.session_hours),
        # Tokens live as long as the session: a page left open for an hour can still upload.
        WTF_CSRF_TIME_LIMIT=None,
        PROXY_FIX_HOPS=settings.proxy_fix_hops,
    )
    app.config.update(config or {})
    app.session_interface = SessionInterface()
    if app.config["PROXY_FIX_HOPS"]:
        hops = int(app.config["PROXY_FIX_HOPS"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)
    if not settings.secret_key:
        logging.getLogger(__name__).warning("SECRET_KEY is not set: sessions end when the web restarts")

    from web import admin, auth, errors, filters
    from web.views import account, api, clips, health, live, media, model, results, trail
    from web.views import auth as auth_views

    auth.init_app(app)
    errors.init_app(app)
    filters.init_app(app)
    for bp in (health.bp, auth_views.bp, clips.bp, results.bp, media.bp, model.bp, api.bp, trail.bp,
               account.bp, live.bp):
        app.register_blueprint(bp)
    auth.csrf.exempt(api.bp)  # the API checks its own CSRF header for cookie sessions
    app.cli.add_command(admin.create_admin_command)

    # A request reads the cache revisions once, in one Redis round trip (shared/cache.py).
    app.before_request(cache.begin_snapshot)
    app.teardown_request(lambda exc: cache.end_snapshot())

    @app.context_processor
    def limits():
        return {"upload_max_bytes": app.config["UPLOAD_MAX_BYTES"]}

    @app.after_request
    def security_headers(resp):
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Referrer-Policy", "same-origin")
        # Scripts and styles come only from /static (no inline code), so an injected tag cannot run.
        resp.headers.setdefault("Content-Security-Policy", CSP)
        return resp

    return app
