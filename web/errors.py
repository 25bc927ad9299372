"""Error pages and JSON errors ({"error": code, "message": ...}) with the status that fits."""

from __future__ import annotations

import logging

from flask import Flask, jsonify, make_response, render_template
from flask_wtf.csrf import CSRFError
from kombu.exceptions import OperationalError as BrokerUnreachable
from pymongo.errors import ConnectionFailure as MongoUnreachable
from redis.exceptions import ConnectionError as RedisUnreachable
from redis.exceptions import TimeoutError as RedisTimeout
from werkzeug.exceptions import HTTPException

from shared.errors import IllegalTransition, NotFound, ServiceUnavailable
from web.auth import wants_json
from web.filters import filesize

log = logging.getLogger(__name__)


class ApiError(Exception):
    """An error with an HTTP status, a stable code for scripts and a sentence for people."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         405: "method_not_allowed", 409: "conflict", 410: "gone", 413: "too_large", 415: "unsupported_type",
         416: "range_not_satisfiable", 422: "invalid", 500: "internal_error", 503: "service_unavailable"}
TITLES = {400: "Bad request", 401: "Please log in", 403: "Forbidden", 404: "Not found",
          405: "Method not allowed", 409: "Not possible now", 410: "Deleted", 413: "Too large",
          415: "Unsupported file",
          422: "Invalid input", 500: "Something went wrong", 503: "Service unavailable"}
MESSAGES = {404: "There is no such page or clip (or it is not yours).",
            405: "This address does not accept that method.",
            500: "An unexpected error happened; it has been logged."}


def respond(status: int, code: str, message: str):
    """The error as JSON for the API and scripts, as a page otherwise."""
    if wants_json():
        resp = jsonify(error=code, message=message)
    else:
        title = TITLES.get(status, "Error")
        resp = make_response(render_template("error.html", title=title, message=message, status=status))
    resp.status_code = status
    return resp


def init_app(app: Flask) -> None:
    """Register the handlers."""

    @app.errorhandler(ApiError)
    def api_error(e: ApiError):
        return respond(e.status, e.code, e.message)

    @app.errorhandler(CSRFError)
    def csrf_error(e: CSRFError):
        return respond(400, "csrf_failed", f"{e.description} Reload the page and try again.")

    @app.errorhandler(NotFound)
    def not_found(e: NotFound):
        return respond(404, "not_found", MESSAGES[404])

    @app.errorhandler(IllegalTransition)
    def conflict(e: IllegalTransition):
        return respond(409, "conflict", str(e))

    @app.errorhandler(ServiceUnavailable)
    def service_unavailable(e: ServiceUnavailable):
        return respond(503, "service_unavailable", str(e))

    # An outage of MongoDB or Redis anywhere in a request (a token lookup, a page, queueing) is a 503
    # that names the service, never a 500: the client should retry, the operator knows where to look.
    @app.errorhandler(MongoUnreachable)
    def mongo_down(e: Exception):
        log.warning("MongoDB unreachable: %s", type(e).__name__)
        return respond(503, "service_unavailable", "The database (MongoDB) is unreachable right now; "
                       "nothing was changed. Try again shortly.")

    @app.errorhandler(RedisUnreachable)
    @app.errorhandler(RedisTimeout)
    @app.errorhandler(BrokerUnreachable)
    def redis_down(e: Exception):
        log.warning("Redis unreachable: %s", type(e).__name__)
        return respond(503, "service_unavailable",
                       "The job queue (Redis) is unreachable right now. Try again shortly.")

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):
        status = e.code or 500
        if status == 413:
            limit = filesize(app.config["UPLOAD_MAX_BYTES"])
            message = f"The file is too large: uploads are limited to {limit}."
        else:
            message = MESSAGES.get(status) or e.description or TITLES.get(status, "Error")
        resp = respond(status, CODES.get(status, "error"), message)
        # Keep the exception's own headers (Allow for 405), not its HTML content type.
        resp.headers.update({k: v for k, v in e.get_headers() if k != "Content-Type"})
        return resp

    @app.errorhandler(Exception)
    def unexpected(e: Exception):
        log.exception("unhandled error")
        return respond(500, "internal_error", MESSAGES[500])
