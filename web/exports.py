"""Downloads of a clip: the annotated output, the original, per-frame CSV/JSON and per-person CSV.

Per-frame exports stream the clip's buckets in order, several per round trip (looked up by `_id`):
the CSV joins each bucket's stored rows (small documents of their own), the JSON each bucket's stored
records, so a four-hour clip (360,000 frames) never sits in the web's memory nor is parsed on the way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import PurePath

from flask import Response, abort

from shared import jobs, result_docs, results
from shared.db import RESULTS, UPLOADS
from web import audit, store
from web.errors import ApiError
from web.privacy import check_footage
from web.views.media import content_disposition, send_stored

FRAME_COLUMNS = results.FRAME_COLUMNS
PERSON_COLUMNS = results.PERSON_COLUMNS
KINDS = ("annotated", "original", "frames.csv", "frames.json", "persons.csv", "anonymised")


def stem(clip: dict) -> str:
    """A filesystem-friendly stem of the clip's name for download file names (letters of any script kept)."""
    name = PurePath((clip.get("filename") or "clip").replace("/", " ").replace("\\", " ")).stem
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "clip"


def download(clip: dict, what: str) -> Response:
    """The named download of a clip the caller may see."""
    if what not in KINDS:
        abort(404)
    if what in ("original", "annotated", "anonymised"):
        check_footage(clip, anonymised_ok=what == "anonymised")
    if what == "original":
        audit.record_download(clip, what)
        return send_stored(UPLOADS, clip["input_id"], download_name=clip.get("filename") or "original")
    if clip["status"] != jobs.SUCCEEDED:
        raise ApiError(409, "not_ready",
                       f"The clip is {clip['status']}; results exist once it has succeeded.")
    audit.record_download(clip, what)  # refused (503) when it cannot be recorded
    result, name = clip["result"], stem(clip)
    if what == "annotated":
        suffix = ".mp4" if result.get("output_type") == "video/mp4" else ".jpg"
        return send_stored(RESULTS, result["output_id"], download_name=f"{name}.annotated{suffix}")
    if what == "anonymised":
        copy = clip.get("anonymised") or {}
        if not copy.get("file_id"):
            raise ApiError(409, "not_ready", "There is no anonymised copy of this clip yet: ask for one.")
        suffix = ".mp4" if clip["kind"] == "video" else ".jpg"
        return send_stored(RESULTS, copy["file_id"], download_name=f"{name}.anonymised{suffix}")
    if what == "frames.csv":
        return _attachment(frames_csv(clip), "text/csv; charset=utf-8", f"{name}.frames.csv")
    if what == "frames.json":
        return _attachment(frames_json(clip), "application/json", f"{name}.frames.json")
    return _attachment(persons_csv(clip), "text/csv; charset=utf-8", f"{name}.persons.csv")


def _attachment(body: Iterable[str], mimetype: str, filename: str) -> Response:
    resp = Response(body, mimetype=mimetype)
    resp.headers["Content-Disposition"] = content_disposition(filename)
    resp.headers["Cache-Control"] = "private, no-store"
    return resp


def _buckets(clip: dict) -> Iterator[dict]:
    return result_docs.iter_buckets(clip["_id"], store.layout(clip).get("buckets") or 0)


def frames_csv(clip: dict) -> Iterator[str]:
    """One row per analysed frame (results.FRAME_COLUMNS): face counts by class and the compliance."""
    yield from results.csv_lines([FRAME_COLUMNS])
    yield from result_docs.iter_rows(clip["_id"], store.layout(clip).get("buckets") or 0)


def frames_json(clip: dict) -> Iterator[str]:
    """{"clip", "filename", "fps", "width", "height", "frames": [...]} with every face, streamed."""
    r = clip["result"]
    head = {"clip": str(clip["_id"]), "filename": clip.get("filename"), "fps": r.get("fps"),
            "width": r.get("width"), "height": r.get("height")}
    yield json.dumps(head)[:-1] + ',"frames":[\n'
    first = True
    for bucket in _buckets(clip):
        inner = bucket["json"][1:-1]  # a bucket is a JSON array of frame records
        if inner:
            yield ("" if first else ",\n") + inner
            first = False
    yield "\n]}\n"


def persons_csv(clip: dict) -> Iterator[str]:
    """One row per tracked person (results.PERSON_COLUMNS) with the vote and its tallies."""
    def rows():
        yield PERSON_COLUMNS
        for p in result_docs.iter_persons(clip["_id"], store.layout(clip).get("person_pages") or 0):
            yield results.person_row(p)
    return results.csv_lines(rows())
