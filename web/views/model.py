"""The model page: the classifier's model card, metrics and report plots, read from disk (no TensorFlow)."""

from __future__ import annotations

import json
from pathlib import Path

from flask import Blueprint, abort, render_template, send_from_directory, url_for
from flask_login import login_required
from markdown_it import MarkdownIt
from markupsafe import Markup

from shared.config import ROOT

bp = Blueprint("model", __name__)
MODEL_DIR = ROOT / "models" / "mask_classifier"
SERVED = {".png", ".jpg", ".jpeg", ".svg", ".json", ".md", ".csv", ".txt"}


def model_dir() -> Path:
    """Where the model card and report live (a function, so tests can point it elsewhere)."""
    return MODEL_DIR


def render_markdown(text: str) -> Markup:
    """Markdown to HTML with raw HTML escaped; relative links and images point at served files."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = md.parse(text)
    for tok in tokens:
        for child in tok.children or []:
            for attr in ("src", "href"):
                value = child.attrGet(attr)
                if value and not value.startswith(("http://", "https://", "/", "#", "mailto:")):
                    child.attrSet(attr, url_for("model.file", name=value.removeprefix("./")))
    return Markup(md.renderer.render(tokens, md.options, {}))


def flatten(metrics, prefix: str = "", depth: int = 0) -> list[tuple[str, object]]:
    """(dotted name, value) for the scalar values of a metrics document, four levels deep."""
    rows: list[tuple[str, object]] = []
    if isinstance(metrics, dict) and depth < 4:
        for k, v in metrics.items():
            rows += flatten(v, f"{prefix}{k}.", depth + 1)
    elif isinstance(metrics, (int, float, str, bool)) or metrics is None:
        rows.append((prefix.rstrip("."), metrics))
    elif isinstance(metrics, list) and len(metrics) <= 8 and all(isinstance(x, (int, float))
                                                                  for x in metrics):
        rows.append((prefix.rstrip("."), ", ".join(f"{x:.4g}" for x in metrics)))
    return rows


@bp.get("/model")
@login_required
def card():
    """Model card, headline metrics and the report's plots."""
    folder = model_dir()
    card_path, metrics_path = folder / "MODEL_CARD.md", folder / "metrics.json"
    card_html = render_markdown(card_path.read_text(encoding="utf-8")) if card_path.is_file() else None
    metrics, metrics_error = None, None
    if metrics_path.is_file():
        try:
            metrics = flatten(json.loads(metrics_path.read_text(encoding="utf-8")))
        except ValueError as e:
            metrics_error = f"metrics.json is not valid JSON ({e})."
    plots = sorted(p.relative_to(folder).as_posix() for p in (folder / "report").glob("*.png")) \
        if (folder / "report").is_dir() else []
    shown = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder
    return render_template("model.html", card_html=card_html, metrics=metrics, metrics_error=metrics_error,
                           plots=plots, folder=shown)


@bp.get("/model/files/<path:name>")
@login_required
def file(name):
    """A file of the model folder (plots, metrics); only known document types, never code or weights."""
    if Path(name).suffix.lower() not in SERVED:
        abort(404)
    return send_from_directory(model_dir(), name, max_age=300)
