"""A clip's page: progress while it runs; the player, chart, people and downloads when done."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from shared import cache, jobs
from shared.db import get_db
from shared.errors import IllegalTransition
from web import audit, exports, privacy, store
from web.filters import shared_render, with_form_token
from web.fragments import FRAGMENTS
from web.views.auth import EmptyForm

bp = Blueprint("results", __name__)
_pages = cache.Versioned("jobs", max_entries=64)


@bp.get("/clips/<job_id>")
@login_required
def clip(job_id):
    """The results page (a video or a still image), or the clip's state until it is done."""
    c = store.get_clip(job_id, current_user)
    audit.viewed(c, "results page")
    if c["status"] != jobs.SUCCEEDED:
        return render_template("results/pending.html", clip=c, empty=EmptyForm())
    pages = store.page_count(c)
    page = request.args.get("page", 1, type=int)
    if not 1 <= page <= pages:
        abort(404)
    # What every viewer sees alike is rendered once per web process (web/fragments.py).
    parts = FRAGMENTS.get(("results", str(c["_id"]), c.get("updated_at"), page), lambda: _parts(c, page))
    kind = "image" if c["kind"] == "image" else "video"
    # The page's body is the same for every viewer until the job changes (shared/cache.py); each
    # request puts its own form token in.
    content = _pages.get(get_db().name, (c["_id"], page), lambda: shared_render(
        f"results/_{kind}.html", clip=c, r=parts["summary"], parts=parts, page=page, pages=pages,
        n_persons=store.n_persons(c), unit=parts.get("unit"), footage_note=_footage_note(c)),
        keep=cache.unless_written(str(c["_id"])))
    return render_template(f"results/{kind}.html", clip=c, content=with_form_token(content))


def _footage_note(c: dict) -> str:
    """What the page says in place of the video when the clip's settings hide it."""
    refusal = privacy.hidden(c)
    if refusal is None:
        return ""
    if c.get("anonymised_only"):
        return refusal.message + " No anonymised copy has been made yet: make one under Downloads."
    return refusal.message


@bp.post("/clips/<job_id>/privacy")
@login_required
def privacy_settings(job_id):
    """Change the clip's retention period, whether only its footage is deleted, and anonymised only."""
    c = store.get_clip(job_id, current_user)
    try:
        days = privacy.parse_days(request.form.get("retention_days"))
        privacy.apply(c, days=days, keep_statistics=bool(request.form.get("keep_statistics")),
                      anonymised_only=bool(request.form.get("anonymised_only")))
        flash("The privacy settings of this clip are saved.")
    except (ValueError, IllegalTransition) as e:
        flash(str(e))
    return redirect(url_for("results.clip", job_id=c["_id"]) + "#privacy", 303)


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
