"""GridFS storage on the real server: streamed round trips and HTTP byte ranges."""

from __future__ import annotations

import hashlib
import io
import tracemalloc

import pytest
from pymongo import monitoring

from shared import storage
from shared.errors import NotFound, RangeNotSatisfiable

MB = 1024 * 1024
BINARY = "application/octet-stream"


class PatternReader(io.RawIOBase):
    """A readable stream of `size` pseudo-random bytes produced on demand (never all in memory)."""

    def __init__(self, size: int):
        self.size, self.pos = size, 0
        self.sha = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buf) -> int:
        n = min(len(buf), self.size - self.pos)
        if n <= 0:
            return 0
        block = hashlib.sha256(str(self.pos).encode()).digest() * (n // 32 + 1)
        buf[:n] = block[:n]
        self.sha.update(block[:n])
        self.pos += n
        return n


def test_50mb_round_trip_is_streamed_with_flat_memory(settings):
    src = PatternReader(50 * MB)
    tracemalloc.start()
    file_id = storage.put("uploads", io.BufferedReader(src, MB), "big.bin", content_type=BINARY)
    _, upload_peak = tracemalloc.get_traced_memory()
    tracemalloc.reset_peak()
    got = hashlib.sha256()
    with storage.open_file("uploads", file_id) as reader:
        assert reader.length == 50 * MB
        for block in iter(lambda: reader.read(MB), b""):
            got.update(block)
    _, download_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert got.hexdigest() == src.sha.hexdigest()
    # 50 MB moved each way; memory held at once stays a few chunks.
    assert upload_peak < 16 * MB, upload_peak
    assert download_peak < 16 * MB, download_peak
    assert storage.delete("uploads", file_id)
    with pytest.raises(NotFound):
        storage.open_file("uploads", file_id)


@pytest.mark.parametrize("header, size, expected", [
    ("bytes=0-99", 1000, (0, 99)),          # first bytes
    ("bytes=500-599", 1000, (500, 599)),    # middle
    ("bytes=900-", 1000, (900, 999)),       # open-ended
    ("bytes=-100", 1000, (900, 999)),       # suffix
    ("bytes=-5000", 1000, (0, 999)),        # suffix longer than the file
    ("bytes=990-2000", 1000, (990, 999)),   # end clipped
    (None, 1000, None),
    ("bytes=0-1,5-6", 1000, None),          # multi-range: served whole (allowed by RFC 9110)
    ("items=0-1", 1000, None),
])
def test_parse_range(header, size, expected):
    assert storage.parse_range(header, size) == expected


@pytest.mark.parametrize("header, size", [("bytes=1000-", 1000), ("bytes=5-2", 1000), ("bytes=-0", 1000),
                                          ("bytes=0-", 0)])
def test_unsatisfiable_ranges(header, size):
    with pytest.raises(RangeNotSatisfiable, match=f"bytes \\*/{size}"):
        storage.parse_range(header, size)


def test_iter_range_reads_across_chunks(settings):
    data = bytes(range(256)) * (3 * MB // 256)
    file_id = storage.put("uploads", io.BytesIO(data), "r.bin", content_type=BINARY)
    first, last = MB - 10, 2 * MB + 10
    got = b"".join(storage.iter_range(storage.open_file("uploads", file_id), first, last))
    assert got == data[first:last + 1]
    storage.delete("uploads", file_id)


def test_files_written_by_other_gridfs_clients_are_readable(settings):
    from shared.db import gridfs_bucket

    data = bytes(range(256)) * 4000  # ~1 MB in pymongo's default 255 KiB chunks (ObjectId chunk ids)
    file_id = gridfs_bucket("uploads").upload_from_stream("other.bin", io.BytesIO(data))
    reader = storage.open_file("uploads", file_id)
    reader.seek(600_000)
    assert reader.read(1000) == data[600_000:601_000]
    assert b"".join(storage.iter_range(storage.open_file("uploads", file_id), 0, len(data) - 1)) == data
    storage.delete("uploads", file_id)


def test_chunks_we_write_are_addressable_by_id(settings, mongo):
    file_id = storage.put("uploads", io.BytesIO(b"x" * (MB + 5)), "two.bin", content_type=BINARY)
    assert mongo["uploads.chunks"].find_one({"_id": storage.chunk_id(file_id, 1)})["data"] == b"x" * 5
    storage.delete("uploads", file_id)
    assert mongo["uploads.chunks"].count_documents({"files_id": file_id}) == 0


class _ChunkQueries(monitoring.CommandListener):
    """Records the filters of the finds and deletes sent to a `.chunks` collection while on."""

    def __init__(self):
        self.on, self.seen = False, []

    def started(self, event):
        name = event.command_name
        if self.on and name in ("find", "getMore", "delete") and str(
                event.command.get(name if name != "getMore" else "collection")).endswith(".chunks"):
            filters = ([d["q"] for d in event.command["deletes"]] if name == "delete"
                       else [event.command.get("filter")])
            self.seen += [(name, f) for f in filters]

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


_LISTENER = _ChunkQueries()
monitoring.register(_LISTENER)  # clients made from here on report to it; it records only while on


def test_reading_seeking_and_deleting_fetch_chunks_by_id_a_few_at_a_time(settings):
    # What keeps GridFS speed independent of how much is stored: every chunk query is an `_id` list of
    # at most a batch (served by the `_id` index: tests/shared/test_id_index.py), never a filter on
    # files_id that a FerretDB server answers by reading every chunk of every file.
    from shared import db

    n = 7
    file_id = storage.put("uploads", io.BytesIO(b"y" * (n * MB - 3)), "k.bin", content_type=BINARY)
    db.reset()  # a new client, which reports to the listener
    _LISTENER.on, _LISTENER.seen = True, []
    try:
        with storage.open_file("uploads", file_id) as f:
            assert len(f.read()) == n * MB - 3
        got = b"".join(storage.iter_range(storage.open_file("uploads", file_id), 3 * MB + 5, 3 * MB + 70_004))
        assert got == b"y" * 70_000
        assert storage.delete("uploads", file_id)
    finally:
        _LISTENER.on = False
        db.reset()
    seen = _LISTENER.seen
    assert [name for name, _ in seen] == ["find"] * (-(-n // storage.READ_BATCH) + 1) + ["delete"], seen
    for name, f in seen:
        assert list(f) == ["_id"] and list(f["_id"]) == ["$in"], f
        ids = f["_id"]["$in"]
        assert 1 <= len(ids) <= (storage.READ_BATCH if name == "find" else storage.DELETE_BATCH), f
        assert all(i.startswith(f"{file_id}:") for i in ids), f
