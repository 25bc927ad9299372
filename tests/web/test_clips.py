"""The clips list and uploads: ownership, content checks, limits, CSRF, retry/cancel/delete."""

from __future__ import annotations

import io
import os
import re

import pytest

from shared import jobs, storage
from shared.db import RESULTS, UPLOADS, get_db
from tests.conftest import wait_for_job
from tests.media import make_clip
from tests.web.conftest import csrf_of, login, new_app
from tests.web.seed import jpeg, seed_clip

MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


def stored_counts() -> tuple[int, int, int]:
    db = get_db()
    return (db[f"{UPLOADS}.files"].count_documents({}), db[f"{UPLOADS}.chunks"].count_documents({}),
            db.jobs.count_documents({}))


@pytest.fixture(scope="module")
def clip_bytes(tmp_path_factory) -> bytes:
    return make_clip(tmp_path_factory.mktemp("clip") / "walk.mp4", frames=12).read_bytes()


def xhr(c, data, **headers):
    return c.post("/upload", data=data, content_type="multipart/form-data",
                  headers={"X-CSRFToken": c.csrf, "Accept": "application/json",
                           "X-Requested-With": "fetch", **headers})


def test_list_shows_only_my_clips_and_admins_see_all(signed_in, alice, bob, admin, video):
    seed_clip(bob.id, kind="image", n_persons=1, filename="bobs-secret.jpg", crops=False)
    mine = signed_in(alice).get("/").get_data(as_text=True)
    assert video["filename"] in mine and "bobs-secret.jpg" not in mine
    assert f'/clips/{video["_id"]}/poster' in mine  # thumbnail
    assert f'{round(video["result"]["compliance_rate"] * 100)}%' in mine
    assert "0:10" in mine  # duration of the 250-frame clip
    his = signed_in(bob).get("/").get_data(as_text=True)
    assert "bobs-secret.jpg" in his and str(video["_id"]) not in his
    everyone = signed_in(admin).get("/").get_data(as_text=True)
    assert "bobs-secret.jpg" in everyone and str(video["_id"]) in everyone
    assert f"owner {alice.id}" in everyone


def test_row_fragment_is_the_owners_only(signed_in, alice, bob, video):
    row = signed_in(alice).get(f"/clips/{video['_id']}/row")
    assert row.status_code == 200 and 'class="clip"' in row.get_data(as_text=True)
    assert signed_in(bob).get(f"/clips/{video['_id']}/row").status_code == 404


def test_form_upload_streams_into_gridfs_and_queues_a_job(signed_in, alice, clip_bytes, worker):
    c = signed_in(alice)
    data = {"csrf_token": c.csrf, "file": (io.BytesIO(clip_bytes), "cams/door 1.mp4")}
    resp = c.post("/upload", data=data, content_type="multipart/form-data")
    assert resp.status_code == 303
    job_id = resp.headers["Location"].rsplit("/", 1)[1]
    job = jobs.get(job_id)
    assert job["owner"] == alice.id and job["filename"] == "cams/door 1.mp4"  # the folder upload's path
    assert job["kind"] == "video" and job["content_type"] == "video/mp4" and job["size"] == len(clip_bytes)
    # Queued under its own id: the session's worker takes it and runs it to a result.
    done = wait_for_job(job_id, timeout=240)
    assert done["status"] == "succeeded" and done["result"]["frames"] == 12, done["error"]
    with storage.open_file(UPLOADS, job["input_id"]) as f:
        assert f.read() == clip_bytes
    page = c.get(resp.headers["Location"]).get_data(as_text=True)
    assert "door 1.mp4" in page


def test_xhr_upload_of_several_files_answers_json(signed_in, alice, clip_bytes):
    c = signed_in(alice)
    resp = xhr(c, {"file": [(io.BytesIO(clip_bytes), "a.mp4"), (io.BytesIO(jpeg()), "b.jpg")]})
    assert resp.status_code == 201, resp.get_json()
    clips = resp.get_json()["clips"]
    assert [(x["filename"], x["kind"]) for x in clips] == [("a.mp4", "video"), ("b.jpg", "image")]
    assert all(x["urls"]["page"] == f"/clips/{x['id']}" for x in clips)
    listing = c.get("/").get_data(as_text=True)
    assert all(x["id"] in listing for x in clips)


def test_type_is_checked_by_content_not_name(signed_in, alice, clip_bytes):
    c = signed_in(alice)
    before = stored_counts()
    resp = xhr(c, {"file": (io.BytesIO(b"MZ\x90\x00 this is an exe" * 50), "holiday.mp4")})
    assert resp.status_code == 415
    body = resp.get_json()
    assert body["error"] == "unsupported_type" and "not a supported video or image" in body["message"]
    assert stored_counts() == before
    renamed = xhr(c, {"file": (io.BytesIO(clip_bytes), "looks-like.txt")})
    assert renamed.status_code == 201 and renamed.get_json()["clips"][0]["kind"] == "video"


def test_empty_and_missing_files_are_refused(signed_in, alice):
    c = signed_in(alice)
    before = stored_counts()
    empty = xhr(c, {"file": (io.BytesIO(b""), "empty.mp4")})
    assert empty.status_code == 400 and empty.get_json() == {
        "error": "empty_file", "message": "The file is empty.", "clips": [],
        "errors": [{"filename": "empty.mp4", "error": "empty_file", "message": "The file is empty."}]}
    missing = xhr(c, {"note": "no file here"})
    assert missing.status_code == 400 and missing.get_json()["error"] == "missing_file"
    form = c.post("/upload", data={"csrf_token": c.csrf}, content_type="multipart/form-data",
                  follow_redirects=True)
    assert "Choose a file to upload." in form.get_data(as_text=True)
    form = c.post("/upload", data={"csrf_token": c.csrf, "file": (io.BytesIO(b""), "e.jpg")},
                  content_type="multipart/form-data", follow_redirects=True)
    assert "e.jpg: The file is empty." in form.get_data(as_text=True)
    assert stored_counts() == before


@pytest.mark.parametrize("extra", [3 * 65536, 1000], ids=["content-length", "while-streaming"])
def test_oversize_upload_is_413_and_leaves_nothing(settings, alice, extra):
    limit = 65536
    app = new_app(settings, UPLOAD_MAX_BYTES=limit)
    c = app.test_client()
    login(c, alice.username)
    c.csrf = csrf_of(c)
    before = stored_counts()
    body = MP4_HEAD + b"\x00" * (limit + extra - len(MP4_HEAD))
    resp = xhr(c, {"file": (io.BytesIO(body), "big.mp4")})
    assert resp.status_code == 413
    assert resp.get_json() == {"error": "too_large",
                               "message": "The file is too large: uploads are limited to 64.0 KB."}
    assert stored_counts() == before
    page = c.post("/upload", data={"csrf_token": c.csrf, "file": (io.BytesIO(body), "big.mp4")},
                  content_type="multipart/form-data")
    assert page.status_code == 413 and "uploads are limited to 64.0 KB" in page.get_data(as_text=True)
    assert stored_counts() == before


def test_upload_needs_csrf_before_any_byte_is_stored(signed_in, alice, clip_bytes):
    c = signed_in(alice)
    before = stored_counts()
    form = "multipart/form-data"
    none = c.post("/upload", data={"file": (io.BytesIO(clip_bytes), "x.mp4")}, content_type=form)
    assert none.status_code == 400 and "CSRF token is missing" in none.get_data(as_text=True)
    wrong = c.post("/upload", data={"file": (io.BytesIO(clip_bytes), "x.mp4")}, content_type=form,
                   headers={"X-CSRFToken": "forged", "Accept": "application/json"})
    assert wrong.status_code == 400 and wrong.get_json()["error"] == "csrf_failed"
    assert stored_counts() == before


def test_upload_needs_login(client, clip_bytes):
    before = stored_counts()
    resp = client.post("/upload", data={"file": (io.BytesIO(clip_bytes), "x.mp4")},
                       content_type="multipart/form-data", headers={"Accept": "application/json"})
    assert resp.status_code == 401 and resp.get_json()["error"] == "unauthorized"
    page = client.post("/upload", data={"file": (io.BytesIO(clip_bytes), "x.mp4")},
                       content_type="multipart/form-data")
    assert page.status_code == 302 and "/login" in page.headers["Location"]
    assert stored_counts() == before


def _job(owner: str, failed: bool = True) -> dict:
    """A job that no worker will see (it is never enqueued): failed, or queued."""
    fid = storage.put(UPLOADS, io.BytesIO(jpeg()), "f.jpg", content_type="image/jpeg")
    job = jobs.create(owner=owner, filename="f.jpg", kind="image", input_id=fid, size=10,
                      content_type="image/jpeg")
    return jobs.fail(job["_id"], None, "the file could not be decoded") if failed else job


def test_retry_cancel_delete_for_the_owner_only(signed_in, alice, bob):
    a, b = signed_in(alice), signed_in(bob)
    failed, queued = _job(alice.id), _job(alice.id, failed=False)
    fid, qid = str(failed["_id"]), str(queued["_id"])
    assert "the file could not be decoded" in a.get(f"/clips/{fid}").get_data(as_text=True)
    for action in ("retry", "cancel", "delete"):
        for jid in (fid, qid):
            assert b.post(f"/clips/{jid}/{action}", data={"csrf_token": b.csrf}).status_code == 404
    assert jobs.get(fid)["status"] == "failed" and jobs.get(qid)["status"] == "queued"
    assert a.post(f"/clips/{fid}/retry", data={}).status_code == 400  # CSRF
    resp = a.post(f"/clips/{fid}/retry", data={"csrf_token": a.csrf}, follow_redirects=True)
    assert "is queued again" in resp.get_data(as_text=True)
    assert jobs.get(fid)["error"] != "the file could not be decoded"  # cleared (a worker may run it now)
    resp = a.post(f"/clips/{qid}/cancel", data={"csrf_token": a.csrf}, follow_redirects=True)
    assert "Cancelling f.jpg" in resp.get_data(as_text=True)
    assert jobs.get(qid)["status"] == "cancelled"
    again = a.post(f"/clips/{qid}/cancel", data={"csrf_token": a.csrf}, follow_redirects=True)
    assert "it cannot be cancelled" in again.get_data(as_text=True)
    resp = a.post(f"/clips/{qid}/delete", data={"csrf_token": a.csrf}, follow_redirects=True)
    assert "f.jpg is deleted" in resp.get_data(as_text=True)
    assert get_db().jobs.count_documents({"_id": queued["_id"]}) == 0


def test_delete_removes_files_statistics_and_pages(signed_in, alice, bob, tmp_path):
    job = seed_clip(alice.id, frames=1200, n_persons=150, seed=5, media_dir=tmp_path)
    jid = job["_id"]
    a = signed_in(alice)
    assert a.get(f"/clips/{jid}").status_code == 200
    db = get_db()
    prefix = {"$regex": f"^{jid}:"}
    # A crowd of ~100 faces a frame in buckets of frames 0-499, 500-999, 1000-1199 (with any parts).
    frames = list(db.frames.find({"_id": prefix}, {"parts": 1}))
    heads = [d for d in frames if "parts" in d]
    assert len(heads) == 3 and len(frames) == sum(d["parts"] for d in heads)
    assert db.persons.count_documents({"_id": prefix}) == 3  # two pages and the violations
    assert db.bins.count_documents({"_id": prefix}) == 2
    assert db.frame_rows.count_documents({"_id": prefix}) == 3  # the CSV rows of each bucket
    assert db[f"{RESULTS}.files"].count_documents({"metadata.job_id": jid}) == 152  # faces, output, poster
    resp = a.post(f"/clips/{jid}/delete", data={"csrf_token": a.csrf}, follow_redirects=True)
    assert "is deleted" in resp.get_data(as_text=True)
    assert db.jobs.count_documents({"_id": jid}) == 0
    for name in ("frames", "frame_rows", "persons", "bins", "job_files"):
        assert db[name].count_documents({"_id": {"$regex": f"^{jid}"}}) == 0, name
    assert db[f"{RESULTS}.files"].count_documents({"metadata.job_id": jid}) == 0
    output_chunks = {"_id": {"$regex": f"^{job['result']['output_id']}:"}}
    assert db[f"{RESULTS}.chunks"].count_documents(output_chunks) == 0
    assert db[f"{UPLOADS}.files"].count_documents({"_id": job["input_id"]}) == 0
    assert db[f"{UPLOADS}.chunks"].count_documents({"files_id": job["input_id"]}) == 0
    assert a.get(f"/clips/{jid}").status_code == 404
    assert a.get(f"/clips/{jid}/video").status_code == 404


def test_running_clip_cannot_be_deleted(signed_in, alice):
    job = _job(alice.id, failed=False)
    jobs.claim(job["_id"], worker="test")
    a = signed_in(alice)
    resp = a.post(f"/clips/{job['_id']}/delete", data={"csrf_token": a.csrf}, follow_redirects=True)
    assert "cancel it before deleting it" in resp.get_data(as_text=True)
    assert jobs.get(job["_id"])["status"] == "running"
    a.post(f"/clips/{job['_id']}/cancel", data={"csrf_token": a.csrf})
    assert jobs.get(job["_id"])["cancel_requested"] is True


def test_streamed_multipart_keeps_every_byte(signed_in, alice):
    """Bytes that look like multipart delimiters, across the parser's 256 KB reads, arrive intact."""
    tricky = b"".join(b"\r\n--" + os.urandom(37) + b"\r\n\r\n-" for _ in range(40_000))
    body = MP4_HEAD + tricky + os.urandom(123_457)
    c = signed_in(alice)
    resp = xhr(c, {"note": "before", "file": (io.BytesIO(body), "tricky.mp4")})
    assert resp.status_code == 201
    job = jobs.get(resp.get_json()["clips"][0]["id"])
    assert job["size"] == len(body)
    with storage.open_file(UPLOADS, job["input_id"]) as f:
        assert f.read() == body


def test_the_clips_list_pages_by_fifty_newest_first(signed_in, settings):
    from tests.web.conftest import PASSWORD, unique
    from web import users
    from web.views.clips import LIST_PAGE

    user = users.create(unique("pages"), PASSWORD)
    for i in range(LIST_PAGE + 5):
        fid = storage.put(UPLOADS, io.BytesIO(b"x"), f"clip-{i:03d}.mp4", content_type="video/mp4")
        jobs.create(owner=user.id, filename=f"clip-{i:03d}.mp4", kind="video", input_id=fid, size=1,
                    content_type="video/mp4")
    c = signed_in(user)
    first = c.get("/").get_data(as_text=True)
    names = re.findall(r"clip-(\d{3})\.mp4</a>", first)
    assert len(set(names)) == LIST_PAGE and names[0] == f"{LIST_PAGE + 4:03d}"  # the newest first
    assert 'id="older"' in first and "← newer" not in first
    second = c.get("/?page=2").get_data(as_text=True)
    rest = sorted(set(re.findall(r"clip-(\d{3})\.mp4</a>", second)), reverse=True)
    assert rest == ["004", "003", "002", "001", "000"] and 'id="older"' not in second and "← newer" in second
    assert c.get("/?page=3").status_code == 404 and c.get("/?page=0").status_code == 404


def test_rows_shared_by_sessions_carry_each_sessions_own_form_token(signed_in, alice):
    from web.filters import FORM_TOKEN_STAND_IN

    job = _job(alice.id, failed=False)
    first, second = signed_in(alice), signed_in(alice)  # two sessions of one user: one cached list
    pages = [c.get("/").get_data(as_text=True) for c in (first, second)]
    for c, page in zip((first, second), pages, strict=True):
        assert FORM_TOKEN_STAND_IN not in page
        tokens = set(re.findall(r'name="csrf_token" value="([^"]+)"', page))
        assert tokens and all(t.split(".")[0] == c.csrf.split(".")[0] for t in tokens)
    # The other session's token is refused; the page's own is taken.
    cancel = f"/clips/{job['_id']}/cancel"
    theirs = re.search(r'name="csrf_token" value="([^"]+)"', pages[1]).group(1)
    assert first.post(cancel, data={"csrf_token": theirs}).status_code == 400
    mine = re.search(r'name="csrf_token" value="([^"]+)"', pages[0]).group(1)
    assert first.post(cancel, data={"csrf_token": mine}).status_code == 303
    # The cancel changed a job: both sessions' next list shows it, cached or not.
    for c in (first, second):
        row = re.search(rf'data-id="{job["_id"]}" data-status="(\w+)"', c.get("/").get_data(as_text=True))
        assert row.group(1) == "cancelled"


def test_a_workers_write_shows_on_the_next_list_and_status(signed_in, alice):
    job = _job(alice.id, failed=False)
    c = signed_in(alice)
    assert f'data-id="{job["_id"]}" data-status="queued"' in c.get("/").get_data(as_text=True)
    assert c.get(f"/api/v1/clips/{job['_id']}").get_json()["status"] == "queued"
    claimed = jobs.claim(job["_id"], "worker-1")  # as the worker does, by its own path
    jobs.progress(job["_id"], claimed["run_id"], 0.5, 3.0)
    assert f'data-id="{job["_id"]}" data-status="running"' in c.get("/").get_data(as_text=True)
    status = c.get(f"/api/v1/clips/{job['_id']}").get_json()
    assert (status["status"], status["progress"]) == ("running", 0.5)
    listed = {x["id"]: x for x in c.get("/api/v1/clips").get_json()["clips"]}
    assert listed[str(job["_id"])]["progress"] == 0.5


def test_the_list_after_a_change_reads_only_the_written_jobs(signed_in, alice, monkeypatch):
    c = signed_in(alice)
    older, job = _job(alice.id, failed=False), _job(alice.id, failed=False)
    full_reads = []
    real = jobs.list_for
    monkeypatch.setattr(jobs, "list_for", lambda *a, **k: full_reads.append(a) or real(*a, **k))
    ids = lambda: [x["id"] for x in c.get("/api/v1/clips").get_json()["clips"]]  # noqa: E731
    assert ids()[:2] == [str(job["_id"]), str(older["_id"])]  # read in full, or patched if listed before
    full_reads.clear()
    claimed = jobs.claim(job["_id"], "worker-1")
    for p in (0.25, 0.5):  # progress, as a worker writes it every second: patched in place
        jobs.progress(job["_id"], claimed["run_id"], p, 3.0)
        listed = c.get("/api/v1/clips").get_json()["clips"]
        assert (listed[0]["id"], listed[0]["progress"]) == (str(job["_id"]), p)
    new = _job(alice.id, failed=False)  # a new upload: on top
    assert ids()[:3] == [str(new["_id"]), str(job["_id"]), str(older["_id"])]
    assert full_reads == []
    get_db().jobs.delete_one({"_id": older["_id"]})  # one leaves the list: read in full
    assert str(older["_id"]) not in ids() and len(full_reads) == 1
