"""Live sources: cameras (admins add, start, stop and watch them) and the webcam check page."""

from __future__ import annotations

import logging
import re

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from shared import cameras, jobs
from shared.celery_app import JOIN_WEBCAM, enqueue
from shared.db import RESULTS
from shared.errors import BadInput, NotFound
from web import live
from web.auth import check_csrf_header, csrf
from web.views.media import send_stored

log = logging.getLogger(__name__)
bp = Blueprint("live", __name__)
CHUNK_MAX_BYTES = 32 * 1024 * 1024  # a few seconds of webcam video; far more is not a chunk
SESSION = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def _admin() -> None:
    if not current_user.is_admin:
        abort(403)


def _camera(camera_id) -> dict:
    try:
        return cameras.get(camera_id)
    except NotFound:
        abort(404)


@bp.get("/cameras")
@login_required
def index():
    """Every camera with its state, and the form to add one (admins)."""
    _admin()
    return render_template("live/cameras.html", cams=[live.camera_view(c) for c in cameras.all_cameras()],
                           error=None, form={})


@bp.post("/cameras")
@login_required
def add():
    """Add a camera by URL and start recording it; a refused URL is said in a sentence (400)."""
    _admin()
    name, url = request.form.get("name", ""), request.form.get("url", "")
    minutes = request.form.get("minutes", type=float)
    try:
        cam = cameras.create(name=name, url=url, owner=current_user.id,
                             duration_s=minutes * 60 if minutes else None)
    except BadInput as e:
        cams = [live.camera_view(c) for c in cameras.all_cameras()]
        return render_template("live/cameras.html", cams=cams, error=f"{e}.", form={"name": name}), 400
    log.info("camera %s added by %s: %s", cam["_id"], current_user.username, live.camera_view(cam)["url"])
    return redirect(url_for("live.camera", camera_id=str(cam["_id"])), 303)


@bp.post("/cameras/<camera_id>/<action>")
@login_required
def act(camera_id, action):
    """Start (a new recording), stop (the recording becomes a clip) or delete a camera."""
    _admin()
    cam = _camera(camera_id)
    if action == "start":
        minutes = request.form.get("minutes", type=float)
        cameras.start(cam["_id"], minutes * 60 if minutes else None)
    elif action == "stop":
        cameras.stop(cam["_id"])
        flash("Stopping: the last segment is stored and the recording becomes a clip in your list.")
    elif action == "delete":
        cameras.stop(cam["_id"])
        cameras.delete(cam["_id"])
        return redirect(url_for("live.index"), 303)
    else:
        abort(404)
    return redirect(url_for("live.camera", camera_id=camera_id), 303)


@bp.get("/cameras/<camera_id>")
@login_required
def camera(camera_id):
    """The live page: state, the latest analysed segment, compliance per minute, people seen lately."""
    _admin()
    return render_template("live/camera.html", view=live.live_view(_camera(camera_id)))


@bp.get("/cameras/<camera_id>/live.json")
@login_required
def camera_json(camera_id):
    """What the live page polls."""
    _admin()
    return jsonify(live.live_view(_camera(camera_id)))


@bp.get("/cameras/<camera_id>/segments/<job_id>/video")
@login_required
def segment_video(camera_id, job_id):
    """The annotated video of one analysed segment of the camera."""
    _admin()
    cam = _camera(camera_id)
    try:
        job = jobs.get(job_id, owner=cameras.owner_of_segments(cam["_id"]))
    except NotFound:
        abort(404)
    if job["status"] != jobs.SUCCEEDED:
        abort(404)
    return send_stored(RESULTS, job["result"]["output_id"], content_type="video/mp4")


@bp.get("/webcam")
@login_required
def webcam():
    """The webcam check: the browser records short chunks and each is analysed through the queue."""
    return render_template("live/webcam.html")


@bp.post("/webcam/chunks")
@csrf.exempt  # the header is checked below, without parsing the video body as a form
@login_required
def chunk():
    """Store one recorded chunk (raw body) and queue it; its id (201)."""
    check_csrf_header()
    session, seq = request.args.get("session", ""), request.args.get("seq", type=int)
    if not SESSION.match(session) or seq is None or seq < 0:
        return jsonify(error="bad_chunk", message="A chunk needs ?session= and ?seq=."), 400
    request.max_content_length = CHUNK_MAX_BYTES
    data = request.get_data(cache=False)
    ctype = (request.mimetype or "").lower()
    if not data or not ctype.startswith("video/"):
        return jsonify(error="bad_chunk", message="The chunk is empty or not a video."), 400
    job = live.store_chunk(current_user.id, data, ctype, session, seq)
    return jsonify(live.chunk_view(job)), 201


@bp.post("/webcam/sessions/<session>/clip")
@login_required
def session_clip(session):
    """Join a stopped webcam check's chunks into one clip of the user (a worker does it); 202."""
    if not SESSION.match(session) or not live.has_chunks(current_user.id, session):
        abort(404)
    enqueue(JOIN_WEBCAM, current_user.id, session)
    return jsonify(message="The recording is being joined into one clip: it will be in your clips list."), 202


def _chunk_job(job_id) -> dict:
    try:
        return jobs.get(job_id, owner=live.webcam_owner(current_user.id))
    except NotFound:
        abort(404)


@bp.get("/webcam/chunks/<job_id>")
@login_required
def chunk_state(job_id):
    """A chunk's state and, once analysed, its result."""
    return jsonify(live.chunk_view(_chunk_job(job_id)))


@bp.get("/webcam/chunks/<job_id>/video")
@login_required
def chunk_video(job_id):
    """The annotated video of an analysed chunk."""
    job = _chunk_job(job_id)
    if job["status"] != jobs.SUCCEEDED:
        abort(404)
    return send_stored(RESULTS, job["result"]["output_id"], content_type="video/mp4")
