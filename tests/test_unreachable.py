"""Services down, assets missing, mirror wrong, port taken: a one-line error naming cause and fix."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from shared import db
from shared.assets import asset_path
from shared.config import set_settings
from shared.errors import MissingAsset, ServiceUnavailable
from tests.conftest import ROOT
from tests.net import free_port as closed_port  # a port nothing listens on
from worker import recovery  # imported (with the Celery app and its broker URL) before `broken` runs


@pytest.fixture
def broken(settings):
    """Settings pointing at ports where nothing listens."""
    bad = settings.replace(mongo_uri=f"mongodb://127.0.0.1:{closed_port()}/x",
                           redis_url=f"redis://127.0.0.1:{closed_port()}/0", connect_timeout_s=1.0)
    set_settings(bad)
    db.reset()
    yield bad
    set_settings(settings)
    db.reset()


def test_mongo_down_is_said_quickly(broken):
    # "Quickly" is the client's own deadline, from CONNECT_TIMEOUT_S (pymongo's default is 30 s):
    # checked as configuration, not against a wall clock.
    client = db.get_client()
    assert client.options.server_selection_timeout == broken.connect_timeout_s == 1.0
    assert client.options.pool_options.connect_timeout == broken.connect_timeout_s
    with pytest.raises(ServiceUnavailable, match="MongoDB at .* is unreachable.*MONGO_URI"):
        db.ping()


def test_readiness_endpoint_names_both_services(broken):
    from web.app import create_app

    resp = create_app(broken).test_client().get("/readyz")
    assert resp.status_code == 503
    problems = resp.get_json()["problems"]
    assert "MONGO_URI" in problems["mongodb"] and "REDIS_URL" in problems["redis"]


def test_readiness_when_up(settings):
    from web.app import create_app

    assert create_app(settings).test_client().get("/readyz").get_json() == {"status": "ready"}


def test_enqueue_with_redis_down_fails_fast(settings):
    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0", "CONNECT_TIMEOUT_S": "1"}
    code = ("from shared.celery_app import enqueue\n"
            "try:\n    enqueue('maskwatch.process_job', 'x')\n"
            "except Exception as e:\n    print(type(e).__name__, e)\n")
    # Bounded by enqueue's retry policy (3 tries, under 2 s of waits) and CONNECT_TIMEOUT_S, not by a
    # clock here: a hang would be cut by the subprocess timeout and fail the test.
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.startswith("ServiceUnavailable the job queue (Redis at"), out.stdout + out.stderr
    assert "REDIS_URL" in out.stdout


def run_cli(args: list[str], **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


def test_doctor_lines_for_wrong_urls():
    out = run_cli(["shared.doctor"], MONGO_URI=f"mongodb://127.0.0.1:{closed_port()}/x",
                  REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0", CONNECT_TIMEOUT_S="1")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 2
    assert "MongoDB" in lines[0] and "MONGO_URI" in lines[0]
    assert "Redis" in lines[1] and "REDIS_URL" in lines[1]


def test_missing_asset_names_the_fix(settings, tmp_path):
    with pytest.raises(MissingAsset, match="asset .yunet. is missing .*python -m models.fetch"):
        asset_path("yunet", settings.replace(asset_cache=tmp_path))


def test_missing_mirror_is_one_line(tmp_path):
    out = run_cli(["models.fetch", "yunet"], ASSET_MIRROR=str(tmp_path / "nowhere"),
                  ASSET_CACHE=str(tmp_path / "cache"))
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0
    assert "ASSET_MIRROR=" in out.stderr and "is not a folder" in out.stderr


def test_corrupt_mirror_file_is_refused(tmp_path):
    bad = tmp_path / "mirror" / "models" / "yunet"
    bad.mkdir(parents=True)
    (bad / "face_detection_yunet_2026may.onnx").write_bytes(b"not the model")
    out = run_cli(["models.fetch", "yunet"], ASSET_MIRROR=str(tmp_path / "mirror"),
                  ASSET_CACHE=str(tmp_path / "cache"))
    assert out.returncode == 1 and "the manifest says" in out.stderr
    assert not (tmp_path / "cache" / "models" / "yunet" / "face_detection_yunet_2026may.onnx").exists()


def test_web_port_in_use_is_named(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run(["bin/run"], cwd=ROOT, env={**os.environ, "WEB_PORT": str(port)},
                             capture_output=True, text=True, timeout=300)
    assert out.returncode == 1
    assert f"port {port} is in use; set WEB_PORT" in out.stderr


def test_the_api_answers_503_naming_mongodb_when_it_is_down(broken):
    from web import users
    from web.app import create_app

    client = create_app(broken).test_client()
    # The token lookup is the first thing the API does: it must not become a 500.
    token = users.TOKEN_PREFIX + "x" * 40  # well-formed: it needs a lookup
    api = client.get("/api/v1/clips", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 503, api.get_data(as_text=True)
    assert api.get_json()["error"] == "service_unavailable" and "MongoDB" in api.get_json()["message"]


QUEUE_DOWN = '''
import io, json, re, sys
from PIL import Image
from shared.config import Settings, set_settings
settings = Settings.from_env()
set_settings(settings)
from web import users
from web.app import create_app
user = users.create(sys.argv[1], "correct horse battery")
token, _ = users.create_token(user.id, "t")
auth = {"Authorization": f"Bearer {token}"}
buf = io.BytesIO()
Image.new("RGB", (64, 48), (200, 40, 40)).save(buf, "PNG")
app = create_app(settings, config={"TESTING": True})
api = app.test_client()
up = api.post("/api/v1/clips", data={"file": (io.BytesIO(buf.getvalue()), "a.png")}, headers=auth)
clip = up.get_json()["clips"][0]
retry = api.post(f"/api/v1/clips/{clip['id']}/retry", headers=auth)
web = app.test_client()
def csrf():
    page = web.get("/login").get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)

web.post("/login", data={"username": sys.argv[1], "password": "correct horse battery", "csrf_token": csrf()})
form = web.post("/upload", data={"csrf_token": csrf(), "file": (io.BytesIO(buf.getvalue()), "b.png")},
                follow_redirects=True)
print(json.dumps({"upload": [up.status_code, clip], "retry": [retry.status_code, retry.get_json()],
                  "page": [form.status_code, form.get_data(as_text=True)]}, default=str))
'''


def test_with_redis_down_uploads_stay_queued_and_recovery_sends_them_when_it_is_back(settings, worker):
    import json
    import uuid
    from datetime import timedelta

    from shared import jobs
    from shared.db import get_db
    from tests.conftest import wait_for_job

    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{closed_port()}/0", "CONNECT_TIMEOUT_S": "1"}
    out = subprocess.run([sys.executable, "-c", QUEUE_DOWN, f"q{uuid.uuid4().hex[:10]}"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    status, clip = seen["upload"]
    assert status == 201 and clip["status"] == "queued" and clip["error"] is None  # kept, waiting
    assert clip["note"].startswith("The job queue is unreachable right now"), clip
    status, retried = seen["retry"]
    assert status == 409, retried  # it is already waiting: nothing to retry
    status, page = seen["page"]
    assert status == 200 and "The job queue is unreachable right now" in page
    waiting = list(get_db().jobs.find({"owner": clip["owner"]}))
    assert sorted(j["filename"] for j in waiting) == ["a.png", "b.png"]
    assert all(j["status"] == "queued" for j in waiting)
    # The queue is back (this session's Redis): past the grace period, recovery sends both, once.
    past = jobs.now() - timedelta(seconds=recovery.QUEUED_GRACE_S + 1)
    get_db().jobs.update_many({"owner": clip["owner"]}, {"$set": {"updated_at": past}})
    sent = recovery.sweep()["resent_queued"]
    assert {str(j["_id"]) for j in waiting} <= set(sent)
    for job in waiting:
        done = wait_for_job(job["_id"], timeout=120)
        assert done["status"] == "succeeded" and done["attempts"] == 1, done
        assert done["note"] is None
