"""Videos and images in GridFS: streamed put and get, HTTP byte ranges, delete."""

from __future__ import annotations

import io
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import gridfs
from bson import Binary, ObjectId
from bson.errors import InvalidId
from gridfs.errors import NoFile

from shared.db import get_db, gridfs_bucket
from shared.errors import NotFound, RangeNotSatisfiable

CHUNK = 1024 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def put(bucket: str, stream: BinaryIO, filename: str, *, content_type: str,
        metadata: dict | None = None, file_id: ObjectId | None = None) -> ObjectId:
    """Stream a file-like object into GridFS one chunk at a time; returns its id.

    Standard GridFS layout (files + chunks), written by hand because pymongo's GridIn buffers up to
    the server's message size (48 MB) before inserting; here at most one chunk is held.
    """
    database = get_db()
    chunks, files = database[f"{bucket}.chunks"], database[f"{bucket}.files"]
    file_id = file_id or ObjectId()
    n = length = 0
    try:
        while True:
            block = read_full(stream, CHUNK)
            if not block:
                break
            chunks.insert_one({"_id": chunk_id(file_id, n), "files_id": file_id, "n": n,
                               "data": Binary(block)})
            n += 1
            length += len(block)
        files.insert_one({
            "_id": file_id, "length": length, "chunkSize": CHUNK, "uploadDate": datetime.now(UTC),
            "filename": filename, "metadata": {"content_type": content_type, **(metadata or {})},
        })
    except BaseException:
        chunks.delete_many({"files_id": file_id})  # nothing half-stored
        raise
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
    """A seekable reader of one GridFS file that fetches a few chunks per round trip.

    pymongo's GridOut asks for all remaining chunks in one cursor with the server's default batch,
    which FerretDB answers in a single reply over its own 48 MB message limit; an explicit small
    batch size keeps replies (and memory) to a few chunks on any server.
    """

    BATCH = 4

    def __init__(self, bucket: str, doc: dict):
        super().__init__()
        self._chunks = get_db()[f"{bucket}.chunks"]
        self._id = doc["_id"]
        self.filename = doc.get("filename")
        self.length = int(doc["length"])
        self.chunk_size = int(doc["chunkSize"])
        self.metadata = doc.get("metadata") or {}
        self.upload_date = doc.get("uploadDate")
        self._pos = 0
        self._cursor = None
        self._next_n = -1  # chunk number the cursor yields next
        self._buf, self._buf_n = b"", -1
        self._by_id = True

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

    def _chunk(self, n: int) -> bytes:
        """Chunk n: by _id for files we wrote, else through a cursor over (files_id, n)."""
        if n == self._buf_n:
            return self._buf
        doc = self._chunks.find_one({"_id": chunk_id(self._id, n)}) if self._by_id else None
        if doc is None:
            self._by_id = False  # written by another GridFS client: ObjectId chunk ids
            doc = self._from_cursor(n)
        if doc is None or doc["n"] != n:
            raise gridfs.errors.CorruptGridFile(f"chunk {n} of file {self._id} is missing")
        self._buf, self._buf_n = bytes(doc["data"]), n
        return self._buf

    def _from_cursor(self, n: int) -> dict | None:
        """Chunk n from the open cursor when it is next in line, else from a new cursor."""
        if self._cursor is None or n != self._next_n:
            if self._cursor is not None:
                self._cursor.close()
            self._cursor = (self._chunks.find({"files_id": self._id, "n": {"$gte": n}})
                            .sort("n", 1).batch_size(self.BATCH))
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


def save_to(bucket: str, file_id, path: Path) -> Path:
    """Copy a stored file to a local path, streamed."""
    with open_file(bucket, file_id) as src, open(path, "wb") as dst:
        shutil.copyfileobj(src, dst, CHUNK)
    return path


def delete(bucket: str, file_id) -> bool:
    """Delete a stored file; False when it was already gone."""
    if file_id is None:
        return False
    try:
        gridfs_bucket(bucket).delete(ObjectId(str(file_id)))
        return True
    except (NoFile, InvalidId, TypeError):
        return False


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
        reader.seek(first)
        remaining = last - first + 1
        while remaining > 0:
            block = reader.read(min(CHUNK, remaining))
            if not block:
                break
            remaining -= len(block)
            yield block
    finally:
        reader.close()
