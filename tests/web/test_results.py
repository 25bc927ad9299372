"""Results pages, media with Range, downloads; every clip route refuses strangers and anonymous users."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from shared import jobs, result_docs, results, storage
from shared.db import RESULTS, UPLOADS, get_db
from tests.web.conftest import csrf_of
from tests.web.seed import png, seed_clip, violations_of
from web.app import create_app


def embedded_bins(html: str) -> list[dict]:
    return json.loads(re.search(r'<script type="application/json" id="bins-data">(.*?)</script>', html, re.S)
                      .group(1))


def test_video_results_page_shows_summary_chart_people_and_violations(signed_in, alice, video):
    c = signed_in(alice)
    resp = c.get(f"/clips/{video['_id']}")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    r = video["result"]
    assert f'src="/clips/{video["_id"]}/video"' in html and "<video" in html
    assert f'{round(r["compliance_rate"] * 100)}%' in html
    people = r["people"]
    labels = {"Masked": "masked", "Not masked": "unmasked", "Mask worn incorrectly": "incorrect",
              "Unknown": "unknown"}
    for label, key in labels.items():
        assert re.search(rf"<dt>{label}</dt><dd>{people[key]}</dd>", html), label
    assert f"{r['face_frames']['total']} <span" in html  # face-frames
    assert "0:10 · 250 frames at 25.0 fps" in html
    assert "yunet-2023mar" in html and "mask-mobilenetv2-v1" in html and "tflite" in html
    assert embedded_bins(html) == r["bins"]["second"]  # a 10 s clip charts per second
    for p in r["persons"]:
        assert f'<tr data-track="{p["track_id"]}">' in html
        assert f'/clips/{video["_id"]}/files/{p["crop_id"]}' in html
    for v in violations_of(video):
        assert f'data-t="{v["first_s"]}"' in html
    for what in ("annotated", "original", "frames.csv", "frames.json", "persons.csv"):
        assert f'/clips/{video["_id"]}/download/{what}' in html


def test_long_clip_charts_per_minute_and_pages_people(signed_in, alice, tmp_path):
    # A 20-minute clip at a tenth of a frame per second keeps the frame count tiny.
    job = seed_clip(alice.id, frames=120, fps=0.1, n_persons=230, seed=8, media_dir=tmp_path)
    c = signed_in(alice)
    html = c.get(f"/clips/{job['_id']}").get_data(as_text=True)
    assert 'data-unit="minute"' in html and embedded_bins(html) == job["result"]["bins"]["minute"]
    assert "page 1 of 3" in html and html.count('<tr data-track="') == 100
    p3 = c.get(f"/clips/{job['_id']}?page=3").get_data(as_text=True)
    assert p3.count('<tr data-track="') == 30 and "page 3 of 3" in p3
    assert c.get(f"/clips/{job['_id']}?page=4").status_code == 404
    # The per-person export has every person of every page, each as stored.
    rows = list(csv.DictReader(io.StringIO(c.get(f"/clips/{job['_id']}/download/persons.csv")
                                           .get_data(as_text=True))))
    persons = job["result"]["persons"]
    assert len(rows) == len(persons) == 230
    for row, p in zip(rows, persons, strict=True):
        assert int(row["track_id"]) == p["track_id"] and row["vote"] == (p["vote"] or "")
        assert [int(row[f"{k}_votes"]) for k in ("masked", "unmasked", "incorrect")] == [
            p["votes"][k] for k in ("masked", "unmasked", "incorrect")]
        assert int(row["frames"]) == p["frames"] and float(row["first_s"]) == p["first_s"]


def test_image_results_page(signed_in, alice, image):
    html = signed_in(alice).get(f"/clips/{image['_id']}").get_data(as_text=True)
    assert f'<img id="result-image" class="result-image" src="/clips/{image["_id"]}/video"' in html
    assert "<video" not in html and "bins-data" not in html
    assert html.count('<tr data-track="') == 3
    assert "Per-frame CSV" in html


def test_pending_page_polls_until_done(signed_in, alice):
    fid = storage.put(UPLOADS, io.BytesIO(b"x" * 10), "q.mp4", content_type="video/mp4")
    job = jobs.create(owner=alice.id, filename="q.mp4", kind="video", input_id=fid, size=10,
                      content_type="video/mp4")
    run = jobs.claim(job["_id"], worker="t")
    jobs.progress(job["_id"], run["run_id"], 0.42, 75.0)
    html = signed_in(alice).get(f"/clips/{job['_id']}").get_data(as_text=True)
    assert 'data-status="running"' in html and "42%" in html and "about 1:15 left" in html
    assert f'data-status-url="/api/v1/clips/{job["_id"]}"' in html
    assert "pending.js" in html


def test_video_is_served_with_ranges(signed_in, alice, video):
    c = signed_in(alice)
    whole = c.get(f"/clips/{video['_id']}/video")
    assert whole.status_code == 200 and whole.headers["Accept-Ranges"] == "bytes"
    assert whole.mimetype == "video/mp4"
    size = len(whole.data)
    part = c.get(f"/clips/{video['_id']}/video", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == whole.data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{size}"
    tail = c.get(f"/clips/{video['_id']}/video", headers={"Range": "bytes=-64"})
    assert tail.status_code == 206 and tail.data == whole.data[-64:]
    beyond = c.get(f"/clips/{video['_id']}/video", headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{size}"
    assert c.get(f"/clips/{video['_id']}/poster").mimetype == "image/jpeg"
    original = c.get(f"/clips/{video['_id']}/original")
    with storage.open_file(UPLOADS, video["input_id"]) as f:
        assert original.data == f.read()


def test_files_route_serves_only_this_clips_files(signed_in, alice, video, image):
    c = signed_in(alice)
    crop = video["result"]["persons"][0]["crop_id"]
    ok = c.get(f"/clips/{video['_id']}/files/{crop}")
    assert ok.status_code == 200 and ok.mimetype == "image/jpeg"
    # Another clip's file through this clip's URL, the original upload, junk ids: all 404.
    other = image["result"]["persons"][0]["crop_id"]
    for fid in (other, video["input_id"], "nothex", "0" * 24):
        assert c.get(f"/clips/{video['_id']}/files/{fid}").status_code == 404, fid


def test_frames_csv_streams_every_frame_with_consistent_counts(signed_in, alice, video):
    resp = signed_in(alice).get(f"/clips/{video['_id']}/download/frames.csv")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    assert resp.is_streamed
    assert 'attachment; filename="lobby.frames.csv"' in resp.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(resp.get_data(as_text=True))))
    assert [int(r["frame"]) for r in rows] == list(range(250))
    ff = video["result"]["face_frames"]
    for key in ("masked", "unmasked", "incorrect", "unknown"):
        assert sum(int(r[key]) for r in rows) == ff[key]
    assert sum(int(r["faces"]) for r in rows) == ff["total"]
    # Every row and column agrees with the stored frame records, counted here from their faces.
    stored = result_docs.frames_page(video["_id"], 0, 250)
    assert len(stored) == len(rows) == 250
    with_incorrect = 0
    for row, record in zip(rows, stored, strict=True):
        labels = [f["label"] for f in record["faces"]]
        n = {k: labels.count(k) for k in results.KEYS}
        assert int(row["frame"]) == record["frame"]
        assert float(row["t"]) == pytest.approx(record["t"], abs=1e-3)
        assert int(row["faces"]) == len(labels)
        assert {k: int(row[k]) for k in results.KEYS} == n, row["frame"]
        decided = n["masked"] + n["unmasked"] + n["incorrect"]  # incorrect is decided, not compliant
        if decided:
            assert float(row["compliance"]) == pytest.approx(n["masked"] / decided, abs=1e-4), row
        else:
            assert row["compliance"] == "", row
        with_incorrect += bool(n["incorrect"] and n["masked"])
    assert with_incorrect > 0  # the seeded clip has frames where "incorrect" changes the rate


def test_frames_json_and_persons_csv(signed_in, alice, video):
    c = signed_in(alice)
    data = json.loads(c.get(f"/clips/{video['_id']}/download/frames.json").get_data(as_text=True))
    assert data["clip"] == str(video["_id"]) and len(data["frames"]) == 250
    stored = result_docs.frames_page(video["_id"], 17, 1)
    assert data["frames"][17] == stored[0] and stored[0]["frame"] == 17
    rows = list(csv.DictReader(io.StringIO(c.get(f"/clips/{video['_id']}/download/persons.csv")
                                           .get_data(as_text=True))))
    persons = video["result"]["persons"]
    assert [int(r["track_id"]) for r in rows] == [p["track_id"] for p in persons]
    assert [r["vote"] for r in rows] == [p["vote"] for p in persons]
    assert int(rows[0]["masked_votes"]) == persons[0]["votes"]["masked"]
    assert list(rows[0]) == results.PERSON_COLUMNS  # the one per-person form (the CLI writes it too)


def test_annotated_and_original_downloads(signed_in, alice, video):
    c = signed_in(alice)
    ann = c.get(f"/clips/{video['_id']}/download/annotated")
    assert ann.status_code == 200 and "lobby.annotated.mp4" in ann.headers["Content-Disposition"]
    with storage.open_file(RESULTS, video["result"]["output_id"]) as f:
        assert ann.data == f.read()
    orig = c.get(f"/clips/{video['_id']}/download/original")
    assert 'filename="lobby.mp4"' in orig.headers["Content-Disposition"]
    assert c.get(f"/clips/{video['_id']}/download/secrets.txt").status_code == 404


def test_results_of_an_unfinished_clip_are_not_ready(signed_in, alice):
    fid = storage.put(UPLOADS, io.BytesIO(b"x" * 10), "q.mp4", content_type="video/mp4")
    job = jobs.create(owner=alice.id, filename="q.mp4", kind="video", input_id=fid, size=10,
                      content_type="video/mp4")
    c = signed_in(alice)
    resp = c.get(f"/clips/{job['_id']}/download/frames.csv")
    assert resp.status_code == 409 and "The clip is queued" in resp.get_data(as_text=True)
    assert c.get(f"/clips/{job['_id']}/video").status_code == 404
    assert c.get(f"/clips/{job['_id']}/download/original").status_code == 200


def test_malformed_and_unknown_ids_are_404(signed_in, alice):
    c = signed_in(alice)
    for jid in ("nothex", "0" * 24, "../../etc", "6b0" * 8):
        for path in (f"/clips/{jid}", f"/clips/{jid}/video", f"/clips/{jid}/download/frames.csv"):
            resp = c.get(path)
            assert resp.status_code == 404, path
            assert "There is no such page or clip" in resp.get_data(as_text=True)


def clip_routes(app, video) -> list[tuple[str, str]]:
    """(method, URL) for every route that names a clip, filled with the seeded video's ids."""
    person = video["result"]["persons"][0]
    values = {"job_id": str(video["_id"]), "file_id": str(person["crop_id"]), "what": "frames.csv",
              "track_id": person["track_id"]}
    out = []
    for rule in app.url_map.iter_rules():
        if "job_id" not in rule.arguments or "camera_id" in rule.arguments:
            continue  # (a camera's segment routes are admins' only: tests/worker/test_recorder.py)
        url = rule.rule
        for arg in rule.arguments:
            url = re.sub(rf"<(?:\w+:)?{arg}>", str(values[arg]), url)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((method, url))
    return out


def test_every_clip_route_is_404_for_another_user(settings, signed_in, bob, video):
    app = create_app(settings, config={"TESTING": True})
    routes = clip_routes(app, video)
    assert len(routes) >= 20  # pages, media, downloads and the API
    c = signed_in(bob)
    for method, url in routes:
        headers = {"X-CSRFToken": c.csrf}
        resp = c.open(url, method=method, data={"csrf_token": c.csrf}, headers=headers)
        assert resp.status_code == 404, (method, url, resp.status_code)
        body = resp.get_data(as_text=True)
        assert str(video["result"]["compliance_rate"]) not in body and video["filename"] not in body
    assert jobs.get(video["_id"])["status"] == "succeeded"  # nothing was changed or deleted


def test_a_strangers_api_token_gets_404_on_every_clip_route(settings, video):
    from web import users

    app = create_app(settings, config={"TESTING": True})
    stranger = users.create(f"eve{video['_id']}", "correct horse battery")
    token, _ = users.create_token(stranger.id, "eve's script")
    c = app.test_client()
    api = [(m, u) for m, u in clip_routes(app, video) if u.startswith("/api/")]
    assert len(api) >= 10
    for method, url in api:
        resp = c.open(url, method=method, headers={"Authorization": f"Bearer {token}"})
        assert resp.status_code == 404 and resp.get_json()["error"] == "not_found", (method, url)
        assert video["filename"] not in resp.get_data(as_text=True)
    after = jobs.get(video["_id"])
    assert after["status"] == "succeeded"  # nothing was cancelled, retried or deleted


def test_every_clip_route_needs_a_login(settings, video):
    app = create_app(settings, config={"TESTING": True})
    c = app.test_client()
    for method, url in clip_routes(app, video):
        resp = c.open(url, method=method)
        if url.startswith("/api/"):
            assert resp.status_code == 401 and resp.get_json()["error"] == "unauthorized", url
        elif method == "GET":
            assert resp.status_code == 302 and "/login" in resp.headers["Location"], url
        else:
            assert resp.status_code == 400, url  # no CSRF token: refused before anything else


def test_every_state_changing_route_needs_a_login_even_with_a_valid_csrf_token(settings, alice, video):
    app = create_app(settings, config={"TESTING": True})
    c = app.test_client()
    token = csrf_of(c)  # a real token of this anonymous session: CSRF passes, so only the login check is left
    person = video["result"]["persons"][0]
    values = {"job_id": str(video["_id"]), "track_id": person["track_id"], "token_id": "0" * 24,
              "camera_id": "0" * 24, "action": "start", "session": "abcdefgh12"}
    anonymous = {"auth.login", "auth.register", "auth.logout"}
    checked = []
    jobs_before = get_db().jobs.count_documents({})
    explanations = jobs.get(video["_id"]).get("explanations")
    for rule in app.url_map.iter_rules():
        methods = rule.methods & {"POST", "PUT", "PATCH", "DELETE"}
        if not methods or rule.endpoint in anonymous:
            continue
        url = rule.rule
        for arg in rule.arguments:
            url = re.sub(rf"<(?:\w+:)?{arg}>", str(values[arg]), url)
        for method in sorted(methods):
            resp = c.open(url, method=method, data={"csrf_token": token, "name": "t",
                                                    "file": (io.BytesIO(png()), "a.png")},
                          headers={"X-CSRFToken": token})
            if url.startswith("/api/"):
                assert resp.status_code == 401 and resp.get_json()["error"] == "unauthorized", (method, url)
            else:
                assert resp.status_code == 302, (method, url, resp.status_code)
                assert resp.headers["Location"].startswith("/login"), (method, url)
            checked.append((method, url))
    assert len(checked) >= 11  # uploads, tokens, cancel/retry/delete on pages and API, explanations
    after = jobs.get(video["_id"])
    assert after["status"] == "succeeded" and after.get("explanations") == explanations
    assert get_db().jobs.count_documents({}) == jobs_before  # nothing was uploaded


def test_admin_sees_other_peoples_clips(signed_in, admin, video):
    c = signed_in(admin)
    assert c.get(f"/clips/{video['_id']}").status_code == 200
    assert c.get(f"/clips/{video['_id']}/video", headers={"Range": "bytes=0-9"}).status_code == 206
    assert c.get(f"/clips/{video['_id']}/download/persons.csv").status_code == 200


def test_explanation_images_are_served_from_the_clip(signed_in, alice, video):
    grad = storage.put(RESULTS, io.BytesIO(png()), "g.png", content_type="image/png",
                       metadata={"job_id": video["_id"], "role": "gradcam"})
    resp = signed_in(alice).get(f"/clips/{video['_id']}/files/{grad}")
    assert resp.status_code == 200 and resp.mimetype == "image/png" and resp.data == png()


def test_a_results_page_is_rendered_once_per_change_and_only_for_who_may_see_it(signed_in, alice, bob):
    from web.fragments import FRAGMENTS

    clip = seed_clip(alice.id, frames=100, n_persons=2, seed=11)
    url = f"/clips/{clip['_id']}"
    def tokenless(html: str) -> str:
        return re.sub(r'(content|value)="[\w.-]{40,}"', "TOKEN", html)

    first = signed_in(alice).get(url).get_data(as_text=True)
    hits = FRAGMENTS.hits
    again = signed_in(alice).get(url).get_data(as_text=True)  # another session: its own CSRF token
    assert tokenless(again) == tokenless(first) and again != first
    assert FRAGMENTS.hits == hits + 1
    # The cache is consulted only after the access check: a stranger still gets 404.
    assert signed_in(bob).get(url).status_code == 404
    # Whatever changes the job makes a new key: a changed person ledger shows at once.
    page = json.loads(result_docs.persons_page_text(clip["_id"], 1))
    page[0]["frames"] = 987654
    result_docs.put(result_docs.PERSONS, result_docs.text_docs(result_docs.page_id(clip["_id"], 1),
                                                              json.dumps(page), job_id=clip["_id"], page=1))
    assert "987654" not in signed_in(alice).get(url).get_data(as_text=True)  # unchanged job: kept
    get_db().jobs.update_one({"_id": clip["_id"]}, {"$set": {"updated_at": jobs.now()}})
    assert "<td>987654</td>" in signed_in(alice).get(url).get_data(as_text=True)
