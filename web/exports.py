"""Downloads of a clip: the annotated output, the original, per-frame CSV/JSON and per-person CSV.

Per-frame exports stream from the `frames` collection through a cursor in small batches: an hour of
video (90,000 documents) never sits in the web process's memory.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import PurePath

from flask import Response, abort

from shared import jobs
from shared.db import RESULTS, UPLOADS, get_db
from web import store
from web.errors import ApiError
from web.views.media import send_stored

FRAME_BATCH = 500
FRAME_COLUMNS = ["frame", "t", "faces", "masked", "unmasked", "incorrect", "unknown", "compliance"]
PERSON_COLUMNS = ["track_id", "vote", "first_s", "last_s", "first_frame", "last_frame", "frames",
                  "masked_votes", "unmasked_votes", "incorrect_votes", "mean_p_mask", "best_frame",
                  "best_box"]
KINDS = ("annotated", "original", "frames.csv", "frames.json", "persons.csv")


def stem(clip: dict) -> str:
    """A filesystem-friendly stem of the clip's name for download file names."""
    name = PurePath(clip.get("filename") or "clip").stem
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "clip"


def download(clip: dict, what: str) -> Response:
    """The named download of a clip the caller may see."""
    if what not in KINDS:
        abort(404)
    if what == "original":
        return send_stored(UPLOADS, clip["input_id"], download_name=clip.get("filename") or "original")
    if clip["status"] != jobs.SUCCEEDED:
        raise ApiError(409, "not_ready",
                       f"The clip is {clip['status']}; results exist once it has succeeded.")
    result, name = clip["result"], stem(clip)
    if what == "annotated":
        suffix = ".mp4" if result.get("output_type") == "video/mp4" else ".jpg"
        return send_stored(RESULTS, result["output_id"], download_name=f"{name}.annotated{suffix}")
    if what == "frames.csv":
        return _attachment(frames_csv(clip["_id"]), "text/csv; charset=utf-8", f"{name}.frames.csv")
    if what == "frames.json":
        return _attachment(frames_json(clip), "application/json", f"{name}.frames.json")
    return _attachment(persons_csv(store.data(clip)), "text/csv; charset=utf-8", f"{name}.persons.csv")


def _attachment(body: Iterable[str], mimetype: str, filename: str) -> Response:
    resp = Response(body, mimetype=mimetype)
    resp.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    resp.headers["Cache-Control"] = "private, no-store"
    return resp


def iter_frames(job_id, projection: dict | None = None) -> Iterator[dict]:
    """The clip's frame documents in frame order, fetched a batch at a time."""
    cursor = (get_db().frames.find({"job_id": jobs.object_id(job_id)}, projection or {"_id": 0, "job_id": 0})
              .sort("frame", 1).batch_size(FRAME_BATCH))
    try:
        yield from cursor
    finally:
        cursor.close()


def _rate(counts: dict) -> float | str:
    decided = sum(counts.get(k, 0) for k in ("masked", "unmasked", "incorrect"))
    return round(counts.get("masked", 0) / decided, 4) if decided else ""


def _csv_lines(rows: Iterable[list]) -> Iterator[str]:
    """CSV text, yielded every few hundred rows."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for n, row in enumerate(rows, 1):
        writer.writerow(row)
        if n % 500 == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    if buf.getvalue():
        yield buf.getvalue()


def frames_csv(job_id) -> Iterator[str]:
    """One row per analysed frame: face counts by class and the frame's compliance."""
    def rows():
        yield FRAME_COLUMNS
        for f in iter_frames(job_id, {"_id": 0, "frame": 1, "t": 1, "counts": 1}):
            c = f.get("counts") or {}
            yield [f["frame"], round(f.get("t") or 0.0, 3), c.get("faces", 0), c.get("masked", 0),
                   c.get("unmasked", 0), c.get("incorrect", 0), c.get("unknown", 0), _rate(c)]
    return _csv_lines(rows())


def frames_json(clip: dict) -> Iterator[str]:
    """{"clip", "filename", "fps", "frames": [...]} with every face of every frame, streamed."""
    head = {"clip": str(clip["_id"]), "filename": clip.get("filename"), "fps": clip["result"].get("fps"),
            "width": clip["result"].get("width"), "height": clip["result"].get("height")}
    yield json.dumps(head)[:-1] + ',"frames":[\n'
    first = True
    batch = []
    for f in iter_frames(clip["_id"]):
        batch.append(("" if first else ",\n") + store.dumps(f))
        first = False
        if len(batch) >= FRAME_BATCH:
            yield "".join(batch)
            batch = []
    yield "".join(batch) + "\n]}\n"


def persons_csv(body: dict) -> Iterator[str]:
    """One row per tracked person with the vote and its tallies."""
    def rows():
        yield PERSON_COLUMNS
        for page in range(1, len(body.get("persons_json") or []) + 1):
            for p in store.persons_page(body, page):
                votes = p.get("votes") or {}
                box = p.get("best_box")
                yield [p.get("track_id"), p.get("vote"), p.get("first_s"), p.get("last_s"),
                       p.get("first_frame"), p.get("last_frame"), p.get("frames"),
                       votes.get("masked", 0), votes.get("unmasked", 0), votes.get("incorrect", 0),
                       p.get("mean_p_mask"), p.get("best_frame"),
                       " ".join(str(round(v)) for v in box) if box else ""]
    return _csv_lines(rows())
