"""Stored files served with HTTP Range support (so browsers can seek), each behind the clip's owner check."""

from __future__ import annotations

import re
from urllib.parse import quote

from bson import ObjectId
from bson.errors import InvalidId
from flask import Blueprint, Response, abort, request
from flask_login import current_user, login_required

from shared import jobs, storage
from shared.db import RESULTS, UPLOADS, get_db
from shared.errors import NotFound, RangeNotSatisfiable
from web import store
from web.privacy import check_footage

bp = Blueprint("media", __name__)


def content_disposition(name: str, kind: str = "attachment") -> str:
    """A Content-Disposition value with an ASCII fallback and the UTF-8 name (RFC 6266)."""
    ascii_name = re.sub(r'[^A-Za-z0-9._ -]+', "_", name).strip() or "download"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


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
        headers["Content-Disposition"] = content_disposition(download_name)
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


def _succeeded(job_id) -> dict:
    clip = store.get_clip(job_id, current_user)
    if clip["status"] != jobs.SUCCEEDED:
        abort(404)
    return clip


def send_clip_file(clip: dict, file_id) -> Response:
    """A results file (face crop, explanation overlay) only when it belongs to this clip."""
    check_footage(clip)
    try:
        oid = ObjectId(str(file_id))
    except (InvalidId, TypeError):
        abort(404)
    doc = get_db()[f"{RESULTS}.files"].find_one({"_id": oid})
    if doc is None or (doc.get("metadata") or {}).get("job_id") != clip["_id"]:
        abort(404)
    return send_stored(RESULTS, oid)


@bp.get("/clips/<job_id>/video")
@login_required
def video(job_id):
    """The annotated result (MP4, or JPEG for a still image); Range requests supported. A clip marked
    "anonymised only" plays its anonymised copy instead."""
    clip = _succeeded(job_id)
    copy = (clip.get("anonymised") or {}).get("file_id")
    if clip.get("anonymised_only") and copy:
        check_footage(clip, anonymised_ok=True)
        return send_stored(RESULTS, copy)
    check_footage(clip)
    return send_stored(RESULTS, clip["result"]["output_id"])


@bp.get("/clips/<job_id>/poster")
@login_required
def poster(job_id):
    """The result's poster image (the list's thumbnail)."""
    clip = _succeeded(job_id)
    check_footage(clip)
    thumb = clip["result"].get("thumbnail_id")
    if not thumb:
        abort(404)
    return send_stored(RESULTS, thumb)


@bp.get("/clips/<job_id>/original")
@login_required
def original(job_id):
    """The uploaded file as it was (Range requests supported)."""
    clip = store.get_clip(job_id, current_user)
    check_footage(clip)
    return send_stored(UPLOADS, clip["input_id"])


@bp.get("/clips/<job_id>/files/<file_id>")
@login_required
def clip_file(job_id, file_id):
    """A face crop or explanation image of the clip."""
    return send_clip_file(store.get_clip(job_id, current_user), file_id)
