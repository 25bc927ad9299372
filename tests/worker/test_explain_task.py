""""Explain this face" through the real queue: a worker makes Grad-CAM and occlusion overlays."""

from __future__ import annotations

import io
import time

import numpy as np
from bson import ObjectId
from PIL import Image

from shared import jobs, result_docs, storage
from shared.celery_app import EXPLAIN_FACE, enqueue
from shared.db import RESULTS


def wait_explained(job_id, track_id, timeout=240) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        exp = (jobs.get(job_id).get("explanations") or {}).get(str(track_id)) or {}
        if exp.get("status") in ("done", "failed"):
            return exp
        time.sleep(0.5)
    raise AssertionError(f"explanation of {track_id} still pending after {timeout}s")


def succeeded_job_with_person(crop_jpeg: bytes | None) -> tuple[dict, int]:
    job = jobs.create(owner="t", filename="x.mp4", kind="video", input_id=ObjectId(), size=1,
                      content_type="video/mp4")
    crop_id = storage.put(RESULTS, io.BytesIO(crop_jpeg), "face.jpg", content_type="image/jpeg",
                          metadata={"job_id": job["_id"]}) if crop_jpeg else None
    run = jobs.claim(job["_id"], "t")
    person = {"track_id": 7, "crop_id": crop_id, "vote": "masked"}
    layout = result_docs.write_read_model(job["_id"], bins={}, persons=[person], buckets=0)
    jobs.finish(job["_id"], run["run_id"], {"layout": layout})
    return job, 7


def test_explain_a_masked_face(worker, asset, mongo):
    path = sorted((asset("mask_crops") / "with_mask").glob("*.jpg"))[0]
    job, tid = succeeded_job_with_person(path.read_bytes())
    jobs.request_explanation(job["_id"], tid)
    enqueue(EXPLAIN_FACE, str(job["_id"]), tid)
    exp = wait_explained(job["_id"], tid)
    assert exp["status"] == "done", exp.get("error")
    assert exp["label"] == "masked" and abs(sum(exp["probs"]) - 1) < 0.01
    images = []
    for key in ("gradcam_id", "occlusion_id"):
        with storage.open_file(RESULTS, exp[key]) as f:
            assert f.metadata["job_id"] == job["_id"]
            images.append(np.asarray(Image.open(io.BytesIO(f.read())).convert("RGB")))
    assert all(im.shape == (224, 224, 3) for im in images)
    assert not np.array_equal(images[0], images[1])  # two different explanations
    jobs.delete(job["_id"])  # the overlays go with the clip
    assert mongo[f"{RESULTS}.files"].count_documents({"metadata.job_id": job["_id"]}) == 0


def test_a_person_without_a_face_fails_with_a_sentence(worker):
    job, tid = succeeded_job_with_person(None)
    jobs.request_explanation(job["_id"], tid)
    enqueue(EXPLAIN_FACE, str(job["_id"]), tid)
    exp = wait_explained(job["_id"], tid)
    assert exp["status"] == "failed" and exp["error"] == "this person has no stored face to explain"
