"""The audit trail: views, downloads and deletions recorded with who, from where and which clip;
each owner sees the trail of their own clips only; admins search all of it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from bson import ObjectId

from shared.db import get_db
from tests.web.conftest import PASSWORD, client_for, csrf_of, new_app, unique
from tests.web.seed import seed_clip
from web import audit, users

UA = "audit-test-browser/1.0 (X11)"


def entries(clip_id, action=None) -> list[dict]:
    """The clip's entries, oldest first, straight from the collection."""
    q = {"clip_id": str(clip_id), **({"action": action} if action else {})}
    return list(get_db().audit.find(q).sort([("at", 1), ("_id", 1)]))


@pytest.fixture
def carol(settings):
    return users.create(unique("carol"), PASSWORD)


@pytest.fixture
def proxied(settings):
    """The app behind one trusted reverse proxy (PROXY_FIX_HOPS=1), as in production."""
    return new_app(settings, PROXY_FIX_HOPS=1)


def test_a_view_a_download_and_a_delete_are_recorded_with_user_address_and_clip(proxied, carol, tmp_path):
    clip = seed_clip(carol.id, frames=50, n_persons=2, filename="till-3.mp4", media_dir=tmp_path)
    cid = str(clip["_id"])
    c = client_for(proxied, carol)
    via_proxy = {"X-Forwarded-For": "198.51.100.7", "User-Agent": UA}
    assert c.get(f"/clips/{cid}", headers=via_proxy).status_code == 200
    resp = c.get(f"/clips/{cid}/download/frames.csv", headers=via_proxy)
    assert resp.status_code == 200 and resp.get_data(as_text=True).startswith("frame,")
    # A resumed download (a range past the first byte) is the same download: not recorded again.
    original = f"/clips/{cid}/download/original"
    assert c.get(original, headers={**via_proxy, "Range": "bytes=0-99"}).status_code == 206
    assert c.get(original, headers={**via_proxy, "Range": "bytes=100-"}).status_code == 206
    token = csrf_of(c)
    assert c.post(f"/clips/{cid}/delete", data={"csrf_token": token}, headers=via_proxy).status_code == 303
    assert get_db().jobs.count_documents({"_id": clip["_id"]}) == 0

    got = entries(cid)  # the trail outlives the clip
    assert [(e["action"], e["detail"]) for e in got] == [
        ("view", "results page"), ("download", "frames.csv"), ("download", "original"), ("delete", "")]
    for e in got:
        assert (e["user_id"], e["username"]) == (carol.id, carol.username)
        assert e["addr"] == "198.51.100.7"  # the client, as resolved by ProxyFix, not the proxy
        assert e["ua"] == UA and e["via"] == "page"
        assert (e["clip_id"], e["filename"], e["owner"]) == (cid, "till-3.mp4", carol.id)
        assert abs(e["at"] - datetime.now(UTC)) < timedelta(minutes=5)


def test_without_a_trusted_proxy_a_forwarded_address_is_not_believed(app, carol):
    clip = seed_clip(carol.id, kind="image", n_persons=1, crops=False)
    c = client_for(app, carol)
    c.get(f"/clips/{clip['_id']}", headers={"X-Forwarded-For": "203.0.113.66"},
          environ_base={"REMOTE_ADDR": "192.0.2.10"})
    assert [e["addr"] for e in entries(clip["_id"])] == ["192.0.2.10"]


def test_api_results_and_downloads_are_recorded_for_the_tokens_user(app, carol, admin):
    clip = seed_clip(carol.id, kind="image", n_persons=2)
    cid = str(clip["_id"])
    token, _ = users.create_token(admin.id, "auditor")
    c = app.test_client()
    auth = {"Authorization": f"Bearer {token}", "User-Agent": "curl/8.5"}
    addr = {"REMOTE_ADDR": "192.0.2.44"}
    base = f"/api/v1/clips/{cid}"
    assert c.get(base, headers=auth, environ_base=addr).status_code == 200  # polling: not a view
    for path in ("/results", "/persons", "/download/annotated"):
        assert c.get(base + path, headers=auth, environ_base=addr).status_code == 200, path
    assert c.delete(base, headers=auth, environ_base=addr).status_code == 204
    got = entries(cid)
    assert [(e["action"], e["detail"]) for e in got] == [
        ("view", "results"), ("view", "persons page 1"), ("download", "annotated"), ("delete", "")]
    for e in got:
        assert (e["user_id"], e["username"], e["addr"], e["ua"], e["via"]) == (
            admin.id, admin.username, "192.0.2.44", "curl/8.5", "api")
        assert e["owner"] == carol.id  # an admin looked at carol's clip: carol's trail shows it


def test_owners_see_their_clips_trail_and_nobody_else_does(app, carol, bob, admin):
    clip = seed_clip(carol.id, kind="image", n_persons=1, filename="door.jpg", crops=False)
    cid = str(clip["_id"])
    mine = seed_clip(bob.id, kind="image", n_persons=1, filename="bobs.jpg", crops=False)
    a, b = client_for(app, admin), client_for(app, bob)
    assert a.get(f"/clips/{cid}", headers={"User-Agent": UA}).status_code == 200
    assert b.get(f"/clips/{mine['_id']}").status_code == 200

    c = client_for(app, carol)
    page = c.get(f"/clips/{cid}")
    assert f'href="/clips/{cid}/audit"' in page.get_data(as_text=True)  # linked from the results page
    html = c.get(f"/clips/{cid}/audit").get_data(as_text=True)
    assert admin.username in html and UA in html and bob.username not in html
    api = c.get(f"/api/v1/clips/{cid}/audit").get_json()
    assert [(e["user"]["username"], e["action"]) for e in api["entries"]] == [
        (carol.username, "view"), (admin.username, "view")]  # newest first
    assert api["entries"][1]["clip"] == {"id": cid, "filename": "door.jpg", "owner": carol.id}

    # Another user's clip: 404 on the page and in the API, exactly as for the clip itself.
    for url in (f"/clips/{cid}/audit", f"/api/v1/clips/{cid}/audit"):
        resp = b.get(url)
        assert resp.status_code == 404, url
        assert "door.jpg" not in resp.get_data(as_text=True)
    # And the clip owner's own view of bob's? Not possible either; bob's trail holds bob only.
    assert c.get(f"/clips/{mine['_id']}/audit").status_code == 404
    theirs = b.get(f"/api/v1/clips/{mine['_id']}/audit").get_json()["entries"]
    assert {e["user"]["username"] for e in theirs} == {bob.username}
    # Admins see every clip's trail; only admins search the whole trail.
    assert a.get(f"/api/v1/clips/{cid}/audit").status_code == 200
    assert b.get("/admin/audit").status_code == 403
    assert c.get("/admin/audit").status_code == 403
    assert 'href="/admin/audit"' in a.get("/").get_data(as_text=True)
    assert 'href="/admin/audit"' not in b.get("/").get_data(as_text=True)


def _put(at: datetime, action: str, username: str, clip_id: str, detail: str) -> str:
    """An entry as web/audit.py writes it, at a chosen time; its user id."""
    user_id = str(ObjectId())
    get_db().audit.insert_one({"at": at, "action": action, "detail": detail, "user_id": user_id,
                               "username": username, "addr": "192.0.2.1", "ua": "", "via": "page",
                               "clip_id": clip_id, "filename": f"{detail}.mp4", "owner": None})
    return user_id


def test_admin_search_filters_by_user_clip_action_and_time_newest_first(app, admin):
    u1, u2 = unique("eve"), unique("fay")
    c1, c2 = str(ObjectId()), str(ObjectId())
    t0 = datetime(2021, 3, 4, 10, 0, tzinfo=UTC)
    _put(t0, "view", u1, c1, "e1")
    _put(t0 + timedelta(hours=1), "download", u1, c2, "e2")
    e3_user = _put(t0 + timedelta(days=1), "view", u2, c1, "e3")
    _put(t0 + timedelta(days=2), "delete", u2, c2, "e4")
    a = client_for(app, admin)

    def found(**args) -> list[str]:
        resp = a.get("/admin/audit", query_string=args)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return re.findall(r"· (e\d)</span>", resp.get_data(as_text=True))

    assert found(user=u1) == ["e2", "e1"]  # newest first
    assert found(user=u2.upper()) == ["e4", "e3"]  # usernames are case-insensitive
    assert found(user=e3_user) == ["e3"]  # or a user id
    assert found(clip=c1) == ["e3", "e1"]
    assert found(clip=c2, action="delete") == ["e4"]
    assert found(user=u1, action="download") == ["e2"]
    assert found(clip=c1, since="2021-03-05") == ["e3"]
    assert found(clip=c2, until="2021-03-04") == ["e2"]  # a date as an end means the whole day
    assert found(clip=c2, since="2021-03-04T10:30", until="2021-03-06T09:59") == ["e2"]
    assert found(user=u1, since="2021-03-04T11:00") == ["e2"]
    assert a.get("/admin/audit", query_string={"since": "yesterday"}).status_code == 400
    assert a.get("/admin/audit", query_string={"action": "nosuch"}).status_code == 400


def test_admin_search_is_paginated(app, admin):
    clip_id, name = str(ObjectId()), unique("gus")
    t0 = datetime(2022, 1, 1, tzinfo=UTC)
    for i in range(audit.PAGE_SIZE + 7):
        _put(t0 + timedelta(minutes=i), "view", name, clip_id, f"e{i}")
    a = client_for(app, admin)
    first = a.get("/admin/audit", query_string={"clip": clip_id}).get_data(as_text=True)
    shown = re.findall(r"· (e\d+)</span>", first)
    assert shown == [f"e{i}" for i in range(audit.PAGE_SIZE + 6, 6, -1)]
    assert "older →" in first and "← newer" not in first
    assert f"clip={clip_id}" in re.search(r'href="([^"]+)">older', first).group(1)  # filters kept
    second = a.get("/admin/audit", query_string={"clip": clip_id, "page": 2}).get_data(as_text=True)
    assert re.findall(r"· (e\d+)</span>", second) == [f"e{i}" for i in range(6, -1, -1)]
    assert "older →" not in second and "← newer" in second


def test_a_failed_audit_write_is_logged_views_go_on_downloads_do_not(app, carol, monkeypatch, caplog):
    clip = seed_clip(carol.id, kind="image", n_persons=1, crops=False)
    c = client_for(app, carol)
    # A collection name the driver refuses: a real write error, whatever the server.
    monkeypatch.setattr(audit, "COLLECTION", "audit$refused")
    assert c.get(f"/clips/{clip['_id']}").status_code == 200
    audit.flush()  # views are written in batches; this one now, whether or not the writer ran yet
    assert "view audit entries not written" in caplog.text
    resp = c.get(f"/clips/{clip['_id']}/download/original")
    assert resp.status_code == 503
    assert "could not be recorded in the audit trail" in resp.get_data(as_text=True)
    api = c.get(f"/api/v1/clips/{clip['_id']}/download/annotated")
    assert api.status_code == 503 and api.get_json()["error"] == "service_unavailable"
