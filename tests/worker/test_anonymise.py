"""The anonymised export: no face the project's own detector can find, at its most sensitive, on any
frame of the copy; the same frames at the same times as the input; deleted with the clip."""

from __future__ import annotations

import time

import av
import cv2
import numpy as np
import pytest

from models.detect import load_detector
from shared import anonymised, jobs, storage
from shared.celery_app import ANONYMISE, enqueue
from shared.db import RESULTS
from tests.conftest import wait_for_job
from tests.worker.helpers import leftovers, stored_file_ids, submit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sensitive():
    return load_detector("yunet", profile="sensitive")


def frames_of(path) -> tuple[list[int], list[np.ndarray]]:
    """Every frame's pts and BGR image."""
    pts, images = [], []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            pts.append(f.pts)
            images.append(f.to_ndarray(format="bgr24"))
    return pts, images


def timestamps(path) -> list[float]:
    with av.open(str(path)) as c:
        return [round(float(f.time), 3) for f in c.decode(video=0)]


def export_of(job_id, *, tmp_path) -> tuple[dict, object]:
    """Request the export through the queue, wait for it; (the job, the local copy)."""
    anonymised.request(job_id)
    enqueue(ANONYMISE, str(job_id))
    job = jobs.get(job_id)
    end = time.monotonic() + 300
    while (job.get("anonymised") or {}).get("status") not in ("done", "failed"):
        assert time.monotonic() < end, job.get("anonymised")
        time.sleep(0.5)
        job = jobs.get(job_id)
    assert job["anonymised"]["status"] == "done", job["anonymised"]
    suffix = ".mp4" if job["kind"] == "video" else ".jpg"
    return job, storage.save_to(RESULTS, job["anonymised"]["file_id"], tmp_path / f"anon-{job_id}{suffix}")


@pytest.mark.parametrize("clip", ["corridor_two_people.mp4", "restaurant_cctv_2012.mp4"])
def test_the_anonymised_copy_shows_no_face_and_keeps_every_frame_and_time(worker, asset, sensitive, tmp_path,
                                                                        clip):
    src = asset("real_clips") / clip
    done = wait_for_job(submit(src)["_id"], timeout=300)
    assert done["status"] == "succeeded", done["error"]
    job, copy = export_of(done["_id"], tmp_path=tmp_path)
    in_pts, in_images = frames_of(src)
    out_pts, out_images = frames_of(copy)
    assert len(out_images) == len(in_images) == done["result"]["frames"]
    assert timestamps(copy) == timestamps(src)
    before = [sensitive(im) for im in in_images]
    after = [sensitive(im) for im in out_images]
    assert sum(map(len, before)) > len(in_images) // 2, "the clip shows faces to begin with"  # can fail
    left = [i for i, found in enumerate(after) if len(found)]
    assert left == [], f"faces left on frames {left}"
    assert out_images[0].shape == in_images[0].shape
    # The rest of the picture is kept: the copy is not simply blanked.
    pairs = zip(in_images, out_images, strict=True)
    changed = [np.mean(cv2.absdiff(a, b).max(axis=2) > 40) for a, b in pairs]
    assert np.median(changed) < 0.3, np.round(changed, 3)  # most of every frame is kept
    # Deleting the clip deletes the copy too.
    ids = stored_file_ids(job)
    assert job["anonymised"]["file_id"] in ids
    jobs.delete(job["_id"])
    assert leftovers(job, ids) == {}


def test_an_anonymised_still_image_shows_no_face(worker, asset, sensitive, tmp_path):
    images = sorted((asset("mask_scenes") / "images").glob("*.jpg"))
    found = next(p for p in images[:40] if len(sensitive(cv2.imread(str(p)))) >= 3)
    done = wait_for_job(submit(found, kind="image")["_id"], timeout=300)
    assert done["status"] == "succeeded", done["error"]
    _, copy = export_of(done["_id"], tmp_path=tmp_path)
    assert len(sensitive(cv2.imread(str(copy)))) == 0
    assert cv2.imread(str(copy)).shape == cv2.imread(str(found)).shape


def test_an_export_is_asked_for_once_at_a_time_and_only_of_a_finished_clip(tmp_path):
    from shared.errors import IllegalTransition
    from tests.worker.helpers import stored_job

    job = stored_job(b"\0" * 64, "x.mp4", owner="anon-test")
    with pytest.raises(IllegalTransition, match="only a finished clip"):
        anonymised.request(job["_id"])
    from shared.db import get_db

    get_db().jobs.update_one({"_id": job["_id"]}, {"$set": {"status": "succeeded", "result": {}}})
    anonymised.request(job["_id"])
    with pytest.raises(IllegalTransition, match="already being made"):
        anonymised.request(job["_id"])
    get_db().jobs.delete_one({"_id": job["_id"]})


def test_a_copy_with_compliance_boxes_is_the_checked_copy_plus_outlines(worker, asset, sensitive, tmp_path):
    src = asset("real_clips") / "corridor_two_people.mp4"
    done = wait_for_job(submit(src)["_id"], timeout=300)
    assert done["status"] == "succeeded", done["error"]
    _, plain = export_of(done["_id"], tmp_path=tmp_path)
    anonymised.request(done["_id"], boxes=True)
    enqueue(ANONYMISE, str(done["_id"]))
    end = time.monotonic() + 300
    while (job := jobs.get(done["_id"]))["anonymised"]["status"] not in ("done", "failed"):
        assert time.monotonic() < end
        time.sleep(0.5)
    assert job["anonymised"]["status"] == "done" and job["anonymised"]["boxes"] is True
    boxed = storage.save_to(RESULTS, job["anonymised"]["file_id"], tmp_path / "boxed.mp4")
    assert timestamps(boxed) == timestamps(src)
    _, a = frames_of(plain)
    _, b = frames_of(boxed)
    assert len(a) == len(b) == done["result"]["frames"]
    from shared import result_docs
    from worker.pipeline.anonymise import stored_records
    records = list(stored_records(d["json"] for d in result_docs.iter_buckets(
        done["_id"], done["result"]["layout"]["buckets"])))
    counted = [(r["frame"], f) for r in records for f in r["faces"] if f["label"] != "rejected"]
    assert counted, "the clip has counted faces to draw"
    on_line, elsewhere = [], []
    for i, face in counted[:: max(1, len(counted) // 40)]:
        x1, y1, x2, y2 = (int(round(v)) for v in face["box"])
        diff = cv2.absdiff(a[i], b[i]).max(axis=2).astype(np.float32)
        on_line.append(diff[max(y1, 0), max(x1, 0):x2].mean())  # the top edge of the outline
        mask = np.ones(diff.shape, bool)
        mask[max(y1 - 16, 0):y2 + 16, max(x1 - 16, 0):x2 + 16] = False  # away from every outline of it
        for _, other in (c for c in counted if c[0] == i):
            ox1, oy1, ox2, oy2 = (int(round(v)) for v in other["box"])
            mask[max(oy1 - 16, 0):oy2 + 16, max(ox1 - 16, 0):ox2 + 16] = False
        elsewhere.append(diff[mask].mean())
    assert np.median(on_line) > 40, np.round(on_line, 1)  # the outlines are there
    assert np.max(elsewhere) < 4, np.round(elsewhere, 2)  # and nothing else changed
