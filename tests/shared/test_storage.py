"""GridFS storage on the real server: streamed round trips and HTTP byte ranges."""

from __future__ import annotations

import hashlib
import io
import tracemalloc

import pytest

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
