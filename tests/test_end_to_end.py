"""The thin slice: upload in the web -> GridFS -> Redis -> a real worker process -> H.264 in GridFS."""

from __future__ import annotations

import io

import pytest

from shared import jobs, storage
from shared.celery_app import PROCESS_JOB, enqueue
from shared.db import RESULTS, UPLOADS
from tests.conftest import wait_for_job
from tests.media import make_clip, probe
from web.app import create_app


@pytest.fixture
def client(settings):
    """A signed-in user's client; .csrf is the session's CSRF token for form posts."""
    from tests.web.conftest import PASSWORD, csrf_of, login, unique
    from web import users

    app = create_app(settings)
    app.config.update(TESTING=True)
    c = app.test_client()
    user = users.create(unique("e2e"), PASSWORD)
    assert login(c, user.username).status_code == 303
    c.csrf = csrf_of(c)
    return c


def test_task_enqueued_by_name_runs_in_a_real_worker(worker, tmp_path, mongo):
    clip = make_clip(tmp_path / "in.mkv", frames=40, fmt="matroska", codec="mpeg4")
    with open(clip, "rb") as f:
        file_id = storage.put(UPLOADS, f, "in.mkv", content_type="video/x-matroska")
    job = jobs.create(owner="t", filename="in.mkv", kind="video", input_id=file_id,
                      size=clip.stat().st_size, content_type="video/x-matroska")
    enqueue(PROCESS_JOB, str(job["_id"]))
    done = wait_for_job(job["_id"])
    assert done["status"] == "succeeded", done["error"]
    assert done["result"]["frames"] == 40
    assert abs(done["result"]["duration_s"] - 1.6) < 0.05
    out = tmp_path / "out.mp4"
    storage.save_to(RESULTS, done["result"]["output_id"], out)
    info = probe(out)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    assert info["frames"] == 40 and info["faststart"]


def test_upload_in_the_web_to_playable_result(worker, client, tmp_path):
    clip = make_clip(tmp_path / "walk.mp4", frames=25, size=(322, 242))  # odd-ish size, even required
    resp = client.post("/upload", data={"csrf_token": client.csrf,
                                        "file": (io.BytesIO(clip.read_bytes()), "walk.mp4")},
                       content_type="multipart/form-data")
    assert resp.status_code == 303
    job_url = resp.headers["Location"]
    job_id = job_url.rstrip("/").rsplit("/", 1)[-1]
    done = wait_for_job(job_id)
    assert done["status"] == "succeeded", done["error"]
    page = client.get(job_url).get_data(as_text=True)
    assert "<video" in page and f"/clips/{job_id}/video" in page
    whole = client.get(f"/clips/{job_id}/video")
    assert whole.status_code == 200 and whole.headers["Accept-Ranges"] == "bytes"
    size = len(whole.data)
    part = client.get(f"/clips/{job_id}/video", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.data == whole.data[100:200]
    assert part.headers["Content-Range"] == f"bytes 100-199/{size}"
    tail = client.get(f"/clips/{job_id}/video", headers={"Range": "bytes=-50"})
    assert tail.status_code == 206 and tail.data == whole.data[-50:]
    beyond = client.get(f"/clips/{job_id}/video", headers={"Range": f"bytes={size}-"})
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{size}"
    out = tmp_path / "o.mp4"
    out.write_bytes(whole.data)
    assert probe(out)["frames"] == 25 and probe(out)["faststart"]


def test_upload_rejects_what_is_not_media(client, mongo):
    before = mongo.jobs.count_documents({})
    resp = client.post("/upload", data={"csrf_token": client.csrf,
                                        "file": (io.BytesIO(b"hello, not a video"), "x.mp4")},
                       content_type="multipart/form-data", follow_redirects=True)
    assert "not a supported video or image" in resp.get_data(as_text=True)
    resp = client.post("/upload", data={"csrf_token": client.csrf, "file": (io.BytesIO(b""), "empty.mp4")},
                       content_type="multipart/form-data", follow_redirects=True)
    assert "The file is empty." in resp.get_data(as_text=True)
    assert mongo.jobs.count_documents({}) == before
