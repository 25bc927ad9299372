"""A clip's addresses from templates built once per request: url_for costs tens of µs a call, and a
list of 200 clips makes thousands of them (the API list's 13 per clip, the page's rows)."""

from __future__ import annotations

from flask import g, url_for

STAND_IN = "0" * 24  # the clip id in a template, replaced by each clip's own


def clip_url(endpoint: str, job_id, **values) -> str:
    """url_for(endpoint, job_id=job_id, **values)."""
    cache = g.setdefault("clip_url_templates", {})
    key = (endpoint, *sorted(values.items()))
    template = cache.get(key)
    if template is None:
        template = cache[key] = url_for(endpoint, job_id=STAND_IN, **values)
    return template.replace(STAND_IN, str(job_id))
