"""A clip's page: progress while it runs; the player, chart, people and downloads when done."""

from __future__ import annotations

from flask import Blueprint, abort, render_template, request
from flask_login import current_user, login_required

from shared import jobs
from web import audit, exports, store
from web.fragments import FRAGMENTS
from web.views.auth import EmptyForm

bp = Blueprint("results", __name__)


@bp.get("/clips/<job_id>")
@login_required
def clip(job_id):
    """The results page (a video or a still image), or the clip's state until it is done."""
    c = store.get_clip(job_id, current_user)
    audit.record(audit.VIEW, c, detail="results page")
    if c["status"] != jobs.SUCCEEDED:
        return render_template("results/pending.html", clip=c, empty=EmptyForm())
    pages = store.page_count(c)
    page = request.args.get("page", 1, type=int)
    if not 1 <= page <= pages:
        abort(404)
    # What every viewer sees alike is rendered once per web process (web/fragments.py).
    parts = FRAGMENTS.get(("results", str(c["_id"]), c.get("updated_at"), page), lambda: _parts(c, page))
    template = "results/image.html" if c["kind"] == "image" else "results/video.html"
    return render_template(template, clip=c, r=parts["summary"], empty=EmptyForm(), parts=parts,
                           page=page, pages=pages, n_persons=store.n_persons(c), unit=parts.get("unit"))


def _parts(c: dict, page: int) -> dict:
    """The viewer-independent parts of a succeeded clip's page: summary, person table, violations, chart."""
    summary = store.summary(c)
    persons = store.persons_page(c, page)
    out = {"summary": summary, "n_persons": len(persons),
           "persons_html": render_template("results/_persons.html", clip=c, persons=persons)}
    if c["kind"] == "video":
        violations = store.violations(c)
        out["unit"] = unit = store.chart_unit(summary)
        out.update(n_violations=len(violations), bins_json=store.bins_json(c, unit),
                   violations_html=render_template("results/_violations.html", clip=c, violations=violations))
    return out


@bp.get("/clips/<job_id>/download/<what>")
@login_required
def download(job_id, what):
    """Annotated MP4, original, per-frame CSV or JSON, per-person CSV."""
    return exports.download(store.get_clip(job_id, current_user), what)
