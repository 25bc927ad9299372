"""Retention: a clip's policy from the settings, the account or the clip; the sweep, sent by a real
Celery beat to a real worker, deletes exactly what has expired and records it; the pages show when."""

from __future__ import annotations

import io
import re
import time
from datetime import timedelta

import pytest

from shared import jobs, result_docs, retention, storage
from shared.db import RESULTS, UPLOADS, get_db
from shared.errors import NotFound
from tests.conftest import ARTIFACTS, RUN_TAG, WorkerProcess
from tests.web.conftest import PASSWORD, client_for, new_app, unique
from tests.web.seed import seed_clip
from web import users

SECOND = 1 / 86400  # a day's fraction: periods of seconds


@pytest.fixture(scope="module")
def beat(settings, tmp_path_factory):
    """Celery beat sending the sweep every second, with the maintenance worker that runs it."""
    schedule = tmp_path_factory.mktemp("beat") / "schedule"
    w = WorkerProcess(ARTIFACTS / "logs" / f"beat-{RUN_TAG}.log", env={"RETENTION_SWEEP_S": "1"},
                      name="beat", queues="maintenance", args=("-B", "-s", str(schedule)))
    w.start()
    yield w
    w.stop()


@pytest.fixture
def owner(settings):
    return users.create(unique("ret"), PASSWORD)


def stored(job: dict) -> dict:
    """Everything of the clip in the database, by kind: what a deletion must (or must not) remove."""
    db, jid = get_db(), job["_id"]
    layout = job["result"]["layout"]
    return {
        "upload": db[f"{UPLOADS}.files"].count_documents({"_id": job["input_id"]}),
        "results files": db[f"{RESULTS}.files"].count_documents({"metadata.job_id": jid}),
        "results chunks": sum(db[f"{RESULTS}.chunks"].count_documents({"files_id": f["_id"]})
                              for f in db[f"{RESULTS}.files"].find({"metadata.job_id": jid}, {"_id": 1})),
        "frame buckets": db[result_docs.FRAMES].count_documents(
            {"_id": {"$in": [result_docs.bucket_id(jid, n) for n in range(layout["buckets"])]}}),
        "frame rows": db[result_docs.ROWS].count_documents(
            {"_id": {"$in": [result_docs.rows_id(jid, n) for n in range(layout["buckets"])]}}),
        "person pages": db[result_docs.PERSONS].count_documents(
            {"_id": {"$in": [result_docs.page_id(jid, p) for p in range(1, layout["person_pages"] + 1)]}}),
        "bins": db[result_docs.BINS].count_documents(
            {"_id": {"$in": [result_docs.bins_id(jid, u) for u in result_docs.UNITS]}}),
        "job": db.jobs.count_documents({"_id": jid}),
    }


def expire_in(job: dict, seconds: float, keep_statistics: bool) -> dict:
    """Give the clip a period ending `seconds` from now (periods count from the upload)."""
    age = (jobs.now() - job["created_at"]).total_seconds()
    return retention.set_for_clip(job["_id"], (age + seconds) * SECOND, keep_statistics)


def wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not {what} after {timeout}s")


def expire_entries(job) -> list[dict]:
    return list(get_db().audit.find({"clip_id": str(job["_id"]), "action": retention.EXPIRE}))


def test_the_sweep_deletes_exactly_the_expired_parts_and_leaves_the_rest(beat, owner, tmp_path):
    footage = seed_clip(owner.id, frames=120, n_persons=3, filename="till.mp4", media_dir=tmp_path)
    whole = seed_clip(owner.id, frames=120, n_persons=3, filename="door.mp4", media_dir=tmp_path, seed=3)
    later = seed_clip(owner.id, frames=120, n_persons=3, filename="later.mp4", media_dir=tmp_path, seed=4)
    kept = seed_clip(owner.id, frames=120, n_persons=3, filename="kept.mp4", media_dir=tmp_path, seed=5)
    before = {j["filename"]: stored(j) for j in (footage, whole, later, kept)}
    assert all(v > 0 for b in before.values() for v in b.values())
    retention.set_for_clip(kept["_id"], None, False)
    expire_in(later, 3600, False)
    expire_in(footage, 2, True)
    expire_in(whole, 2, False)

    wait(lambda: get_db().jobs.count_documents({"_id": whole["_id"]}) == 0, 60, "whole clip deleted")
    done = wait(lambda: (jobs.get(footage["_id"]).get("retention") or {}).get("footage_deleted_at")
                and jobs.get(footage["_id"]), 60, "footage deleted")

    # Footage only: the upload and every results file (video, poster, crops) with their chunks are
    # gone; frame data, rows, people, bins and the job stay.
    after = stored(footage)
    assert after == {**before["till.mp4"], "upload": 0, "results files": 0, "results chunks": 0}
    with pytest.raises(NotFound):
        storage.open_file(UPLOADS, footage["input_id"])
    assert done["status"] == "succeeded" and done["result"]["output_id"] is None
    assert done["result"]["people"] == footage["result"]["people"]
    assert len(result_docs.frames_page(footage["_id"], 0, 120)) == 120

    # The whole clip: nothing of it is left.
    assert set(stored(whole).values()) == {0}

    # The clips whose period has not passed (or that have none) are untouched.
    assert stored(later) == before["later.mp4"] and stored(kept) == before["kept.mp4"]

    # Each deletion recorded once, by the policy, naming what went.
    [f] = expire_entries(footage)
    [w] = expire_entries(whole)
    assert f["username"] == "retention policy" and f["user_id"] is None and f["owner"] == owner.id
    assert f["detail"].startswith("footage deleted, statistics kept")
    assert w["detail"].startswith("clip deleted")
    assert not expire_entries(later) and not expire_entries(kept)


def test_a_footage_only_policy_deletes_a_failed_clip_whole_and_never_touches_running_ones(settings, owner):
    data = b"not really a video"
    ids = []
    for name in ("failed.mp4", "running.mp4"):
        fid = storage.put(UPLOADS, io.BytesIO(data), name, content_type="video/mp4",
                          metadata={"owner": owner.id})
        ids.append(jobs.create(owner=owner.id, filename=name, kind="video", input_id=fid, size=len(data),
                               content_type="video/mp4"))
    failed, running = ids
    run = jobs.claim(failed["_id"], worker="t")["run_id"]
    jobs.fail(failed["_id"], run, "broken file")
    jobs.claim(running["_id"], worker="t")
    for j in (failed, running):
        retention.set_for_clip(j["_id"], 1 * SECOND, True)
    counts = retention.sweep(jobs.now() + timedelta(seconds=5))
    assert counts["clip"] >= 1
    assert get_db().jobs.count_documents({"_id": failed["_id"]}) == 0  # no statistics to keep
    assert get_db()[f"{UPLOADS}.files"].count_documents({"_id": failed["input_id"]}) == 0
    assert jobs.get(running["_id"])["status"] == "running"  # expired but busy: the next sweep
    assert storage.open_file(UPLOADS, running["input_id"]).length == len(data)


def test_new_uploads_get_the_accounts_policy_else_the_settings(settings, owner, app_client):
    t = jobs.now()
    default = retention.for_owner(owner.id, t)
    assert default["source"] == "default" and default["days"] == settings.retention_days
    assert default["delete_at"] == t + timedelta(days=settings.retention_days)
    c = app_client(owner)
    r = c.post("/settings/retention", data={"csrf_token": c.csrf, "retention_days": "7",
                                            "keep_statistics": "1"})
    assert r.status_code == 303
    own = retention.for_owner(owner.id, t)
    assert (own["days"], own["keep_statistics"], own["source"]) == (7.0, True, "account")
    assert own["delete_at"] == t + timedelta(days=7)
    assert "deleted 7 days after their upload, footage only" in c.get("/settings").get_data(as_text=True)
    c.post("/settings/retention", data={"csrf_token": c.csrf, "retention_days": ""})
    assert retention.for_owner(owner.id, t)["delete_at"] is None  # blank: kept until deleted
    c.post("/settings/retention", data={"csrf_token": c.csrf, "use_default": "1"})
    assert retention.for_owner(owner.id, t)["source"] == "default"
    r = c.post("/settings/retention", data={"csrf_token": c.csrf, "retention_days": "-3"},
               follow_redirects=True)
    assert "between 0 and" in r.get_data(as_text=True)


def test_the_clip_page_shows_when_each_part_goes_and_changes_it(settings, owner, app_client, tmp_path):
    clip = seed_clip(owner.id, frames=50, n_persons=2, media_dir=tmp_path)
    c = app_client(owner)
    html = c.get(f"/clips/{clip['_id']}").get_data(as_text=True)
    at = (clip["created_at"] + timedelta(days=settings.retention_days)).strftime("%Y-%m-%d %H:%M UTC")
    schedule = re.search(r'id="retention-schedule">(.*?)</ul>', html, re.S).group(1)
    assert schedule.count(f"deleted {at}") == 2  # footage and statistics alike, by default
    r = c.post(f"/clips/{clip['_id']}/privacy", data={"csrf_token": c.csrf, "retention_days": "2",
                                                     "keep_statistics": "1"})
    assert r.status_code == 303
    job = jobs.get(clip["_id"])
    assert job["retention"]["delete_at"] == clip["created_at"] + timedelta(days=2)
    schedule = re.search(r'id="retention-schedule">(.*?)</ul>',
                         c.get(f"/clips/{clip['_id']}").get_data(as_text=True), re.S).group(1)
    at2 = job["retention"]["delete_at"].strftime("%Y-%m-%d %H:%M UTC")
    assert f"deleted {at2}" in schedule and "kept until the clip is deleted" in schedule
    change = get_db().audit.find_one({"clip_id": str(clip["_id"]), "action": "change"})
    assert change["username"] == owner.username and "retention 2 days, statistics kept" in change["detail"]
    # The API: the same settings, validated.
    api = c.put(f"/api/v1/clips/{clip['_id']}/privacy", json={"retention_days": "soon"},
                headers={"X-CSRFToken": c.csrf})
    assert api.status_code == 400 and "number of days" in api.get_json()["message"]
    api = c.put(f"/api/v1/clips/{clip['_id']}/privacy", json={"retention_days": None},
                headers={"X-CSRFToken": c.csrf})
    assert api.status_code == 200, api.get_data(as_text=True)
    body = api.get_json()["privacy"]
    assert body["retention_days"] is None and body["delete_at"] is None and body["keep_statistics"] is True


def test_after_its_footage_is_deleted_a_clip_serves_numbers_but_no_file(settings, owner, app_client,
                                                                         tmp_path):
    clip = seed_clip(owner.id, frames=50, n_persons=2, media_dir=tmp_path)
    retention.set_for_clip(clip["_id"], 1 * SECOND, True)
    assert retention.expire(jobs.get(clip["_id"])) == "footage"
    c, cid = app_client(owner), clip["_id"]
    page = c.get(f"/clips/{cid}").get_data(as_text=True)
    assert "footage of this clip was deleted" in page or "footage was deleted" in page
    assert "/files/" not in page and "/poster" not in page and "download/annotated" not in page
    for url in (f"/clips/{cid}/video", f"/clips/{cid}/original", f"/clips/{cid}/download/annotated",
                f"/api/v1/clips/{cid}/download/original"):
        assert c.get(url).status_code == 410, url
    assert c.get(f"/clips/{cid}/download/persons.csv").status_code == 200
    assert c.get(f"/api/v1/clips/{cid}/results").status_code == 200
    r = c.put(f"/api/v1/clips/{cid}/privacy", json={"retention_days": 30}, headers={"X-CSRFToken": c.csrf})
    assert r.status_code == 409


@pytest.fixture
def app_client(settings):
    app = new_app(settings)
    return lambda user: client_for(app, user)
