"""The JSON API under /api/v1: token (or session) authentication, JSON errors, an OpenAPI document."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, current_app, g, jsonify, request, url_for

from shared import cache, jobs, result_docs
from shared.celery_app import EXPLAIN_FACE, enqueue
from shared.errors import IllegalTransition, ServiceUnavailable
from web import audit, exports, privacy, store
from web.actions import anonymise, remove, requeue
from web.auth import authenticate_api, owner_scope, session_expired
from web.errors import ApiError
from web.privacy import check_footage
from web.uploads import store_files
from web.urls import clip_url
from web.views.media import send_clip_file

bp = Blueprint("api", __name__, url_prefix="/api/v1")
FRAMES_LIMIT = 1000
LIST_LIMIT = 500
_list_bodies = cache.Versioned("jobs", max_entries=256)
# An explanation still pending after this long is assumed lost and may be requested again.
EXPLAIN_STALE_S = 300


@bp.before_request
def authenticate():
    """Every route but the OpenAPI document needs a token or a session."""
    if request.endpoint == "api.openapi":
        return None
    user = authenticate_api()
    if user is None:
        if request.headers.get("Authorization"):
            raise ApiError(401, "invalid_token", "The API token is unknown or revoked.")
        if session_expired():
            raise ApiError(401, "session_expired", "Your session has expired; log in again.")
        raise ApiError(401, "unauthorized", "Send an API token: Authorization: Bearer <token>.")
    g.user = user
    return None


@bp.after_request
def no_store(resp: Response) -> Response:
    """API answers are per user: never kept by shared caches."""
    resp.headers.setdefault("Cache-Control", "private, no-cache")
    if resp.status_code == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="maskwatch"'
    return resp


def _int_arg(name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, "invalid_parameter", f"{name} must be a whole number.") from None
    if not low <= value <= high:
        raise ApiError(400, "invalid_parameter", f"{name} must be between {low} and {high}.")
    return value


def _clip(job_id) -> dict:
    return store.get_clip(job_id, g.user)


def _succeeded(job_id) -> dict:
    clip = _clip(job_id)
    if clip["status"] != jobs.SUCCEEDED:
        raise ApiError(409, "not_ready",
                       f"The clip is {clip['status']}; results exist once it has succeeded.")
    return clip


SUMMARY_KEYS = ("frames", "duration_s", "fps", "width", "height", "compliance_rate",
                "face_frame_compliance", "people", "face_frames", "output_type")


def clip_json(job: dict) -> dict:
    """A clip's state for lists and polling, with the addresses of its pages and files."""
    return store.plain(_clip_fields(job))


def _clip_fields(job: dict) -> dict:
    """clip_json's fields, ids and times not yet turned into strings (a list serialises them at once)."""
    jid = str(job["_id"])
    result = job.get("result") if job.get("status") == jobs.SUCCEEDED else None
    urls = {"self": clip_url("api.clip", jid), "page": clip_url("results.clip", jid),
            "original": clip_url("api.download", jid, what="original")}
    if result:
        urls.update(results=clip_url("api.results", jid), frames=clip_url("api.frames", jid),
                    video=clip_url("media.video", jid), poster=clip_url("media.poster", jid),
                    downloads={k: clip_url("api.download", jid, what=k) for k in exports.KINDS})
    return {
        "id": jid, "filename": job.get("filename"), "kind": job.get("kind"), "status": job.get("status"),
        "progress": job.get("progress"), "eta_s": job.get("eta_s"), "frames_done": job.get("frames_done"),
        "error": job.get("error"), "note": job.get("note"),
        "retryable": job.get("retryable") is not False,
        "size": job.get("size"), "content_type": job.get("content_type"),
        "owner": job.get("owner"), "created_at": job.get("created_at"),
        "started_at": job.get("started_at"), "finished_at": job.get("finished_at"),
        "summary": {k: result.get(k) for k in SUMMARY_KEYS} if result else None,
        "privacy": privacy_json(job),
        "urls": urls,
    }


def privacy_json(job: dict) -> dict:
    """The clip's retention policy and whether it shows faces."""
    r = job.get("retention") or {}
    return {"retention_days": r.get("days"), "keep_statistics": bool(r.get("keep_statistics")),
            "delete_at": r.get("delete_at"), "footage_deleted_at": r.get("footage_deleted_at"),
            "anonymised_only": bool(job.get("anonymised_only"))}


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3 description of this API."""
    from web.openapi import spec

    return jsonify(spec())


@bp.get("/me")
def me():
    """Who the token or session belongs to."""
    return jsonify(id=g.user.id, username=g.user.username, is_admin=g.user.is_admin)


@bp.get("/clips")
def list_clips():
    """The caller's clips (everyone's for admins), newest first."""
    limit, owner = _int_arg("limit", 100, 1, LIST_LIMIT), owner_scope(g.user)
    # The body is kept while its list is (shared/cache.py): a change to another job keeps both.
    clips = store.list_clips(owner, limit)
    body = store.of_list(_list_bodies, (owner, limit, request.script_root), clips,
                         lambda: store.dumps({"clips": [_clip_fields(j) for j in clips]}))
    return current_app.response_class(body, mimetype="application/json")


@bp.post("/clips")
def upload():
    """Upload one or more files (multipart field `file`, or the raw body with ?filename=)."""
    outcomes = store_files(g.user.id, current_app.config["UPLOAD_MAX_BYTES"])
    if not outcomes:
        raise ApiError(400, "missing_file", "Send a file: multipart field 'file', or the raw body "
                                            "with ?filename=NAME.")
    stored = [clip_json(o["job"]) for o in outcomes if "job" in o]
    errors = [{k: o[k] for k in ("filename", "error", "message")} for o in outcomes if "error" in o]
    if not stored:
        first = next(o for o in outcomes if "error" in o)
        return jsonify(error=first["error"], message=first["message"], errors=errors), first["status"]
    return jsonify(clips=stored, errors=errors), 201


@bp.get("/clips/<job_id>")
def clip(job_id):
    """One clip's state, progress and summary."""
    return jsonify(clip_json(_clip(job_id)))


@bp.delete("/clips/<job_id>")
def delete(job_id):
    """Delete a clip with its files and statistics (409 while it runs)."""
    remove(_clip(job_id))
    return "", 204


@bp.post("/clips/<job_id>/cancel")
def cancel(job_id):
    """Cancel a queued or running clip."""
    clip = _clip(job_id)
    return jsonify(clip_json(jobs.cancel(clip["_id"]))), 202


@bp.post("/clips/<job_id>/retry")
def retry(job_id):
    """Queue a failed or cancelled clip again."""
    return jsonify(clip_json(requeue(_clip(job_id)))), 202


@bp.put("/clips/<job_id>/privacy")
def set_privacy(job_id):
    """Change the retention period (days from upload; null: kept), keep_statistics, anonymised_only."""
    clip = _clip(job_id)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body",
                       "Send a JSON object: retention_days, keep_statistics, anonymised_only.")
    now = {**privacy_json(clip), **body}  # a field left out keeps its value
    try:
        clip = privacy.apply(clip, days=privacy.parse_days(now["retention_days"]),
                             keep_statistics=bool(now["keep_statistics"]),
                             anonymised_only=bool(now["anonymised_only"]))
    except ValueError as e:
        raise ApiError(400, "invalid_parameter", str(e)) from None
    except IllegalTransition as e:
        raise ApiError(409, "conflict", str(e)) from None
    return jsonify(clip_json(clip))


@bp.get("/clips/<job_id>/results")
def results(job_id):
    """Summary, chart bins (per second and minute), every person and the violations, in one document."""
    clip = _succeeded(job_id)
    audit.viewed(clip, "results")
    body = (
        '{"clip":' + store.dumps(clip_json(clip))
        + ',"summary":' + store.dumps(store.summary(clip))
        + ',"bins":{"second":' + store.bins_json(clip, "second")
        + ',"minute":' + store.bins_json(clip, "minute") + "}"
        + ',"persons":' + store.all_persons_json(clip)
        + ',"violations":' + store.violations_json(clip) + "}"
    )
    return Response(body, mimetype="application/json")


@bp.get("/clips/<job_id>/bins")
def bins(job_id):
    """The compliance timeline: bins of one unit (second or minute)."""
    unit = request.args.get("unit", "second")
    if unit not in ("second", "minute"):
        raise ApiError(400, "invalid_parameter", "unit must be 'second' or 'minute'.")
    clip = _succeeded(job_id)
    return Response('{"unit":"' + unit + '","bins":' + store.bins_json(clip, unit) + "}",
                    mimetype="application/json")


@bp.get("/clips/<job_id>/persons")
def persons(job_id):
    """One page of the per-person ledger (`page` from 1, 100 people a page)."""
    clip = _succeeded(job_id)
    pages = store.page_count(clip)
    page = _int_arg("page", 1, 1, pages)
    audit.viewed(clip, f"persons page {page}")
    return jsonify(page=page, pages=pages, total=store.n_persons(clip),
                   persons=store.persons_page(clip, page))


@bp.get("/clips/<job_id>/frames")
def frames(job_id):
    """Per-frame statistics, paged by frame number: frames start..start+limit-1."""
    clip = _succeeded(job_id)
    total = clip["result"].get("frames") or 0
    start = _int_arg("start", 0, 0, max(total, 0))
    limit = _int_arg("limit", 500, 1, FRAMES_LIMIT)
    audit.viewed(clip, f"frames {start}-{min(start + limit, total) - 1}")
    # The buckets holding these frames, by _id: each page reads at most three documents.
    docs = result_docs.frames_page_text(clip["_id"], start, limit)
    end = start + limit
    nxt = url_for("api.frames", job_id=str(clip["_id"]), start=end, limit=limit) if end < total else None
    head = store.dumps({"clip": str(clip["_id"]), "start": start, "limit": limit, "total": total,
                        "next": nxt})
    return Response(head[:-1] + ',"frames":' + docs + "}", mimetype="application/json")


@bp.get("/clips/<job_id>/download/<what>")
def download(job_id, what):
    """annotated | original | frames.csv | frames.json | persons.csv (streamed; Range for media)."""
    return exports.download(_clip(job_id), what)


@bp.get("/clips/<job_id>/audit")
def clip_audit(job_id):
    """Who viewed, downloaded, exported or deleted the clip, newest first (its owner and admins)."""
    clip = _clip(job_id)
    page = _int_arg("page", 1, 1, 1_000_000)
    entries, more = audit.for_clip(clip["_id"], page)
    nxt = url_for("api.clip_audit", job_id=str(clip["_id"]), page=page + 1) if more else None
    return jsonify(clip=str(clip["_id"]), page=page, next=nxt, entries=[audit.as_json(e) for e in entries])


def _anonymised_json(job: dict) -> dict:
    copy = job.get("anonymised") or {}
    out = {k: copy.get(k) for k in ("status", "progress", "error", "requested_at", "finished_at")}
    out["boxes"] = bool(copy.get("boxes"))
    out["status"] = out["status"] or "none"
    if copy.get("file_id"):
        out["url"] = url_for("api.download", job_id=str(job["_id"]), what="anonymised")
    return store.plain(out)


@bp.get("/clips/<job_id>/anonymised")
def anonymised_copy(job_id):
    """The anonymised copy's state: none, pending, running (progress), done (with its URL) or failed."""
    return jsonify(_anonymised_json(jobs.get(_clip(job_id)["_id"])))


@bp.post("/clips/<job_id>/anonymised")
def make_anonymised_copy(job_id):
    """Ask for a copy of the clip with every face blurred (made by a worker; poll the GET for it);
    {"boxes": true} draws the compliance boxes on it (outlines, no text)."""
    body = request.get_json(silent=True)
    boxes = isinstance(body, dict) and bool(body.get("boxes"))
    try:
        job = anonymise(_succeeded(job_id), boxes=boxes)
    except IllegalTransition as e:
        raise ApiError(409, "conflict", str(e)) from None
    return jsonify(_anonymised_json(job)), 202


@bp.get("/clips/<job_id>/files/<file_id>")
def file(job_id, file_id):
    """A face crop or explanation image of the clip (ids from results and explanations)."""
    return send_clip_file(_succeeded(job_id), file_id)


def _person(clip: dict, track_id: int) -> dict:
    person = result_docs.find_person(clip, track_id)
    if person is None:
        raise ApiError(404, "not_found", f"The clip has no person {track_id}.")
    return person


def _explanation_json(job_id: str, track_id: int, exp: dict | None) -> dict:
    if not exp:
        return {"track_id": track_id, "status": "none"}
    out = {"track_id": track_id, **{k: v for k, v in exp.items() if not k.endswith("_id")}}
    for key in ("crop_id", "gradcam_id", "occlusion_id"):
        if exp.get(key):
            out[key] = str(exp[key])
            # The API's own file route: it accepts tokens as well as the page's session.
            out[key.replace("_id", "_url")] = url_for("api.file", job_id=job_id, file_id=str(exp[key]))
    return store.plain(out)


@bp.get("/clips/<job_id>/persons/<int:track_id>/explanation")
def explanation(job_id, track_id):
    """The "explain this face" state of one person: none, pending, done (with images) or failed."""
    clip = _succeeded(job_id)
    _person(clip, track_id)  # the same 404 as asking for one: no such person, no state
    job = jobs.get(clip["_id"])  # explanations change after success: read them from the job itself
    exp = (job.get("explanations") or {}).get(str(track_id))
    return jsonify(_explanation_json(str(clip["_id"]), track_id, exp))


@bp.post("/clips/<job_id>/persons/<int:track_id>/explanation")
def explain(job_id, track_id):
    """Ask the worker for Grad-CAM and occlusion maps of one person's best face."""
    clip = _succeeded(job_id)
    check_footage(clip)
    _person(clip, track_id)
    jid = str(clip["_id"])
    current = (jobs.get(clip["_id"]).get("explanations") or {}).get(str(track_id))
    if current and current.get("status") == "done" and request.args.get("force") != "1":
        return jsonify(_explanation_json(jid, track_id, current))
    if current and current.get("status") == "pending" and not _stale(current):
        return jsonify(_explanation_json(jid, track_id, current)), 202
    try:
        jobs.request_explanation(clip["_id"], track_id)
    except IllegalTransition as e:
        raise ApiError(409, "conflict", str(e)) from None
    try:
        enqueue(EXPLAIN_FACE, jid, track_id)
    except ServiceUnavailable as e:
        jobs.fail_explanation(clip["_id"], track_id, f"could not be queued: {e}")
        raise
    return jsonify(_explanation_json(jid, track_id, {"status": "pending"})), 202


def _stale(exp: dict) -> bool:
    asked = exp.get("requested_at")
    return asked is None or (datetime.now(UTC) - asked).total_seconds() > EXPLAIN_STALE_S
