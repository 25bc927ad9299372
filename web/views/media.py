"""Stored files served with HTTP Range support, so browsers can seek in videos."""

from __future__ import annotations

from flask import Blueprint, Response, abort, request

from shared import storage
from shared.errors import NotFound, RangeNotSatisfiable

bp = Blueprint("media", __name__)


def send_stored(bucket: str, file_id, *, download_name: str | None = None,
                content_type: str | None = None) -> Response:
    """A GridFS file as a 200 or 206 response (416 for ranges beyond its end), streamed."""
    try:
        reader = storage.open_file(bucket, file_id)
    except NotFound:
        abort(404)
    size = reader.length
    ctype = content_type or (reader.metadata or {}).get("content_type") or "application/octet-stream"
    headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=3600"}
    if download_name:
        headers["Content-Disposition"] = f'attachment; filename="{download_name}"'
    try:
        span = storage.parse_range(request.headers.get("Range"), size)
    except RangeNotSatisfiable as e:
        reader.close()
        return Response(status=416, headers={**headers, "Content-Range": str(e)})
    first, last = span if span else (0, size - 1)
    body = storage.iter_range(reader, first, last) if size else iter(())
    resp = Response(body, status=206 if span else 200, mimetype=ctype, headers=headers,
                    direct_passthrough=True)
    resp.content_length = max(0, last - first + 1)
    if span:
        resp.headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return resp
