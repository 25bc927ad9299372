"""Liveness and readiness endpoints for load balancers and compose health checks."""

from __future__ import annotations

import redis
from flask import Blueprint, jsonify

from shared import db
from shared.config import get_settings
from shared.errors import ServiceUnavailable

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process answers."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """MongoDB and Redis both answer within the connect timeout; 503 naming the one that does not."""
    settings = get_settings()
    problems = {}
    try:
        db.ping()
    except ServiceUnavailable as e:
        problems["mongodb"] = str(e)
    try:
        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=settings.connect_timeout_s,
                                      socket_timeout=settings.connect_timeout_s)
        client.ping()
    except redis.RedisError as e:
        problems["redis"] = (f"Redis at {settings.redis_url} is unreachable ({type(e).__name__}); "
                             "start it (bin/services start) or fix REDIS_URL")
    if problems:
        return jsonify(status="unavailable", problems=problems), 503
    return jsonify(status="ready")
