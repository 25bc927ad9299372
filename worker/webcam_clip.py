"""The webcam check's chunks of one session made one clip of the user, listed like any upload.

Each chunk was analysed as its own job as it arrived (its result shown at once), with its place in the
session's clip (worker/live_join.place_chunk); when the page stops, this task copies the chunks' packets
in order into one WebM (no re-encoding, each chunk's times following the last's), stores it as an
upload of the user and queues it like any upload, its result joined from the chunks' (as a camera
recording's).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from shared import jobs, storage
from shared.celery_app import JOIN_WEBCAM, PROCESS_JOB, app, enqueue
from shared.db import UPLOADS, get_db
from worker.recorder import concatenate
from worker.tasks import TEMP_PREFIX, TRANSIENT

log = logging.getLogger(__name__)


@app.task(name=JOIN_WEBCAM, acks_late=True, reject_on_worker_lost=True, autoretry_for=TRANSIENT,
          retry_backoff=5, max_retries=5)
def join_webcam(user_id: str, session: str) -> str:
    """Join the session's chunks into one clip of the user; the clip's id (the same one when sent twice)."""
    owner = f"webcam:{user_id}"
    done = get_db().jobs.find_one({"owner": user_id, "webcam_session": session}, {"_id": 1})
    if done:
        return str(done["_id"])
    chunks = list(get_db().jobs.find({"owner": owner, "webcam_session": session}).sort("seq", 1))
    if not chunks:
        return "nothing"
    ext = Path(chunks[0]["filename"]).suffix or ".webm"
    workdir = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}webcam-{session}-"))
    try:
        paths = [storage.save_to(UPLOADS, c["input_id"], workdir / f"{c['seq']:05d}{ext}") for c in chunks]
        out = workdir / f"webcam{ext}"
        concatenate(paths, out, fmt="webm" if ext == ".webm" else "mp4")
        when = datetime.fromtimestamp(chunks[0].get("stored_at") or time.time(), UTC)
        name = f"webcam {when:%Y-%m-%d %H-%M-%S}{ext}"
        ctype = "video/webm" if ext == ".webm" else "video/mp4"
        file_id = storage.put_path(UPLOADS, out, name, content_type=ctype)
        job = jobs.create(owner=user_id, filename=name, kind="video", input_id=file_id,
                          size=out.stat().st_size, content_type=ctype)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    get_db().jobs.update_one({"_id": job["_id"]}, {"$set": {  # its result is joined from the chunks'
        "webcam_session": session, "chunks": len(chunks), "recording_id": f"webcam:{session}",
        "live_parts": [c["_id"] for c in chunks]}})
    enqueue(PROCESS_JOB, str(job["_id"]))
    log.info("webcam session %s: %d chunks joined into clip %s", session, len(chunks), job["_id"])
    return str(job["_id"])
