"""The web application factory (Flask); it reads MongoDB and queues work by task name only."""

from __future__ import annotations

import logging
import secrets

from flask import Flask, jsonify, render_template, request

from shared.config import Settings, get_settings, set_settings
from shared.errors import ServiceUnavailable


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app; settings default to the environment's."""
    if settings is not None:
        set_settings(settings)
    settings = get_settings()
    app = Flask(__name__)
    app.config.update(
        SECRET_KEY=settings.secret_key or secrets.token_hex(32),
        MAX_CONTENT_LENGTH=settings.upload_max_bytes + 1024 * 1024,  # room for the form's fields
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
    )
    if not settings.secret_key:
        logging.getLogger(__name__).warning("SECRET_KEY is not set: sessions end when the web restarts")

    from web.views import health, media, pages

    app.register_blueprint(health.bp)
    app.register_blueprint(media.bp)
    app.register_blueprint(pages.bp)

    @app.errorhandler(ServiceUnavailable)
    def service_unavailable(e):
        if request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json":
            return jsonify(error="service_unavailable", message=str(e)), 503
        return render_template("error.html", title="Service unavailable", message=str(e)), 503

    return app
