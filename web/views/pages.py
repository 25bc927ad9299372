"""Upload, the clips list and the job page (the end-to-end slice)."""

from __future__ import annotations

from pathlib import PurePath

from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for

from shared import jobs, storage
from shared.celery_app import PROCESS_JOB, enqueue
from shared.db import RESULTS, UPLOADS
from shared.errors import NotFound, ServiceUnavailable
from web.uploads import UploadRejected, sniff
from web.views.media import send_stored

bp = Blueprint("pages", __name__)
OWNER = "local"  # accounts arrive with the web issue; until then one local owner


@bp.get("/")
def index():
    """Upload form and the clips list."""
    return render_template("index.html", jobs=jobs.list_for(OWNER))


@bp.post("/upload")
def upload():
    """Store the upload in GridFS, record a queued job, enqueue it by task name."""
    file = request.files.get("file")
    if file is None or not file.filename:
        flash("Choose a file to upload.")
        return redirect(url_for("pages.index")), 303
    try:
        kind, mime = sniff(file.stream)
    except UploadRejected as e:
        flash(str(e))
        return redirect(url_for("pages.index")), 303
    name = PurePath(file.filename).name[:200]
    file_id = storage.put(UPLOADS, file.stream, name, content_type=mime, metadata={"owner": OWNER})
    size = storage.open_file(UPLOADS, file_id).length
    job = jobs.create(owner=OWNER, filename=name, kind=kind, input_id=file_id, size=size,
                      content_type=mime)
    try:
        enqueue(PROCESS_JOB, str(job["_id"]))
    except ServiceUnavailable as e:
        # The upload is kept; the job says why it did not start and can be retried.
        jobs.fail(job["_id"], None, f"could not be queued: {e}")
    return redirect(url_for("pages.job", job_id=job["_id"])), 303


def _job_or_404(job_id) -> dict:
    try:
        return jobs.get(job_id, owner=OWNER)
    except NotFound:
        abort(404)


@bp.get("/jobs/<job_id>")
def job(job_id):
    """The job's state, and the annotated result when done."""
    return render_template("job.html", job=_job_or_404(job_id))


@bp.get("/jobs/<job_id>/status")
def job_status(job_id):
    """State, progress and ETA as JSON, for the page's polling."""
    j = _job_or_404(job_id)
    return jsonify(id=str(j["_id"]), status=j["status"], progress=j["progress"], eta_s=j["eta_s"],
                   error=j["error"])


@bp.get("/jobs/<job_id>/video")
def job_video(job_id):
    """The annotated result (Range requests supported)."""
    j = _job_or_404(job_id)
    if j["status"] != jobs.SUCCEEDED:
        abort(404)
    return send_stored(RESULTS, j["result"]["output_id"])


@bp.get("/jobs/<job_id>/poster")
def job_poster(job_id):
    """The result's poster image."""
    j = _job_or_404(job_id)
    if j["status"] != jobs.SUCCEEDED or not j["result"].get("thumbnail_id"):
        abort(404)
    return send_stored(RESULTS, j["result"]["thumbnail_id"])
