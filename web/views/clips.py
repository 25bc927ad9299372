"""The clips list: upload, live state of each clip, retry, cancel and delete."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from flask_wtf.csrf import CSRFError, validate_csrf
from wtforms.validators import ValidationError

from shared import cache, jobs
from shared.errors import IllegalTransition
from web import store
from web.actions import anonymise, remove, requeue
from web.auth import check_csrf_header, csrf, owner_scope, wants_json
from web.filters import shared_render, with_form_token
from web.uploads import store_files
from web.views.api import clip_json
from web.views.auth import EmptyForm

LIST_PAGE = 50  # clips per page of the list
bp = Blueprint("clips", __name__)
_rows = cache.Versioned("jobs", max_entries=256)


@bp.get("/")
@login_required
def index():
    """Upload area and the clips list, newest first, LIST_PAGE a page (?page=2 for older ones)."""
    page = request.args.get("page", 1, type=int)
    if page < 1:
        abort(404)
    # One more than a page tells whether there is an older page; rendering rows is the list's main cost.
    scope = owner_scope(current_user)
    clips = store.list_clips(scope, LIST_PAGE + 1, (page - 1) * LIST_PAGE)
    if page > 1 and not clips:
        abort(404)
    # The rows are the same for every viewer while the list is (an admin's show owners).
    viewer = current_user.id if current_user.is_admin else None
    rows = store.of_list(_rows, (scope, viewer, page), clips, lambda: shared_render(
        "clips/_rows.html", clips=clips[:LIST_PAGE], empty=EmptyForm()))
    return render_template("clips/index.html", rows=with_form_token(rows), clips=clips[:LIST_PAGE],
                           empty=EmptyForm(), page=page, older=len(clips) > LIST_PAGE)


@bp.get("/clips/<job_id>/row")
@login_required
def row(job_id):
    """One row of the list (the page swaps it in when a clip changes state)."""
    clip = store.get_clip(job_id, current_user)
    return render_template("clips/_row.html", j=clip, empty=EmptyForm())


def _check_form_token(value: str | None) -> None:
    try:
        validate_csrf(value)
    except ValidationError as e:
        raise CSRFError(e.args[0] if e.args else "The CSRF token is missing.") from None


@bp.post("/upload")
@csrf.exempt  # checked below without letting Werkzeug parse (and spool) the whole body
@login_required
def upload():
    """Stream each uploaded file into GridFS and queue a job per file.

    Scripts (XHR) get JSON: 201 with the new clips, or the first error's status and message.
    A plain form post is redirected to the clip (one file) or the list (several).
    """
    header = any(request.headers.get(h) for h in current_app.config["WTF_CSRF_HEADERS"])
    if header:
        check_csrf_header()
    outcomes = store_files(current_user.id, current_app.config["UPLOAD_MAX_BYTES"],
                           csrf_field_check=None if header else _check_form_token)
    stored = [o for o in outcomes if "job" in o]
    failed = [o for o in outcomes if "error" in o]
    if wants_json():
        if not outcomes:
            return jsonify(error="missing_file", message="Choose a file to upload."), 400
        body = {"clips": [clip_json(o["job"]) for o in stored],
                "errors": [{k: o[k] for k in ("filename", "error", "message")} for o in failed]}
        if stored:
            return jsonify(body), 201
        return jsonify(error=failed[0]["error"], message=failed[0]["message"], **body), failed[0]["status"]
    if not outcomes:
        flash("Choose a file to upload.")
        return redirect(url_for("clips.index"), 303)
    for o in failed:
        flash(f"{o['filename']}: {o['message']}")
    if len(stored) == 1 and not failed:
        return redirect(url_for("results.clip", job_id=stored[0]["job"]["_id"]), 303)
    if stored:
        flash(f"{len(stored)} file{'s' if len(stored) > 1 else ''} uploaded.")
    return redirect(url_for("clips.index"), 303)


@bp.post("/clips/<job_id>/retry")
@login_required
def retry(job_id):
    """Queue a failed or cancelled clip again."""
    clip = store.get_clip(job_id, current_user)
    try:
        job = requeue(clip)
        flash(f"{clip['filename']} is queued again." + (f" {job['note']}" if job.get("note") else ""))
    except IllegalTransition:
        flash(f"{clip['filename']} is {clip['status']}; only failed or cancelled clips can be retried.")
    return redirect(_back(), 303)


@bp.post("/clips/<job_id>/cancel")
@login_required
def cancel(job_id):
    """Cancel a queued or running clip (a running one stops within a second or two)."""
    clip = store.get_clip(job_id, current_user)
    try:
        jobs.cancel(clip["_id"])
        flash(f"Cancelling {clip['filename']}.")
    except IllegalTransition:
        flash(f"{clip['filename']} is {clip['status']}; it cannot be cancelled.")
    return redirect(_back(), 303)


@bp.post("/clips/<job_id>/anonymise")
@login_required
def make_anonymised(job_id):
    """Ask for a copy of a finished clip with every face blurred."""
    clip = store.get_clip(job_id, current_user)
    try:
        anonymise(clip, boxes=bool(request.form.get("boxes")))
        flash("An anonymised copy is being made; it appears under Downloads when ready.")
    except IllegalTransition as e:
        flash(f"{clip['filename']}: {e}.")
    return redirect(url_for("results.clip", job_id=clip["_id"]), 303)


@bp.post("/clips/<job_id>/delete")
@login_required
def delete(job_id):
    """Delete a clip with its files and statistics."""
    clip = store.get_clip(job_id, current_user)
    try:
        remove(clip)
        flash(f"{clip['filename']} is deleted.")
    except IllegalTransition:
        flash(f"{clip['filename']} is running; cancel it before deleting it.")
    return redirect(url_for("clips.index"), 303)


def _back() -> str:
    """Where a list or results page action returns: the page it came from, when it is ours."""
    ref = request.referrer or ""
    host = request.host_url.rstrip("/")
    if ref.startswith(host + "/"):
        return ref[len(host):]
    return url_for("clips.index")
