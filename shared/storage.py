"""Videos and images in GridFS: streamed put and get, HTTP byte ranges, delete."""

from __future__ import annotations

import io
import re
import shutil
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import gridfs
from bson import Binary, ObjectId
from bson.errors import InvalidId

from shared.db import get_db
from shared.errors import NotFound, RangeNotSatisfiable

CHUNK = 1024 * 1024
WRITE_BATCH = 2  # chunks per insert (one insert in flight while the next are read)
READ_BATCH = 2  # chunks per query (one batch read ahead)
DELETE_BATCH = 1000  # chunk ids per delete (the patched FerretDB deletes up to 1000 by key)
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def put(bucket: str, stream: BinaryIO, filename: str, *, content_type: str,
        metadata: dict | None = None, file_id: ObjectId | None = None) -> ObjectId:
    """Stream a file-like object into GridFS a couple of chunks per insert; returns its id.

    Standard GridFS layout (files + chunks), written by hand because pymongo's GridIn buffers up to
    the server's message size (48 MB) before inserting. One insert runs in a background thread while
    the next chunks are read, so the stream and the server work at once; at most a few chunks are held.
    """
    database = get_db()
    chunks, files = database[f"{bucket}.chunks"], database[f"{bucket}.files"]
    file_id = file_id or ObjectId()
    n = length = 0
    pending, pool = None, None
    try:
        while True:
            batch = []
            while len(batch) < WRITE_BATCH:
                block = read_full(stream, CHUNK)
                if not block:
                    break
                batch.append({"_id": chunk_id(file_id, n), "files_id": file_id, "n": n,
                              "data": Binary(block)})
                n += 1
                length += len(block)
            if pending is not None:
                pending.result()  # raises the insert's error here
                pending = None
            if len(batch) < WRITE_BATCH:  # the last batch (a small file's only one): no thread needed
                if batch:
                    chunks.insert_many(batch, ordered=True)
                break
            if pool is None:
                pool = ThreadPoolExecutor(1, thread_name_prefix="gridfs-put")
            pending = pool.submit(chunks.insert_many, batch, ordered=True)
        files.insert_one({
            "_id": file_id, "length": length, "chunkSize": CHUNK, "uploadDate": datetime.now(UTC),
            "filename": filename, "metadata": {"content_type": content_type, **(metadata or {})},
        })
    except BaseException:
        if pending is not None:
            pending.exception()  # let the insert in flight finish before its chunks are removed
        _delete_chunks(chunks, file_id, n + WRITE_BATCH)  # nothing half-stored
        raise
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    return file_id


def chunk_id(file_id: ObjectId, n: int) -> str:
    """The _id of chunk n of a file we wrote: lets a reader fetch any chunk by _id alone.

    GridFS readers find chunks by (files_id, n) and ignore _id, so any unique _id is valid; a lookup
    by _id is the one query every server answers from an index (FerretDB pushes down nothing else).
    """
    return f"{file_id}:{n}"


def read_full(stream: BinaryIO, size: int) -> bytes:
    """Read size bytes unless the stream ends first (raw streams may return short reads)."""
    parts, got = [], 0
    while got < size:
        block = stream.read(size - got)
        if not block:
            break
        parts.append(block)
        got += len(block)
    return b"".join(parts)


def put_path(bucket: str, path: Path, filename: str, *, content_type: str,
             metadata: dict | None = None) -> ObjectId:
    """Stream a local file into GridFS."""
    with open(path, "rb") as f:
        return put(bucket, f, filename, content_type=content_type, metadata=metadata)


class StoredFile(io.RawIOBase):
    """A seekable reader of one GridFS file that fetches chunks by _id, a couple per round trip.

    While the caller consumes one batch the next is already being fetched (a background thread), so
    the server decodes while the caller sends. Files written by other GridFS clients (ObjectId chunk
    ids) are read through a cursor over (files_id, n) with an explicit small batch: pymongo's GridOut
    asks for all remaining chunks at once, which FerretDB answers in one reply over its 48 MB limit.
    """

    BATCH = READ_BATCH

    def __init__(self, bucket: str, doc: dict):
        super().__init__()
        self._chunks = get_db()[f"{bucket}.chunks"]
        self._id = doc["_id"]
        self.filename = doc.get("filename")
        self.length = int(doc["length"])
        self.chunk_size = int(doc["chunkSize"])
        self.metadata = doc.get("metadata") or {}
        self.upload_date = doc.get("uploadDate")
        self._n_chunks = -(-self.length // self.chunk_size) if self.chunk_size else 0
        self._pos = 0
        self._cursor = None
        self._next_n = -1  # chunk number the cursor yields next
        self._cache: dict[int, bytes] = {}
        self._ahead: tuple[int, Future] | None = None  # (first chunk, its fetch) running in the pool
        self._pool: ThreadPoolExecutor | None = None
        self._by_id = True
        self._last_n = self._n_chunks - 1  # no chunk beyond this one is fetched (see until())

    def until(self, last_byte: int) -> StoredFile:
        """Read no further than last_byte: a Range request fetches only the chunks it covers."""
        self._last_n = min(self._n_chunks - 1, last_byte // self.chunk_size) if self.chunk_size else -1
        return self

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.length}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def _fetch(self, first: int) -> dict[int, bytes]:
        """Chunks first .. first+BATCH-1 (those of the file) by _id, in one query."""
        stop = self._last_n + 1 if first <= self._last_n else self._n_chunks  # past the hint: no limit
        ids = [chunk_id(self._id, n) for n in range(first, min(stop, first + self.BATCH))]
        return {d["n"]: bytes(d["data"]) for d in self._chunks.find({"_id": {"$in": ids}})}

    def _chunk(self, n: int) -> bytes:
        """Chunk n: by _id for files we wrote, else through a cursor over (files_id, n)."""
        if n in self._cache:
            return self._cache[n]
        data = None
        if self._by_id:
            if self._ahead is not None and self._ahead[0] == n:
                self._cache = self._ahead[1].result()
            else:
                self._cache = self._fetch(n)
            self._ahead = None
            data = self._cache.get(n)
            if data is None:
                self._by_id = False  # written by another GridFS client: ObjectId chunk ids
            elif n + self.BATCH <= self._last_n:  # read ahead: the next batch while this one is used
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(1, thread_name_prefix="gridfs-read")
                self._ahead = (n + self.BATCH, self._pool.submit(self._fetch, n + self.BATCH))
        if data is None:
            doc = self._from_cursor(n)
            if doc is None or doc["n"] != n:
                raise gridfs.errors.CorruptGridFile(f"chunk {n} of file {self._id} is missing")
            data = bytes(doc["data"])
            self._cache = {n: data}
        return data

    def _from_cursor(self, n: int) -> dict | None:
        """Chunk n from the open cursor when it is next in line, else from a new cursor."""
        if self._cursor is None or n != self._next_n:
            if self._cursor is not None:
                self._cursor.close()
            self._cursor = (self._chunks.find({"files_id": self._id, "n": {"$gte": n}})
                            .sort("n", 1).batch_size(4))
            self._next_n = n
        self._next_n = n + 1
        return next(self._cursor, None)

    def read(self, size: int = -1) -> bytes:
        """Up to size bytes from the current position (all the rest when size < 0)."""
        end = self.length if size is None or size < 0 else min(self.length, self._pos + size)
        parts = []
        while self._pos < end:
            n, offset = divmod(self._pos, self.chunk_size)
            data = self._chunk(n)[offset:offset + end - self._pos]
            if not data:
                break
            parts.append(data)
            self._pos += len(data)
        return b"".join(parts)

    def readinto(self, buf) -> int:
        data = self.read(len(buf))
        buf[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        self._cache, self._ahead = {}, None
        super().close()


def open_file(bucket: str, file_id) -> StoredFile:
    """A seekable, streaming reader; NotFound when there is no such file."""
    try:
        oid = ObjectId(str(file_id))
    except (InvalidId, TypeError):
        raise NotFound(f"no file {file_id} in {bucket}") from None
    doc = get_db()[f"{bucket}.files"].find_one({"_id": oid})
    if doc is None:
        raise NotFound(f"no file {file_id} in {bucket}")
    return StoredFile(bucket, doc)


def exists(bucket: str, file_id) -> bool:
    """Whether the file is stored (one lookup by _id)."""
    try:
        return get_db()[f"{bucket}.files"].count_documents({"_id": ObjectId(str(file_id))}, limit=1) > 0
    except (InvalidId, TypeError):
        return False


def save_to(bucket: str, file_id, path: Path) -> Path:
    """Copy a stored file to a local path, streamed."""
    with open_file(bucket, file_id) as src, open(path, "wb") as dst:
        shutil.copyfileobj(src, dst, CHUNK)
    return path


def delete(bucket: str, file_id) -> bool:
    """Delete a stored file by the _ids of its chunks; False when its files document was already gone.

    Chunks of a file whose writing was interrupted (no files document) are removed too.
    """
    return bool(delete_files(bucket, [file_id]))


def delete_files(bucket: str, file_ids) -> int:
    """Delete stored files by the _ids of their chunks (counts follow from the lengths); how many existed.

    A few `_id` list deletes per thousand chunks, however much else is stored.
    """
    oids = []
    for f in file_ids:
        try:
            oids.append(ObjectId(str(f)))
        except (InvalidId, TypeError):
            continue
    database = get_db()
    chunks, files = database[f"{bucket}.chunks"], database[f"{bucket}.files"]
    found = 0
    for i in range(0, len(oids), DELETE_BATCH):
        batch = oids[i:i + DELETE_BATCH]
        docs = {d["_id"]: d for d in files.find({"_id": {"$in": batch}}, {"length": 1, "chunkSize": 1})}
        counts = {oid: -(-int(d["length"]) // max(1, int(d["chunkSize"]))) for oid, d in docs.items()}
        ids = [chunk_id(oid, n) for oid, c in counts.items() for n in range(c)]
        removed = sum(chunks.delete_many({"_id": {"$in": ids[k:k + DELETE_BATCH]}}).deleted_count
                      for k in range(0, len(ids), DELETE_BATCH))
        if removed < len(ids):  # some were written by another GridFS client: ObjectId chunk ids
            chunks.delete_many({"files_id": {"$in": list(docs)}})
        for oid in batch:
            if oid not in docs:
                _delete_chunks(chunks, oid, 0)  # an interrupted write: chunks without a files document
        if docs:
            files.delete_many({"_id": {"$in": list(docs)}})
        found += len(docs)
    return found


def _delete_chunks(chunks, file_id: ObjectId, count: int) -> int:
    """Delete chunks 0..count-1 by _id, then further ones while any are found; how many went."""
    removed, n = 0, 0
    while True:
        step = max(1, min(DELETE_BATCH, count - n)) if n < count else DELETE_BATCH
        got = chunks.delete_many({"_id": {"$in": [chunk_id(file_id, k) for k in range(n, n + step)]}})
        removed += got.deleted_count
        n += step
        if n >= count and not got.deleted_count:
            return removed


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte, inclusive, of a single-range 'bytes=' header; None means the whole file.

    Raises RangeNotSatisfiable for ranges outside the file; ignores what it cannot parse
    (RFC 9110 lets a server ignore Range), including multi-range requests.
    """
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m or (m.group(1) == "" and m.group(2) == ""):
        return None
    first, last = m.group(1), m.group(2)
    if first == "":  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(f"bytes */{size}")
        return max(0, size - n), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size or (last != "" and int(last) < start):
        raise RangeNotSatisfiable(f"bytes */{size}")
    return start, end


def iter_range(reader: StoredFile, first: int, last: int) -> Iterator[bytes]:
    """Bytes first..last (inclusive) of a stored file, a chunk at a time; closes the reader."""
    try:
        reader.until(last).seek(first)
        remaining = last - first + 1
        while remaining > 0:
            block = reader.read(min(CHUNK, remaining))
            if not block:
                break
            remaining -= len(block)
            yield block
    finally:
        reader.close()
