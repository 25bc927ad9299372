"""Where a job's results live in MongoDB: frame buckets, person pages, chart bins, violations, file ledger.

Every document is keyed by an `_id` derived from the job id, so a page, a seek, an export and a delete
are lookups by `_id` (or by a list of them): the one query every server answers from an index, MongoDB
and FerretDB alike. The job document keeps only the summary and a `layout` saying how many buckets
and pages there are. Payloads are JSON text in the shared/results.py forms, zlib-compressed (`z`):
FerretDB decodes one binary field in one go but a structured document field by field (measured ~25x
slower for a bucket), and its cost grows with the bytes it parses, which compression cuts ~8x. A long
payload is split into parts so that no document approaches MongoDB's 16 MB limit.

    frames   {_id: "<job>:f:<n:06d>", job_id, n, first, frames, index, z, parts}  frames n*500 ..
    frame_rows {_id: "<job>:r:<n:06d>", job_id, n, csv}                 the same frames as CSV rows
    persons  {_id: "<job>:p:<page:04d>", job_id, page, z, parts}       100 people a page, from 1
             {_id: "<job>:v", job_id, z, parts}                         the violations list
    bins     {_id: "<job>:b:<unit>", job_id, unit, z, parts}            unit: second | minute
    details  {_id: "<job>:d", job_id, z, parts}                         models and settings of the run
    <any>    {_id: "<head id>:<k>", z}                                  part k (1..) of a long payload
    job_files {_id: "<job>", job_id, files: [ObjectId]}                  results files an attempt stores
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator

from bson import Binary, ObjectId

from shared import results, storage
from shared.db import RESULTS, get_db
from shared.errors import BadInput

FRAMES, ROWS, PERSONS, BINS, DETAILS = "frames", "frame_rows", "persons", "bins", "details"
FILES = "job_files"
BUCKET_FRAMES = 500  # frames per bucket: a page of 500 anywhere reads at most two buckets
PERSONS_PAGE = 100
UNITS = ("second", "minute")
PART_BYTES = 4 * 1024 * 1024  # compressed bytes per document: far below 16 MB
MAX_PARTS = 16  # a bucket of 64 MB compressed (thousands of faces in every frame) is refused
ID_BATCH = 1000  # ids per `$in` (the patched FerretDB answers up to 1000 from its index)


def bucket_id(job_id, n: int) -> str:
    """The _id of frame bucket n (frames n*BUCKET_FRAMES onwards)."""
    return f"{job_id}:f:{n:06d}"


def rows_id(job_id, n: int) -> str:
    """The _id of bucket n's CSV rows (a small document: the CSV export reads only these)."""
    return f"{job_id}:r:{n:06d}"


def page_id(job_id, page: int) -> str:
    """The _id of person page `page` (from 1)."""
    return f"{job_id}:p:{page:04d}"


def violations_id(job_id) -> str:
    """The _id of the violations list."""
    return f"{job_id}:v"


def details_id(job_id) -> str:
    """The _id of the run's details (models, settings)."""
    return f"{job_id}:d"


def bins_id(job_id, unit: str) -> str:
    """The _id of the chart bins of one unit."""
    return f"{job_id}:b:{unit}"


def text_docs(_id: str, text: str, **fields) -> list[dict]:
    """A head document (fields, the first part of the compressed text, the number of parts) and any
    further parts."""
    data = zlib.compress(text.encode("ascii"), 1)  # level 1: ~8x on this JSON, ~100 MB/s
    pieces = [data[i:i + PART_BYTES] for i in range(0, len(data), PART_BYTES)] or [b""]
    if len(pieces) > MAX_PARTS:
        raise BadInput(f"too many faces to store ({len(text) // 1_000_000} MB of statistics in "
                       f"{BUCKET_FRAMES} frames)")
    head = {"_id": _id, **fields, "z": Binary(pieces[0]), "parts": len(pieces)}
    return [head, *({"_id": f"{_id}:{k}", "z": Binary(p)} for k, p in enumerate(pieces[1:], 1))]


def put(collection: str, docs: list[dict]) -> None:
    """Write documents by _id, replacing what an earlier attempt wrote under the same ids."""
    coll = get_db()[collection]
    for doc in docs:
        coll.replace_one({"_id": doc["_id"]}, doc, upsert=True)


class BucketWriter:
    """Gathers frame records (in frame order) into buckets; hands each bucket's documents on as
    write(collection, docs): the bucket (records as JSON text with an index of where each one lies)
    and its CSV rows."""

    def __init__(self, job_id, write: Callable[[str, list[dict]], None]):
        self.job_id, self.write = job_id, write
        self.records: list[dict] = []
        self.n = 0
        self.buckets = 0  # buckets 0 .. buckets-1 may exist (empty ones are never written)

    def add(self, record: dict) -> None:
        """One frame record (results.frame_record); writes the previous bucket when this one starts."""
        n = record["frame"] // BUCKET_FRAMES
        if n != self.n:
            self.flush()
            self.n = n
        self.records.append(record)

    def flush(self) -> None:
        """Write the bucket being gathered, if any."""
        if not self.records:
            return
        texts = [results.dumps(r) for r in self.records]
        index, at = [], 1
        for r, t in zip(self.records, texts, strict=True):  # frame, start, end of each record in json
            index += [r["frame"], at, at + len(t)]
            at += len(t) + 1
        self.write(FRAMES, text_docs(bucket_id(self.job_id, self.n), "[" + ",".join(texts) + "]",
                                     job_id=self.job_id, n=self.n, first=self.records[0]["frame"],
                                     frames=len(self.records), index=json.dumps(index)))
        rows = "".join(results.csv_lines(results.frame_row(r) for r in self.records))
        self.write(ROWS, [{"_id": rows_id(self.job_id, self.n), "job_id": self.job_id, "n": self.n,
                           "csv": rows}])
        self.buckets = self.n + 1
        self.records = []


def write_read_model(job_id, *, bins: dict, persons: list[dict], buckets: int,
                     details: dict | None = None) -> dict:
    """Person pages, violations, bins and details of a finished analysis; returns the job's `layout`."""
    pages = [persons[i:i + PERSONS_PAGE] for i in range(0, len(persons), PERSONS_PAGE)]
    for page, chunk in enumerate(pages, 1):
        put(PERSONS, text_docs(page_id(job_id, page), results.dumps(chunk), job_id=job_id, page=page))
    found = results.violations(persons)
    put(PERSONS, text_docs(violations_id(job_id), results.dumps(found), job_id=job_id))
    for unit in UNITS:
        put(BINS, text_docs(bins_id(job_id, unit), results.dumps(bins.get(unit) or []), job_id=job_id,
                            unit=unit))
    put(DETAILS, text_docs(details_id(job_id), results.dumps(details or {}), job_id=job_id))
    return {"bucket_frames": BUCKET_FRAMES, "buckets": buckets, "persons_page": PERSONS_PAGE,
            "person_pages": len(pages), "persons": len(persons), "violations": len(found)}


# --- reading


def _texts(collection: str, ids: list[str]) -> dict[str, dict]:
    """{_id: head document, its whole text in `json`} of the ids that exist (a query per 1000 ids)."""
    coll = get_db()[collection]
    heads: dict[str, dict] = {}
    for i in range(0, len(ids), ID_BATCH):
        for doc in coll.find({"_id": {"$in": ids[i:i + ID_BATCH]}}):
            heads[doc["_id"]] = doc
    extra = [f"{h['_id']}:{k}" for h in heads.values() for k in range(1, h.get("parts") or 1)]
    if extra:
        parts = {d["_id"]: bytes(d["z"]) for i in range(0, len(extra), ID_BATCH)
                 for d in coll.find({"_id": {"$in": extra[i:i + ID_BATCH]}})}
    for h in heads.values():
        rest = [parts.get(f"{h['_id']}:{k}", b"") for k in range(1, h.get("parts") or 1)] if extra else []
        h["json"] = zlib.decompress(b"".join([bytes(h.pop("z")), *rest])).decode("ascii")
    return heads


def text(collection: str, _id: str, default: str = "[]") -> str:
    """The whole JSON text of one head document (default when it does not exist)."""
    doc = _texts(collection, [_id]).get(_id)
    return doc["json"] if doc else default


def frames_page_text(job_id, start: int, limit: int) -> str:
    """Frame records start .. start+limit-1 (those that exist) as a JSON array, cut from the buckets
    that hold them by their index (nothing is parsed)."""
    if limit <= 0:
        return "[]"
    first, last = start // BUCKET_FRAMES, (start + limit - 1) // BUCKET_FRAMES
    ids = [bucket_id(job_id, n) for n in range(first, last + 1)]
    found = _texts(FRAMES, ids)
    out = []
    for _id in ids:
        if _id not in found:
            continue
        text, index = found[_id]["json"], json.loads(found[_id]["index"])
        out += [text[index[i + 1]:index[i + 2]] for i in range(0, len(index), 3)
                if start <= index[i] < start + limit]
    return "[" + ",".join(out) + "]"


def frames_page(job_id, start: int, limit: int) -> list[dict]:
    """frames_page_text parsed."""
    return json.loads(frames_page_text(job_id, start, limit))


def iter_buckets(job_id, buckets: int, *, per_query: int = 4) -> Iterator[dict]:
    """Every frame bucket head in order (whole text in `json`), a few per round trip."""
    for n in range(0, buckets, per_query):
        ids = [bucket_id(job_id, k) for k in range(n, min(buckets, n + per_query))]
        found = _texts(FRAMES, ids)
        yield from (found[i] for i in ids if i in found)


def iter_rows(job_id, buckets: int, *, per_query: int = 20) -> Iterator[str]:
    """The CSV rows of every bucket in order (no header), twenty buckets (10,000 frames) a query."""
    coll = get_db()[ROWS]
    for n in range(0, buckets, per_query):
        ids = [rows_id(job_id, k) for k in range(n, min(buckets, n + per_query))]
        found = {d["_id"]: d["csv"] for d in coll.find({"_id": {"$in": ids}})}
        yield from (found[i] for i in ids if i in found)


def persons_page_text(job_id, page: int) -> str:
    """One page (from 1) of the person ledger as a JSON array."""
    return text(PERSONS, page_id(job_id, page))


def all_persons_text(job_id, pages: int) -> str:
    """The whole person ledger as one JSON array, joined from its pages."""
    ids = [page_id(job_id, p) for p in range(1, pages + 1)]
    found = _texts(PERSONS, ids)
    inner = [found[i]["json"][1:-1] for i in ids if i in found and found[i]["json"] != "[]"]
    return "[" + ",".join(inner) + "]"


# --- files an attempt stores, and deleting everything


def record_files(job_id, file_ids: list[ObjectId]) -> None:
    """Note the results files an attempt is about to store, so that whatever it leaves can be removed."""
    get_db()[FILES].replace_one({"_id": str(job_id)}, {"_id": str(job_id), "job_id": job_id,
                                                       "files": list(file_ids)}, upsert=True)


def recorded_files(job_id) -> list[ObjectId] | None:
    """The results files last recorded for the job; None when nothing was recorded."""
    doc = get_db()[FILES].find_one({"_id": str(job_id)})
    return None if doc is None else list(doc.get("files") or [])


def _with_parts(_id: str) -> list[str]:
    return [_id, *(f"{_id}:{k}" for k in range(1, MAX_PARTS))]


def _delete_ids(collection: str, ids: list[str]) -> int:
    coll, n = get_db()[collection], 0
    for i in range(0, len(ids), ID_BATCH):
        n += coll.delete_many({"_id": {"$in": ids[i:i + ID_BATCH]}}).deleted_count
    return n


def _delete_numbered(collection: str, id_of: Callable[[int], str], first: int, known: int) -> None:
    """Delete numbered documents first..known-1 with their parts, then onwards while any are found.

    An interrupted attempt has no layout (known = first): buckets and pages are written in order, so
    probing a batch at a time until one comes back empty finds them all.
    """
    step = ID_BATCH // MAX_PARTS
    if known > first:
        _delete_ids(collection, [i for n in range(first, known) for i in _with_parts(id_of(n))])
    n = max(first, known)
    while _delete_ids(collection, [i for k in range(n, n + step) for i in _with_parts(id_of(k))]):
        n += step


def delete_read_model(job_id, layout: dict | None) -> None:
    """Remove the job's buckets, pages, violations and bins (layout None: as far as they exist)."""
    layout = layout or {}
    _delete_numbered(FRAMES, lambda n: bucket_id(job_id, n), 0, layout.get("buckets") or 0)
    _delete_numbered(ROWS, lambda n: rows_id(job_id, n), 0, layout.get("buckets") or 0)
    _delete_numbered(PERSONS, lambda p: page_id(job_id, p), 1, 1 + (layout.get("person_pages") or 0))
    _delete_ids(PERSONS, _with_parts(violations_id(job_id)))
    _delete_ids(BINS, [i for u in UNITS for i in _with_parts(bins_id(job_id, u))])
    _delete_ids(DETAILS, _with_parts(details_id(job_id)))


def forget_files(job_id) -> None:
    """Drop the file ledger (its files are deleted)."""
    get_db()[FILES].delete_one({"_id": str(job_id)})


def job_files(job: dict, *, legacy: bool = True) -> list:
    """Every results file of a job: the ledger, the result's own ids, explanation images.

    legacy: a job without a ledger (stored before it existed) has its files found by their metadata,
    a scan of `results.files` on FerretDB; a starting attempt passes False (nothing stored yet).
    """
    recorded = recorded_files(job["_id"])
    if recorded is None and not legacy:
        recorded = []
    if recorded is None:
        recorded = [f["_id"] for f in get_db()[f"{RESULTS}.files"].find({"metadata.job_id": job["_id"]},
                                                                       {"_id": 1})]
    result = job.get("result") or {}
    own = [result.get("output_id"), result.get("thumbnail_id"), *(job.get("pending_files") or []),
           (job.get("anonymised") or {}).get("file_id")]
    for exp in (job.get("explanations") or {}).values():
        own += [exp.get(k) for k in ("crop_id", "gradcam_id", "occlusion_id")]
    return list(dict.fromkeys([*recorded, *(f for f in own if f)]))


def delete_outputs(job: dict) -> None:
    """Remove everything analysis left for a job: results files, buckets, pages, bins, the ledger."""
    storage.delete_files(RESULTS, job_files(job))
    delete_read_model(job["_id"], (job.get("result") or {}).get("layout"))
    forget_files(job["_id"])


def iter_persons(job_id, pages: int) -> Iterator[dict]:
    """Every person record in ledger order (track id), a thousand pages per query."""
    ids = [page_id(job_id, p) for p in range(1, pages + 1)]
    for i in range(0, len(ids), ID_BATCH):
        found = _texts(PERSONS, ids[i:i + ID_BATCH])
        for _id in ids[i:i + ID_BATCH]:
            if _id in found:
                yield from json.loads(found[_id]["json"])


def find_person(job: dict, track_id: int) -> dict | None:
    """One person record of a succeeded job by track id, or by any id it had in a segment of a split
    clip (`track_ids`: the ids drawn on the video); None when there is no such person."""
    pages = ((job.get("result") or {}).get("layout") or {}).get("person_pages") or 0
    return next((p for p in iter_persons(job["_id"], pages)
                 if p.get("track_id") == track_id or track_id in (p.get("track_ids") or ())), None)
