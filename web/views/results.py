"""A clip's page: progress while it runs; the player, chart, people and downloads when done."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_login import current_user, login_required

from shared import jobs
from web import exports, store
from web.views.auth import EmptyForm

bp = Blueprint("results", __name__)


@bp.get("/clips/<job_id>")
@login_required
def clip(job_id):
    """The results page (a video or a still image), or the clip's state until it is done."""
    c = store.get_clip(job_id, current_user)
    if c["status"] != jobs.SUCCEEDED:
        return render_template("results/pending.html", clip=c, empty=EmptyForm())
    summary = store.summary(c)
    if c["kind"] == "image":
        return render_template("results/image.html", clip=c, r=summary, empty=EmptyForm(),
                               persons=store.persons_page(c, 1))
    pages = store.page_count(c)
    page = request.args.get("page", 1, type=int)
    if not 1 <= page <= pages:
        abort(404)
    unit = store.chart_unit(summary)
    return render_template(
        "results/video.html", clip=c, r=summary, empty=EmptyForm(),
        persons=store.persons_page(c, page), page=page, pages=pages, n_persons=store.n_persons(c),
        violations=store.violations(c), unit=unit, bins_json=store.bins_json(c, unit),
    )


@bp.get("/clips/<job_id>/download/<what>")
@login_required
def download(job_id, what):
    """Annotated MP4, original, per-frame CSV or JSON, per-person CSV."""
    return exports.download(store.get_clip(job_id, current_user), what)
