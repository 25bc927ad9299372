"""The model page renders the model card, metrics and report plots from disk."""

from __future__ import annotations

import json

import pytest

from tests.web.seed import png
from web.views import model


@pytest.fixture
def model_folder(tmp_path, monkeypatch):
    folder = tmp_path / "mask_classifier"
    (folder / "report").mkdir(parents=True)
    monkeypatch.setattr(model, "model_dir", lambda: folder)
    return folder


def test_model_card_metrics_and_plots(signed_in, alice, model_folder):
    (model_folder / "MODEL_CARD.md").write_text(
        "# Mask classifier v1\n\nTrained on **4,000** faces.\n\n"
        "| split | accuracy |\n|---|---|\n| test | 0.953 |\n\n"
        "![confusion](report/confusion.png)\n\n<script>alert(1)</script>\n")
    (model_folder / "metrics.json").write_text(json.dumps(
        {"test": {"accuracy": 0.95312, "macro_f1": 0.9411, "per_class": {"masked": {"recall": 0.97}}},
         "n_test": 812, "classes": ["masked", "unmasked", "incorrect"]}))
    (model_folder / "report" / "confusion.png").write_bytes(png())
    (model_folder / "report" / "roc.png").write_bytes(png())
    (model_folder / "model.keras").write_bytes(b"weights")
    c = signed_in(alice)
    html = c.get("/model").get_data(as_text=True)
    assert "<h1>Mask classifier v1</h1>" in html and "<strong>4,000</strong>" in html
    assert "<td>test</td>" in html and "<td>0.953</td>" in html
    assert '<img src="/model/files/report/confusion.png" alt="confusion"' in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<th>test.accuracy</th><td>0.9531</td>" in html
    assert "<th>test.per_class.masked.recall</th><td>0.9700</td>" in html
    assert "<th>n_test</th><td>812</td>" in html
    assert html.count('<img src="/model/files/report/') == 3  # two plots, one in the card
    plot = c.get("/model/files/report/roc.png")
    assert plot.status_code == 200 and plot.data == png()
    assert c.get("/model/files/metrics.json").get_json()["n_test"] == 812
    assert c.get("/model/files/model.keras").status_code == 404  # weights are not served
    assert c.get("/model/files/../../shared/config.py").status_code == 404
    assert c.get("/model/files/report/missing.png").status_code == 404


def test_model_page_before_the_report_exists(signed_in, alice, model_folder):
    html = signed_in(alice).get("/model").get_data(as_text=True)
    assert "The model card has not been produced yet" in html


def test_bad_metrics_file_is_reported_not_a_crash(signed_in, alice, model_folder):
    (model_folder / "metrics.json").write_text("{not json")
    resp = signed_in(alice).get("/model")
    assert resp.status_code == 200 and "metrics.json is not valid JSON" in resp.get_data(as_text=True)


def test_model_page_needs_login(client):
    assert client.get("/model").status_code == 302
    assert client.get("/model/files/metrics.json").status_code == 302
