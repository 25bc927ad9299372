"""Deleting an account from /settings: password and CSRF required; every clip of the user goes with all
its data, the tokens and the user; other users' clips stay; a running clip is stopped first."""

from __future__ import annotations

import io

import pytest

from shared import jobs, storage
from shared.db import RESULTS, UPLOADS, get_db
from tests.web.conftest import PASSWORD, client_for, login, unique
from tests.web.seed import jpeg, seed_clip
from web import throttle, users


def stored(job: dict) -> dict[str, int]:
    """How many documents of each kind the clip has (job, buckets, pages, GridFS files and chunks)."""
    db, jid = get_db(), job["_id"]
    prefix = {"_id": {"$regex": f"^{jid}"}}
    counts = {"job": db.jobs.count_documents({"_id": jid})}
    for name in ("frames", "frame_rows", "persons", "bins", "details", "job_files"):
        counts[name] = db[name].count_documents(prefix)
    counts["results.files"] = db[f"{RESULTS}.files"].count_documents({"metadata.job_id": jid})
    counts["uploads.files"] = db[f"{UPLOADS}.files"].count_documents({"_id": job["input_id"]})
    counts["uploads.chunks"] = db[f"{UPLOADS}.chunks"].count_documents({"files_id": job["input_id"]})
    ids = [job["result"]["output_id"], job["result"]["thumbnail_id"],
           *(p["crop_id"] for p in job["result"]["persons"] if p.get("crop_id"))] if job.get("result") else []
    counts["results.chunks"] = sum(db[f"{RESULTS}.chunks"].count_documents({"_id": {"$regex": f"^{i}:"}})
                                   for i in ids)
    return counts


@pytest.fixture
def dora(settings):
    return users.create(unique("dora"), PASSWORD)


@pytest.fixture
def ed(settings):
    return users.create(unique("ed"), PASSWORD)


def test_deleting_an_account_removes_its_clips_files_frames_tokens_and_nothing_else(app, dora, ed, tmp_path):
    video = seed_clip(dora.id, frames=600, n_persons=5, seed=3, filename="yard.mp4", media_dir=tmp_path)
    image = seed_clip(dora.id, kind="image", n_persons=2, seed=4, filename="gate.jpg")
    others = seed_clip(ed.id, frames=50, n_persons=2, seed=5, filename="eds.mp4", media_dir=tmp_path)
    token, _ = users.create_token(dora.id, "script")
    before = {"video": stored(video), "image": stored(image), "others": stored(others)}
    for counts in before.values():  # the seeded clips really have data of every kind
        assert all(n > 0 for k, n in counts.items() if k != "job_files"), counts
    assert before["video"]["frames"] >= 2 and before["video"]["results.files"] == 7  # 5 crops, output, poster

    c = client_for(app, dora)
    assert c.get(f"/clips/{video['_id']}").status_code == 200  # a view, kept in the audit trail
    # No CSRF token, or a wrong password: refused, nothing deleted.
    resp = c.post("/settings/delete", data={"password": PASSWORD})
    assert resp.status_code == 400 and "Reload the page and try again" in resp.get_data(as_text=True)
    # (from an address of its own: failures count against the address, as failed logins do)
    elsewhere = {"REMOTE_ADDR": "192.0.2.77"}
    resp = c.post("/settings/delete", data={"password": "not my password", "csrf_token": c.csrf},
                  environ_base=elsewhere)
    assert resp.status_code == 400 and "nothing was deleted" in resp.get_data(as_text=True)
    assert users.get(dora.id) is not None and stored(video) == before["video"]

    resp = c.post("/settings/delete", data={"password": PASSWORD, "csrf_token": c.csrf})
    assert resp.status_code == 303 and resp.headers["Location"].startswith("/login")
    page = c.get(resp.headers["Location"]).get_data(as_text=True)
    assert "Your account is deleted, with 2 clips and all their data." in page
    assert c.get("/settings").status_code == 302  # logged out

    db = get_db()
    assert users.get(dora.id) is None and db.users.count_documents({"username": dora.username}) == 0
    assert db.tokens.count_documents({"user_id": dora.id}) == 0
    bearer = {"Authorization": f"Bearer {token}"}
    assert app.test_client().get("/api/v1/me", headers=bearer).status_code == 401
    assert db.jobs.count_documents({"owner": dora.id}) == 0
    for name in ("video", "image"):
        left = {k: n for k, n in stored((video, image)[name == "image"]).items() if n}
        assert left == {}, (name, left)
    assert stored(others) == before["others"]  # ed's clip is untouched and still his
    assert client_for(app, ed).get(f"/clips/{others['_id']}").status_code == 200
    assert login(app.test_client(), dora.username, environ_base=elsewhere).status_code == 400  # gone

    # The audit trail keeps who looked at what, the clips' deletion and the account's.
    trail = list(db.audit.find({"clip_id": str(video["_id"])}).sort("at", 1))
    assert [(e["action"], e["detail"]) for e in trail] == [
        ("view", "results page"), ("delete", "with the account")]
    gone = db.audit.find_one({"action": "account_delete", "user_id": dora.id})
    assert gone["username"] == dora.username and gone["detail"] == "2 clips" and gone["clip_id"] is None


def _queued(owner: str, filename: str) -> dict:
    """A clip waiting for a worker (never enqueued: the test plays the worker)."""
    fid = storage.put(UPLOADS, io.BytesIO(jpeg()), filename, content_type="image/jpeg")
    return jobs.create(owner=owner, filename=filename, kind="image", input_id=fid, size=10,
                       content_type="image/jpeg")


def test_a_running_clip_is_stopped_first_and_the_account_deleted_once_it_has(app, dora):
    running = _queued(dora.id, "busy.jpg")
    run = jobs.claim(running["_id"], worker="test")
    waiting = _queued(dora.id, "waiting.jpg")
    done = seed_clip(dora.id, kind="image", n_persons=1, crops=False)
    c = client_for(app, dora)

    resp = c.post("/settings/delete", data={"password": PASSWORD, "csrf_token": c.csrf})
    assert resp.status_code == 409
    text = resp.get_data(as_text=True)
    assert "Nothing was deleted yet: busy.jpg is still being analysed." in text
    assert "enter your password again in a few seconds" in text
    # Nothing is deleted, the running clip is asked to stop and the queued one will never start.
    assert users.get(dora.id) is not None
    assert jobs.get(running["_id"])["cancel_requested"] is True
    assert jobs.get(waiting["_id"])["status"] == "cancelled"
    assert jobs.get(done["_id"])["status"] == "succeeded"

    jobs.mark_cancelled(running["_id"], run["run_id"])  # the worker stops, as it does within a second
    resp = c.post("/settings/delete", data={"password": PASSWORD, "csrf_token": c.csrf})
    assert resp.status_code == 303
    assert users.get(dora.id) is None
    assert get_db().jobs.count_documents({"owner": dora.id}) == 0
    for job in (running, waiting):
        assert get_db()[f"{UPLOADS}.files"].count_documents({"_id": job["input_id"]}) == 0


def test_wrong_passwords_are_throttled_like_failed_logins(app, dora):
    c = client_for(app, dora)
    there = {"REMOTE_ADDR": "192.0.2.78"}
    for _ in range(throttle.ACCOUNT_LIMIT):
        resp = c.post("/settings/delete", data={"password": "guess", "csrf_token": c.csrf},
                      environ_base=there)
        assert resp.status_code == 400
    resp = c.post("/settings/delete", data={"password": PASSWORD, "csrf_token": c.csrf}, environ_base=there)
    assert resp.status_code == 429 and "Too many wrong passwords" in resp.get_data(as_text=True)
    assert users.get(dora.id) is not None
