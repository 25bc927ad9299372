"""The cameras pages: admins only, refused URLs said in a sentence, credentials never shown back."""

from __future__ import annotations

from shared import cameras, jobs
from shared.config import set_settings
from tests.web.conftest import client_for, new_app


def test_only_admins_see_cameras(app, signed_in, alice):
    c = signed_in(alice)
    assert c.get("/cameras").status_code == 403
    assert c.post("/cameras", data={"csrf_token": c.csrf, "url": "rtsp://8.8.8.8/x"}).status_code == 403
    assert c.get("/webcam").status_code == 200  # the webcam check is everyone's


def test_a_forbidden_url_is_refused_with_a_sentence(app, signed_in, admin, mongo):
    c = signed_in(admin)
    before = mongo.cameras.count_documents({})
    for url, sentence in (("file:///etc/passwd", "file:// cannot be recorded: use an rtsp://"),
                          ("rtsp://127.0.0.1:8554/cam", "is a loopback, link-local or private address")):
        resp = c.post("/cameras", data={"csrf_token": c.csrf, "name": "x", "url": url})
        assert resp.status_code == 400
        assert sentence in resp.get_data(as_text=True)
    assert mongo.cameras.count_documents({}) == before


def test_credentials_are_never_shown_back(settings, admin):
    set_settings(settings.replace(live_allow_private=True))  # a LAN camera (no recorder runs here)
    try:
        c = client_for(new_app(settings.replace(live_allow_private=True)), admin)
        resp = c.post("/cameras", data={"csrf_token": c.csrf, "name": "gate",
                                        "url": "rtsp://admin:Hunter2-secret@10.1.2.3:554/ch1"})
        assert resp.status_code == 303
        cam_path = resp.headers["Location"]
        pages = [c.get("/cameras"), c.get(cam_path), c.get(cam_path + "/live.json")]
        for page in pages:
            text = page.get_data(as_text=True)
            assert page.status_code == 200
            assert "Hunter2-secret" not in text and "admin:" not in text
            assert "rtsp://***@10.1.2.3:554/ch1" in text
        view = pages[2].get_json()
        assert view["state"] in (cameras.STARTING, cameras.OFFLINE)  # no recorder runs in this test
        # Stopped: shown as stopped at once; deleted: gone.
        assert c.post(cam_path + "/stop", data={"csrf_token": c.csrf}).status_code == 303
        assert c.get(cam_path + "/live.json").get_json()["state"] == cameras.STOPPED
        assert c.post(cam_path + "/delete", data={"csrf_token": c.csrf}).status_code == 303
        assert c.get(cam_path).status_code == 404
    finally:
        set_settings(settings)


def test_a_webcam_chunk_is_stored_as_a_job_in_no_clips_list(app, signed_in, alice, mongo):
    c = signed_in(alice)
    headers = {"X-CSRFToken": c.csrf, "Content-Type": "video/webm"}
    assert c.post("/webcam/chunks?session=abcdefgh12&seq=0", data=b"", headers=headers).status_code == 400
    assert c.post("/webcam/chunks?session=x&seq=0", data=b"123", headers=headers).status_code == 400
    assert c.post("/webcam/chunks?session=abcdefgh12&seq=0", data=b"123",
                  headers={"Content-Type": "video/webm"}).status_code == 400  # no CSRF header
    resp = c.post("/webcam/chunks?session=abcdefgh12&seq=0", data=b"\x1a\x45\xdf\xa3 webm", headers=headers)
    assert resp.status_code == 201
    chunk = resp.get_json()
    job = jobs.get(chunk["id"])
    assert job["owner"] == f"webcam:{alice.id}" and job["webcam_session"] == "abcdefgh12"
    assert all(j["_id"] != job["_id"] for j in jobs.list_for(alice.id))
    assert c.get(f"/webcam/chunks/{chunk['id']}").get_json()["status"] in ("queued", "running", "failed")
    jobs.cancel(job["_id"])  # nothing to analyse; no worker runs in this test


def test_recent_people_count_a_person_crossing_cuts_once(mongo):
    """Three segments of one recording and one of the next: person 1 crosses both cuts of the first
    recording (linked 1 -> 1001 -> 2001); 1002 is someone else; the next recording's ids start over."""
    from web import live

    def seg(rec, seq, ids):
        return {"recording_id": rec, "seq": seq, "result": {"people_ids": ids, "people": {"total": len(ids)}}}

    segs = [seg("r1", 0, [1]), seg("r1", 1, [1001, 1002]), seg("r1", 2, [2001]), seg("r2", 0, [1])]
    mongo[jobs.LIVE_LINKS].insert_many([
        {"_id": jobs.part_links_id("r1", 1), "recording_id": "r1", "seq": 1, "before": [1], "after": [1001]},
        {"_id": jobs.part_links_id("r1", 2), "recording_id": "r1", "seq": 2, "before": [1001],
         "after": [2001]}])
    assert live.people_in(segs) == 3  # person 1 of r1, 1002, person 1 of r2
    assert live.people_in(segs[1:3]) == 2  # the window starts after the first segment: still one person
    # A segment analysed before segments knew their people: counted per segment, as then.
    old = {"recording_id": "r0", "seq": 0, "result": {"people": {"total": 2}}}
    assert live.people_in([old, *segs]) == 2 + 5
