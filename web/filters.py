"""Template filters: durations, percentages, sizes, times."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Flask
from jinja2 import Undefined


def _missing(value) -> bool:
    """None, or a field a (sparse or older) result does not have: shown as blank, never a 500."""
    return value is None or isinstance(value, Undefined)


def duration(seconds) -> str:
    """1:02:03 or 2:03 (seconds rounded down); '' when unknown."""
    if _missing(seconds):
        return ""
    s = int(seconds)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def clock(seconds) -> str:
    """A timestamp in a clip with tenths: 1:02.3."""
    if _missing(seconds):
        return ""
    whole = int(seconds)
    return f"{duration(whole)}.{int((seconds - whole) * 10)}"


def percent(rate, digits: int = 0) -> str:
    """0.873 -> '87%'; '–' when there is no rate (nobody decided)."""
    if _missing(rate):
        return "–"
    return f"{rate * 100:.{digits}f}%"


def filesize(n) -> str:
    """Bytes in B, KB, MB or GB."""
    if _missing(n):
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def when(t) -> str:
    """A UTC time as 2024-05-01 14:03 UTC."""
    if not isinstance(t, datetime):
        return ""
    return (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def rate_class(rate) -> str:
    """A CSS class for a compliance rate: good, fair, poor or none."""
    if _missing(rate):
        return "rate-none"
    return "rate-good" if rate >= 0.9 else "rate-fair" if rate >= 0.7 else "rate-poor"


# In HTML cached for every viewer, each page putting its own token in; escaping turns any "<" of user
# text into "&lt;", so the raw marker can only come from here.
FORM_TOKEN_STAND_IN = "<!--form-token-->"


def form_token() -> str:
    """The session's CSRF token for a form, or a stand-in while rendering HTML shared by sessions."""
    from flask import g
    from flask_wtf.csrf import generate_csrf
    from markupsafe import Markup

    return Markup(FORM_TOKEN_STAND_IN) if g.get("shared_render") else generate_csrf()


def shared_render(template: str, **context) -> str:
    """HTML that sessions share (cached): each form's CSRF token is a stand-in, see with_form_token."""
    from flask import g, render_template

    g.shared_render = True
    try:
        return render_template(template, **context)
    finally:
        g.shared_render = False


def with_form_token(html: str):
    """Shared HTML with this session's CSRF token in its forms, ready for a template."""
    from markupsafe import Markup

    return Markup(html.replace(FORM_TOKEN_STAND_IN, form_token()))


def init_app(app: Flask) -> None:
    """Register the filters (and the privacy checks the clip templates ask)."""
    from web import privacy
    from web.urls import clip_url

    for f in (duration, clock, percent, filesize, when, rate_class):
        app.add_template_filter(f)
    app.add_template_global(privacy.shows_faces)
    app.add_template_global(privacy.schedule, "retention_schedule")
    app.add_template_global(privacy.describe, "retention_policy")
    app.add_template_global(privacy.account_policy)
    app.add_template_global(clip_url)
    app.add_template_global(form_token)
