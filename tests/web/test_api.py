"""The JSON API: tokens, JSON errors, every route, paging, uploads, explanations, the OpenAPI document."""

from __future__ import annotations

import io
import re
import time

import pytest
from PIL import Image

from shared import jobs, storage
from shared.db import RESULTS, UPLOADS, get_db
from tests.conftest import wait_for_job
from tests.media import make_clip
from tests.web.conftest import unique
from tests.web.seed import png, seed_clip
from tests.worker.helpers import stored_job
from web import users
from web.app import create_app


@pytest.fixture
def token(signed_in, alice):
    """A token made on alice's settings page, as a user would."""
    c = signed_in(alice)
    resp = c.post("/settings/tokens", data={"name": "ci script", "csrf_token": c.csrf})
    assert resp.status_code == 201
    return re.search(r'<code id="new-token">(mw_[^<]+)</code>', resp.get_data(as_text=True)).group(1)


def bearer(t: str) -> dict:
    return {"Authorization": f"Bearer {t}"}


def test_tokens_are_shown_once_stored_hashed_and_revocable(signed_in, alice, client, token):
    doc = get_db().tokens.find_one({"token_hash": users.token_hash(token)})
    assert doc["user_id"] == alice.id and doc["name"] == "ci script"
    assert token not in str(get_db().tokens.find_one({"_id": doc["_id"]}))
    assert client.get("/api/v1/me", headers=bearer(token)).get_json() == {
        "id": alice.id, "username": alice.username, "is_admin": False}
    c = signed_in(alice)
    settings_page = c.get("/settings").get_data(as_text=True)
    assert "ci script" in settings_page and token not in settings_page
    assert c.post(f"/settings/tokens/{doc['_id']}/revoke", data={"csrf_token": c.csrf}).status_code == 303
    resp = client.get("/api/v1/me", headers=bearer(token))
    assert resp.status_code == 401 and resp.get_json()["error"] == "invalid_token"
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


def test_someone_elses_token_cannot_be_revoked(signed_in, bob, token):
    doc = get_db().tokens.find_one({"token_hash": users.token_hash(token)})
    b = signed_in(bob)
    assert b.post(f"/settings/tokens/{doc['_id']}/revoke", data={"csrf_token": b.csrf}).status_code == 404
    assert get_db().tokens.count_documents({"_id": doc["_id"]}) == 1


def test_api_errors_are_json_with_codes(client, token):
    cases = [
        (client.get("/api/v1/clips"), 401, "unauthorized"),
        (client.get("/api/v1/clips", headers=bearer("mw_forged")), 401, "invalid_token"),
        (client.get("/api/v1/clips", headers={"Authorization": "Basic abc"}), 401, "invalid_token"),
        (client.get("/api/v1/clips/nothex", headers=bearer(token)), 404, "not_found"),
        (client.get("/api/v1/clips/" + "0" * 24, headers=bearer(token)), 404, "not_found"),
        (client.get("/api/v1/nothing", headers=bearer(token)), 404, "not_found"),
        (client.put("/api/v1/clips", headers=bearer(token)), 405, "method_not_allowed"),
        (client.get("/api/v1/clips?limit=zero", headers=bearer(token)), 400, "invalid_parameter"),
        (client.get("/api/v1/clips?limit=100000", headers=bearer(token)), 400, "invalid_parameter"),
    ]
    for resp, status, code in cases:
        assert resp.status_code == status and resp.is_json, (status, code, resp.get_data(as_text=True))
        body = resp.get_json()
        assert body["error"] == code and isinstance(body["message"], str) and body["message"]


def test_list_status_results_and_bins(client, token, video, image):
    listed = client.get("/api/v1/clips", headers=bearer(token)).get_json()["clips"]
    ids = [c["id"] for c in listed]
    assert str(video["_id"]) in ids and str(image["_id"]) in ids
    one = client.get(f"/api/v1/clips/{video['_id']}", headers=bearer(token)).get_json()
    r = video["result"]
    assert one["status"] == "succeeded" and one["summary"]["compliance_rate"] == r["compliance_rate"]
    assert one["summary"]["people"] == r["people"]
    assert one["urls"]["downloads"]["frames.csv"] == f"/api/v1/clips/{video['_id']}/download/frames.csv"
    res = client.get(f"/api/v1/clips/{video['_id']}/results", headers=bearer(token)).get_json()
    assert res["summary"]["face_frames"] == r["face_frames"]
    assert res["bins"]["second"] == r["bins"]["second"] and res["bins"]["minute"] == r["bins"]["minute"]
    assert [p["track_id"] for p in res["persons"]] == [p["track_id"] for p in r["persons"]]
    assert res["persons"][0]["crop_id"] == str(r["persons"][0]["crop_id"])
    assert {v["track_id"] for v in res["violations"]} == {
        p["track_id"] for p in r["persons"] if p["vote"] in ("unmasked", "incorrect")}
    minute = client.get(f"/api/v1/clips/{video['_id']}/bins?unit=minute", headers=bearer(token)).get_json()
    assert minute == {"unit": "minute", "bins": r["bins"]["minute"]}
    bad = client.get(f"/api/v1/clips/{video['_id']}/bins?unit=hour", headers=bearer(token))
    assert bad.status_code == 400 and bad.get_json()["error"] == "invalid_parameter"
    people = client.get(f"/api/v1/clips/{video['_id']}/persons?page=1", headers=bearer(token)).get_json()
    assert people["total"] == len(r["persons"]) and people["pages"] == 1


def test_frames_are_paged_by_frame_number(client, token, video):
    url, seen = f"/api/v1/clips/{video['_id']}/frames?limit=100", []
    while url:
        page = client.get(url, headers=bearer(token)).get_json()
        assert page["total"] == 250
        seen += [f["frame"] for f in page["frames"]]
        url = page["next"]
    assert seen == list(range(250))
    page = client.get(f"/api/v1/clips/{video['_id']}/frames?start=240&limit=5",
                      headers=bearer(token)).get_json()
    assert [f["frame"] for f in page["frames"]] == [240, 241, 242, 243, 244]
    face = page["frames"][0]["faces"][0] if page["frames"][0]["faces"] else None
    if face:
        assert set(face) >= {"box", "label", "p_mask", "probs", "track"}
    for q in ("start=-1", "limit=0", "limit=5000", "start=x"):
        resp = client.get(f"/api/v1/clips/{video['_id']}/frames?{q}", headers=bearer(token))
        assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_parameter", q


def test_results_of_a_queued_clip_are_409(client, token, alice):
    job = stored_job(b"x" * 10, "q.mp4", owner=alice.id)
    for path in ("results", "frames", "bins", "persons", "download/frames.csv"):
        resp = client.get(f"/api/v1/clips/{job['_id']}/{path}", headers=bearer(token))
        assert resp.status_code == 409 and resp.get_json()["error"] == "not_ready", path
    st = client.get(f"/api/v1/clips/{job['_id']}", headers=bearer(token)).get_json()
    assert st["status"] == "queued" and st["summary"] is None


def test_downloads_through_the_api(client, token, video):
    csv_text = client.get(f"/api/v1/clips/{video['_id']}/download/frames.csv", headers=bearer(token))
    assert csv_text.status_code == 200 and csv_text.get_data(as_text=True).count("\n") == 251
    part = client.get(f"/api/v1/clips/{video['_id']}/download/annotated", headers={**bearer(token),
                                                                                   "Range": "bytes=0-15"})
    assert part.status_code == 206 and len(part.data) == 16
    crop = video["result"]["persons"][0]["crop_id"]
    image = client.get(f"/api/v1/clips/{video['_id']}/files/{crop}", headers=bearer(token))
    assert image.mimetype == "image/jpeg"


def test_upload_through_the_api_multipart_and_raw(client, token, alice, tmp_path):
    clip = make_clip(tmp_path / "api.mp4", frames=8).read_bytes()
    resp = client.post("/api/v1/clips", headers=bearer(token), content_type="multipart/form-data",
                       data={"file": (io.BytesIO(clip), "api.mp4")})
    assert resp.status_code == 201, resp.get_json()
    made = resp.get_json()["clips"][0]
    assert made["filename"] == "api.mp4" and made["kind"] == "video"
    assert jobs.get(made["id"])["owner"] == alice.id
    octets = {**bearer(token), "Content-Type": "application/octet-stream"}
    raw = client.post("/api/v1/clips?filename=raw%20clip.mp4", headers=octets, data=clip)
    assert raw.status_code == 201 and raw.get_json()["clips"][0]["filename"] == "raw clip.mp4"
    empty = client.post("/api/v1/clips", headers=bearer(token), content_type="multipart/form-data", data={})
    assert empty.status_code == 400 and empty.get_json()["error"] == "missing_file"
    junk = client.post("/api/v1/clips?filename=x.mp4", headers={**bearer(token), "Content-Type": "video/mp4"},
                       data=b"<html>not a video</html>")
    assert junk.status_code == 415 and junk.get_json()["error"] == "unsupported_type"


def test_session_writes_to_the_api_need_the_csrf_header(signed_in, alice):
    c = signed_in(alice)
    job = stored_job(b"x" * 10, "q.mp4", owner=alice.id)
    refused = c.post(f"/api/v1/clips/{job['_id']}/cancel")
    assert refused.status_code == 400 and refused.get_json()["error"] == "csrf_failed"
    assert jobs.get(job["_id"])["status"] == "queued"
    ok = c.post(f"/api/v1/clips/{job['_id']}/cancel", headers={"X-CSRFToken": c.csrf})
    assert ok.status_code == 202 and ok.get_json()["status"] == "cancelled"
    assert c.get(f"/api/v1/clips/{job['_id']}").status_code == 200  # reads need no header


def wait_until(predicate, timeout: float = 300):
    """Poll until predicate() is truthy (generous deadline: the machine may be loaded); its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.25)
    raise AssertionError(f"still not true after {timeout}s")


def test_cancel_retry_delete_through_the_api(client, token, alice, worker):
    data = png(size=(320, 240))
    job = stored_job(data, "q.png", owner=alice.id)
    fid = job["input_id"]
    jid = str(job["_id"])
    cancelled = client.post(f"/api/v1/clips/{jid}/cancel", headers=bearer(token))
    assert cancelled.status_code == 202 and cancelled.get_json()["status"] == "cancelled"
    again = client.post(f"/api/v1/clips/{jid}/cancel", headers=bearer(token))
    assert again.status_code == 409 and again.get_json()["error"] == "conflict"
    retried = client.post(f"/api/v1/clips/{jid}/retry", headers=bearer(token))
    assert retried.status_code == 202 and retried.get_json()["status"] == "queued"
    # Retried means queued under the job's own id: the session's worker runs it to a result.
    assert wait_for_job(jid, timeout=120)["status"] == "succeeded"  # an image takes well under a second
    assert client.get(f"/api/v1/clips/{jid}", headers=bearer(token)).get_json()["status"] == "succeeded"
    assert client.delete(f"/api/v1/clips/{jid}", headers=bearer(token)).status_code == 204
    assert client.get(f"/api/v1/clips/{jid}", headers=bearer(token)).status_code == 404
    assert get_db()[f"{UPLOADS}.files"].count_documents({"_id": fid}) == 0


def test_retry_after_a_failure_runs_the_job_again_to_a_result(client, token, alice, worker):
    data = png(size=(320, 240))
    job = stored_job(data, "r.png", owner=alice.id)
    jid = str(job["_id"])
    run = jobs.claim(jid, "an earlier worker")
    jobs.fail(jid, run["run_id"], "the worker ran out of disk")  # a failure the user may retry
    retried = client.post(f"/api/v1/clips/{jid}/retry", headers=bearer(token))
    assert retried.status_code == 202 and retried.get_json()["status"] == "queued"
    # The retried job is on the queue under its own id: the session's worker runs it to a result.
    done = wait_for_job(jid, timeout=120)
    assert done["status"] == "succeeded", done["error"]
    assert done["attempts"] == 1 and done["error"] is None and done["result"]["frames"] == 1
    st = client.get(f"/api/v1/clips/{jid}", headers=bearer(token)).get_json()
    assert st["status"] == "succeeded" and st["summary"] is not None
    assert client.delete(f"/api/v1/clips/{jid}", headers=bearer(token)).status_code == 204


def test_explain_this_face_through_the_real_worker(client, token, alice, worker, asset, tmp_path):
    clip = seed_clip(alice.id, frames=30, fps=25.0, n_persons=2, seed=5, media_dir=tmp_path)
    person = clip["result"]["persons"][0]
    face = sorted((asset("mask_crops") / "with_mask").glob("*.jpg"))[0].read_bytes()
    storage.delete(RESULTS, person["crop_id"])  # the person's stored face: a real masked crop
    storage.put(RESULTS, io.BytesIO(face), "face.jpg", content_type="image/jpeg",
                metadata={"job_id": clip["_id"], "role": "crop"}, file_id=person["crop_id"])
    url = f"/api/v1/clips/{clip['_id']}/persons/{person['track_id']}/explanation"
    none = client.get(url, headers=bearer(token)).get_json()
    assert none == {"track_id": person["track_id"], "status": "none"}
    asked = client.post(url, headers=bearer(token))
    assert asked.status_code == 202 and asked.get_json()["status"] == "pending"
    done = wait_until(lambda: (r := client.get(url, headers=bearer(token)).get_json())["status"] != "pending"
                      and r)
    assert done["status"] == "done", done
    assert done["label"] == "masked" and sum(done["probs"]) == pytest.approx(1, abs=0.01)
    for key in ("gradcam_url", "occlusion_url"):
        assert done[key] == f"/api/v1/clips/{clip['_id']}/files/{done[key.replace('_url', '_id')]}"
        image = Image.open(io.BytesIO(client.get(done[key], headers=bearer(token)).data))
        assert image.size == (224, 224)
    again = client.post(url, headers=bearer(token))
    assert again.status_code == 200 and again.get_json()["gradcam_id"] == done["gradcam_id"]  # not redone
    missing = client.post(f"/api/v1/clips/{clip['_id']}/persons/99999/explanation", headers=bearer(token))
    assert missing.status_code == 404 and "no person 99999" in missing.get_json()["message"]


def test_admin_token_sees_everyone(client, admin, video):
    t, _ = users.create_token(admin.id, "admin script")
    assert client.get(f"/api/v1/clips/{video['_id']}", headers=bearer(t)).status_code == 200
    stranger = users.create(unique("eve"), "correct horse battery")
    t2, _ = users.create_token(stranger.id, "eve")
    assert client.get(f"/api/v1/clips/{video['_id']}", headers=bearer(t2)).status_code == 404
    assert str(video["_id"]) not in client.get("/api/v1/clips", headers=bearer(t2)).get_data(as_text=True)


def test_an_admin_can_cancel_and_delete_someone_elses_clip(client, admin, alice, signed_in):
    data = png(size=(320, 240))
    job = stored_job(data, "a.png", owner=alice.id)
    fid = job["input_id"]  # not enqueued: no worker can take it meanwhile
    jid = str(job["_id"])
    t, _ = users.create_token(admin.id, "admin writes")
    cancelled = client.post(f"/api/v1/clips/{jid}/cancel", headers=bearer(t))
    assert cancelled.status_code == 202 and cancelled.get_json()["status"] == "cancelled"
    assert jobs.get(jid)["status"] == "cancelled"
    assert client.delete(f"/api/v1/clips/{jid}", headers=bearer(t)).status_code == 204
    assert get_db().jobs.count_documents({"_id": job["_id"]}) == 0
    assert get_db()[f"{UPLOADS}.files"].count_documents({"_id": fid}) == 0
    # And through the pages, with the admin's session.
    other = stored_job(data, "b.png", owner=alice.id)
    c = signed_in(admin)
    assert c.post(f"/clips/{other['_id']}/cancel", data={"csrf_token": c.csrf}).status_code == 303
    assert jobs.get(other["_id"])["status"] == "cancelled"
    assert c.post(f"/clips/{other['_id']}/delete", data={"csrf_token": c.csrf}).status_code == 303
    assert get_db().jobs.count_documents({"_id": other["_id"]}) == 0


def test_openapi_documents_exactly_the_routes(settings, client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    app = create_app(settings)
    routes = set()
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/"):
            continue
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule[len("/api/v1"):])
        path = path.replace("{job_id}", "{id}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method.lower()))
    documented = {(p, m) for p, ops in spec["paths"].items() for m in ops}
    assert routes == documented
    for path, ops in spec["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for op in ops.values():
            assert names <= {p["name"] for p in op["parameters"] if p["in"] == "path"}, path
            assert op["summary"] and op["responses"]
    text = client.get("/api/v1/openapi.json").get_data(as_text=True)
    refs = re.findall(r'"#/components/(\w+)/(\w+)"', text)
    for kind, name in refs:
        assert name in spec["components"][kind], name
