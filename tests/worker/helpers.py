"""Submitting files as jobs through the real queue, and reading back what the worker stored."""

from __future__ import annotations

import io
import json
import tempfile
import time
from pathlib import Path

from shared import jobs, result_docs, storage
from shared.celery_app import PROCESS_JOB, enqueue
from shared.db import RESULTS, UPLOADS, get_db

CONTENT_TYPES = {".mp4": "video/mp4", ".mov": "video/quicktime", ".mkv": "video/x-matroska",
                 ".avi": "video/x-msvideo", ".webm": "video/webm", ".m4a": "audio/mp4",
                 ".jpg": "image/jpeg", ".png": "image/png"}


def stored_job(data: bytes | Path, filename: str, *, owner: str = "tester", kind: str | None = None) -> dict:
    """Store bytes (or a file) in GridFS and create its job, not queued; the job.

    kind defaults to "image" for image names and "video" otherwise; the type follows the name.
    """
    ctype = CONTENT_TYPES.get(Path(filename).suffix.lower(), "application/octet-stream")
    kind = kind or ("image" if ctype.startswith("image/") else "video")
    if isinstance(data, Path):
        with open(data, "rb") as f:
            file_id = storage.put(UPLOADS, f, filename, content_type=ctype)
        size = data.stat().st_size
    else:
        file_id = storage.put(UPLOADS, io.BytesIO(data), filename, content_type=ctype)
        size = len(data)
    return jobs.create(owner=owner, filename=filename, kind=kind, input_id=file_id, size=size,
                       content_type=ctype)


def submit(path: Path, *, kind: str = "video", filename: str | None = None) -> dict:
    """Store a file in GridFS, create its job and queue it by name, as the web does; the job."""
    path = Path(path)
    job = stored_job(path, filename or path.name, kind=kind)
    enqueue(PROCESS_JOB, str(job["_id"]))
    return job


def result_files(job_id) -> list[dict]:
    """`results` GridFS file documents of a job."""
    return list(get_db()[f"{RESULTS}.files"].find({"metadata.job_id": job_id}))


def temp_dirs(job_id) -> list[Path]:
    """The worker's temp folders of a job still on disk (the worker runs on this machine)."""
    return list(Path(tempfile.gettempdir()).glob(f"maskwatch-{job_id}-*"))


def fetch_output(job: dict, dest: Path) -> Path:
    """The annotated output of a finished job, copied to dest."""
    return storage.save_to(RESULTS, job["result"]["output_id"], dest)


def buckets_of(job_id) -> list[dict]:
    """The job's frame bucket heads in order, as far as they exist (no layout needed: a running job)."""
    out = []
    while (doc := get_db()[result_docs.FRAMES].find_one({"_id": result_docs.bucket_id(job_id, len(out))})):
        out.append(doc)
    return out


def frame_records(job: dict) -> list[dict]:
    """Every stored frame record of a finished job, in order (from its buckets)."""
    layout = job["result"]["layout"]
    return [r for b in result_docs.iter_buckets(job["_id"], layout["buckets"]) for r in json.loads(b["json"])]


def persons_of(job: dict) -> list[dict]:
    """The stored person ledger of a finished job."""
    return list(result_docs.iter_persons(job["_id"], job["result"]["layout"]["person_pages"]))


def bins_of(job: dict, unit: str = "second") -> list[dict]:
    """The stored chart bins of a finished job."""
    return json.loads(result_docs.text(result_docs.BINS, result_docs.bins_id(job["_id"], unit)))


def long_clip(path: Path) -> Path:
    """A 1,200-frame clip of two faces walking (384x216): long enough that a job killed after its
    first 500-frame bucket still had most of its work to do, however fast the machine."""
    import cv2

    from shared.assets import asset_path
    from tests.media import walking_faces, write_frames

    crops = asset_path("mask_crops") / "without_mask"
    faces = [cv2.imread(str(crops / f"without_mask_000{i}.jpg")) for i in (1, 2)]
    frames = (f for f, _ in walking_faces(faces, frames=1200, size=(384, 216), face_px=70, step=0.5))
    return write_frames(path, frames)


def wait_until(predicate, timeout: float, what: str):
    """Poll until predicate() is truthy (its value), or fail saying what never happened."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 - a server being restarted answers with errors meanwhile
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"not {what} after {timeout:.0f} s")


def finished(job_id):
    """The job once it is final, else None."""
    job = jobs.get(job_id)
    return job if job["status"] in jobs.FINAL else None


def assert_one_set_of_everything(job: dict, frames: int) -> None:
    """A succeeded job has exactly one record per frame, one annotated output and one poster."""
    assert job["status"] == "succeeded", job.get("error")
    numbers = [r["frame"] for r in frame_records(job)]
    assert numbers == list(range(frames)), "frame records missing or repeated"
    roles = sorted(f["metadata"]["role"] for f in result_files(job["_id"]))
    assert roles.count("annotated") == 1 and roles.count("poster") == 1, roles
    bucket_ids = [d["_id"] for d in get_db()[result_docs.FRAMES].find({"job_id": job["_id"]}, {"_id": 1})]
    assert len(bucket_ids) == job["result"]["layout"]["buckets"], "a bucket of another attempt was left"


def stored_file_ids(job: dict) -> list:
    """The job's `results` files as recorded and as found by metadata (take this before a delete)."""
    found = get_db()[f"{RESULTS}.files"].find({"metadata.job_id": job["_id"]}, {"_id": 1})
    by_meta = [f["_id"] for f in found]
    return sorted(set(result_docs.job_files(job)) | set(by_meta))


def leftovers(job: dict, file_ids: list = ()) -> dict[str, int]:
    """Everything still stored for a job, by where (empty once it is deleted)."""
    jid = str(job["_id"])
    d = get_db()
    found = {
        "jobs": d.jobs.count_documents({"_id": job["_id"]}),
        "upload": d[f"{UPLOADS}.files"].count_documents({"_id": job["input_id"]}),
        "upload chunks": d[f"{UPLOADS}.chunks"].count_documents({"files_id": job["input_id"]}),
        "result files": d[f"{RESULTS}.files"].count_documents({"metadata.job_id": job["_id"]}),
        "result chunks": d[f"{RESULTS}.chunks"].count_documents({"files_id": {"$in": list(file_ids)}}),
        "heartbeats": d.heartbeats.count_documents({"_id": jid}),
        result_docs.FILES: d[result_docs.FILES].count_documents({"_id": jid}),
    }
    for name in (result_docs.FRAMES, result_docs.ROWS, result_docs.PERSONS, result_docs.BINS,
                 result_docs.DETAILS):
        found[name] = d[name].count_documents({"job_id": job["_id"]})
    return {k: v for k, v in found.items() if v}
