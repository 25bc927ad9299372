"""The "explain this face" task: Grad-CAM and occlusion-sensitivity overlays for one person's best face."""

from __future__ import annotations

import io
import logging
from functools import cache

import cv2
import numpy as np

from models.explain import grad_cam, load_keras_model, occlusion_sensitivity, overlay
from models.faces import label_name
from shared import jobs, result_docs, storage
from shared.celery_app import EXPLAIN_FACE, app
from shared.db import RESULTS
from shared.errors import NotFound
from worker.loaded_models import get_models

log = logging.getLogger(__name__)
SHOWN_PX = 224  # overlays are stored at this size: the crops are small, the page shows them large


@cache
def keras_model():
    """Our Keras model, loaded once per worker process and only when a face is first explained."""
    return load_keras_model()


def explain_crop(crop_rgb: np.ndarray) -> dict:
    """Probabilities, label and both overlays (RGB uint8, SHOWN_PX square) for one RGB face crop."""
    classifier = get_models().classifier
    crop = cv2.resize(crop_rgb, (SHOWN_PX, SHOWN_PX), interpolation=cv2.INTER_CUBIC)
    probs = classifier(cv2.resize(crop_rgb, (classifier.input_size,) * 2)[None])[0]
    return {
        "probs": [round(float(p), 4) for p in probs],
        "label": label_name(int(np.argmax(probs))),
        "gradcam": overlay(crop, grad_cam(keras_model(), crop)),
        "occlusion": overlay(crop, occlusion_sensitivity(classifier, crop)),
    }


def _png(rgb: np.ndarray) -> io.BytesIO:
    ok, buf = cv2.imencode(".png", rgb[:, :, ::-1])
    return io.BytesIO(buf.tobytes())


@app.task(name=EXPLAIN_FACE, acks_late=True, reject_on_worker_lost=True, soft_time_limit=300,
          time_limit=360)
def explain_face(job_id: str, track_id: int) -> str:
    """Explain one person's best face of a succeeded job; records done or failed on the job."""
    try:
        job = jobs.get(job_id)
        person = result_docs.find_person(job, track_id)
        if person is None or not person.get("crop_id"):
            jobs.fail_explanation(job_id, track_id, "this person has no stored face to explain")
            return "failed"
        with storage.open_file(RESULTS, person["crop_id"]) as f:
            bgr = cv2.imdecode(np.frombuffer(f.read(), np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError("the stored face crop cannot be decoded")
        result = explain_crop(np.ascontiguousarray(bgr[:, :, ::-1]))
        meta = {"job_id": job["_id"], "role": "explanation", "track_id": track_id}
        ids = {key: storage.put(RESULTS, _png(result[key]), f"{key}-{track_id}.png", content_type="image/png",
                                metadata={**meta, "kind": key}) for key in ("gradcam", "occlusion")}
        if not jobs.finish_explanation(job_id, track_id, {
                "crop_id": person["crop_id"], "gradcam_id": ids["gradcam"], "occlusion_id": ids["occlusion"],
                "label": result["label"], "probs": result["probs"]}):
            storage.delete_files(RESULTS, list(ids.values()))
            return "skipped"
        return "done"
    except NotFound:
        return "skipped"  # the clip was deleted meanwhile
    except Exception as e:  # noqa: BLE001 - an explanation failing must not take the worker down
        log.exception("explaining person %s of job %s failed", track_id, job_id)
        jobs.fail_explanation(job_id, track_id, f"the explanation could not be made ({type(e).__name__})")
        return "failed"
