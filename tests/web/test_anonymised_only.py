"""A clip marked "anonymised only" shows no face anywhere: no crops, no original or annotated video,
no explanations; its player and video route serve the anonymised copy once there is one."""

from __future__ import annotations

import io

from shared import jobs, storage
from shared.db import RESULTS, get_db
from tests.web.conftest import PASSWORD, client_for, unique
from tests.web.seed import seed_clip
from web import users


def test_marking_a_clip_anonymised_only_hides_every_face_until_unmarked(app, settings, tmp_path):
    owner = users.create(unique("anon"), PASSWORD)
    clip = seed_clip(owner.id, frames=50, n_persons=3, media_dir=tmp_path)
    cid, c = clip["_id"], client_for(app, owner)
    crop = get_db()[f"{RESULTS}.files"].find_one({"metadata.job_id": cid, "metadata.role": "crop"})["_id"]
    page = c.get(f"/clips/{cid}").get_data(as_text=True)
    assert f"/files/{crop}" in page and "download/annotated" in page  # shown before

    r = c.post(f"/clips/{cid}/privacy", data={"csrf_token": c.csrf, "retention_days": "30",
                                             "anonymised_only": "1"})
    assert r.status_code == 303 and jobs.get(cid)["anonymised_only"] is True
    page = c.get(f"/clips/{cid}").get_data(as_text=True)
    assert "/files/" not in page and "download/annotated" not in page and "download/original" not in page
    assert "Explain this face" not in page and "/poster" not in page
    assert "No anonymised copy has been made yet" in page
    assert "/poster" not in c.get("/").get_data(as_text=True)  # nor the list's thumbnail
    for url in (f"/clips/{cid}/video", f"/clips/{cid}/poster", f"/clips/{cid}/original",
                f"/clips/{cid}/files/{crop}", f"/clips/{cid}/download/annotated",
                f"/api/v1/clips/{cid}/files/{crop}", f"/api/v1/clips/{cid}/download/original"):
        assert c.get(url).status_code == 403, url
    r = c.post(f"/api/v1/clips/{cid}/persons/1/explanation", headers={"X-CSRFToken": c.csrf})
    assert r.status_code == 403 and "anonymised only" in r.get_json()["message"]
    assert c.get(f"/clips/{cid}/download/frames.csv").status_code == 200  # the numbers stay

    # With an anonymised copy, the player and the video route serve it (and only it).
    copy = b"\x00\x00\x00\x18ftypmp42 blurred copy"
    fid = storage.put(RESULTS, io.BytesIO(copy), "copy.mp4", content_type="video/mp4",
                      metadata={"job_id": cid, "role": "anonymised"})
    get_db().jobs.update_one({"_id": cid}, {"$set": {"anonymised": {"status": "done", "file_id": fid},
                                                     "updated_at": jobs.now()}})
    assert c.get(f"/clips/{cid}/video").get_data() == copy
    assert c.get(f"/clips/{cid}/download/anonymised").get_data() == copy
    page = c.get(f"/clips/{cid}").get_data(as_text=True)
    assert 'id="player" controls' in page and "every face blurred" in page

    r = c.put(f"/api/v1/clips/{cid}/privacy", json={"anonymised_only": False},
              headers={"X-CSRFToken": c.csrf})
    assert r.status_code == 200 and r.get_json()["privacy"]["anonymised_only"] is False
    assert c.get(f"/clips/{cid}/video").get_data() != copy
    assert f"/files/{crop}" in c.get(f"/clips/{cid}").get_data(as_text=True)
    trail = get_db().audit.find({"clip_id": str(cid), "action": "change"}).sort("at", 1)
    changes = [e["detail"] for e in trail]
    assert changes == ["anonymised only", "faces shown again"]


def test_another_user_cannot_change_a_clips_privacy(app, settings, tmp_path):
    owner, other = users.create(unique("own"), PASSWORD), users.create(unique("oth"), PASSWORD)
    clip = seed_clip(owner.id, frames=20, n_persons=1, media_dir=tmp_path)
    c = client_for(app, other)
    r = c.post(f"/clips/{clip['_id']}/privacy", data={"csrf_token": c.csrf, "anonymised_only": "1"})
    assert r.status_code == 404
    r = c.put(f"/api/v1/clips/{clip['_id']}/privacy", json={"retention_days": 1},
              headers={"X-CSRFToken": c.csrf})
    assert r.status_code == 404
    assert not jobs.get(clip["_id"]).get("anonymised_only")
    assert jobs.get(clip["_id"])["retention"]["source"] == "default"
