"""Uploads streamed from the request body into GridFS, checked by content (magic bytes via `filetype`).

The request body is never handed to Werkzeug's form parser (which spools files to disk and then
needs a second copy into GridFS): multipart parts are decoded as they arrive and each file goes
into GridFS a chunk at a time, so the web process holds a few hundred KB whatever the file size.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

import filetype
from flask import request
from werkzeug.datastructures import Headers
from werkzeug.exceptions import BadRequest, RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from shared import jobs, storage
from shared.db import UPLOADS
from web.actions import send

VIDEO_TYPES = {"video/mp4", "video/quicktime", "video/x-matroska", "video/webm", "video/x-msvideo",
               "video/x-m4v", "video/mpeg", "video/x-flv"}
IMAGE_TYPES = {"image/jpeg", "image/png", "image/webp", "image/bmp", "image/tiff"}
HEAD_BYTES = 8192  # enough for every container's signature that `filetype` knows
BLOCK = 256 * 1024  # read size from the socket
FIELD_MAX = 16 * 1024  # form fields here are a CSRF token and the like
MAX_PARTS = 64
# Room for multipart headers and small fields on top of the file limit.
REQUEST_SLACK = 64 * 1024


class UploadRejected(ValueError):
    """The upload is empty or not a supported video or image; the message is for the user."""

    def __init__(self, message: str, *, status: int = 415, code: str = "unsupported_type"):
        super().__init__(message)
        self.status, self.code = status, code


def classify(head: bytes) -> tuple[str, str]:
    """('video' | 'image', MIME type) from a file's first bytes; UploadRejected otherwise."""
    if not head:
        raise UploadRejected("The file is empty.", status=400, code="empty_file")
    kind = filetype.guess(head)
    mime = kind.mime if kind else None
    if mime in VIDEO_TYPES:
        return "video", mime
    if mime in IMAGE_TYPES:
        return "image", mime
    raise UploadRejected(
        f"This file is not a supported video or image ({mime or 'unknown type'}). "
        "Upload MP4, MOV, MKV, AVI or WebM video, or JPEG, PNG, WebP, BMP or TIFF images."
    )


def clean_filename(name: str | None) -> str:
    """A display name (never used as a path): printable, at most 200 characters.

    An absolute path (C:\\dir\\clip.mp4 from old browsers, /tmp/clip.mp4 from scripts) keeps its
    last component; a relative one (a folder upload's cams/door 1.mp4) is kept without its "." and
    ".." parts; any other slash is part of the name (`<script>x</script>.mp4` stays whole: templates
    escape it, and download names are made safe on their own).
    """
    name = name or ""
    if re.match(r"^([A-Za-z]:)?[\\/]", name):
        name = re.split(r"[\\/]", name)[-1]
    elif re.search(r"(^|[\\/])\.{1,2}([\\/]|$)|\\", name):
        name = "/".join(s for s in re.split(r"[\\/]", name) if s not in ("", ".", ".."))
    base = "".join(ch for ch in name if ch.isprintable()).strip().strip(".") or "upload"
    return base[:200]


class LimitedReader:
    """Reads a source and raises 413 once more than `limit` bytes came through."""

    def __init__(self, source, limit: int):
        self.source, self.limit, self.count = source, limit, 0

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.count += len(data)
        if self.count > self.limit:
            raise RequestEntityTooLarge()
        return data


class Prepend:
    """A reader that yields `head` and then the rest of `source` (the bytes already sniffed)."""

    def __init__(self, head: bytes, source):
        self.head, self.source = head, source

    def read(self, size: int = -1) -> bytes:
        if not self.head:
            return self.source.read(size)
        if size < 0:
            out, self.head = self.head + self.source.read(), b""
            return out
        out, self.head = self.head[:size], self.head[size:]
        return out  # a short read; storage.put keeps reading until its chunk is full


@dataclass
class Part:
    """One multipart part: a field (name) or a file (name, filename); read() streams its body."""

    reader: MultipartStream
    name: str
    filename: str | None
    headers: Headers
    done: bool = False

    def read(self, size: int = -1) -> bytes:
        return self.reader.read_part(self, size)

    def drain(self) -> None:
        """Skip the rest of the body (to reach the next part)."""
        while self.read(BLOCK):
            pass


class MultipartStream:
    """multipart/form-data decoded incrementally from a stream, one part at a time."""

    def __init__(self, stream, boundary: bytes):
        self.stream = stream
        self.decoder = MultipartDecoder(boundary, max_parts=MAX_PARTS)
        self.buffer = bytearray()
        self.ended = False

    def _event(self):
        while True:
            try:
                event = self.decoder.next_event()
            except ValueError:
                raise BadRequest("The upload was cut short or is not valid multipart/form-data.") from None
            if not isinstance(event, NeedData):
                return event
            if self.ended:
                raise BadRequest("The upload was cut short.")
            block = self.stream.read(BLOCK)
            if not block:
                self.ended = True
            self.decoder.receive_data(block or None)

    def parts(self) -> Iterator[Part]:
        """The parts in order; each is drained when the caller moves on."""
        while True:
            event = self._event()
            if isinstance(event, Epilogue):
                return
            if isinstance(event, (Field, File)):
                part = Part(self, event.name, getattr(event, "filename", None), event.headers)
                yield part
                part.drain()
            # Preamble and stray Data events carry nothing we need.

    def read_part(self, part: Part, size: int) -> bytes:
        while not part.done and (size < 0 or len(self.buffer) < size):
            event = self._event()
            if not isinstance(event, Data):
                raise BadRequest("The upload is not valid multipart/form-data.")
            self.buffer.extend(event.data)
            part.done = not event.more_data
        n = len(self.buffer) if size < 0 else min(size, len(self.buffer))
        out = bytes(self.buffer[:n])
        del self.buffer[:n]
        return out

    def field_value(self, part: Part) -> str:
        """A small form field's text (413 beyond FIELD_MAX)."""
        data = part.read(FIELD_MAX + 1)
        if len(data) > FIELD_MAX:
            raise RequestEntityTooLarge()
        return data.decode("utf-8", "replace")


@dataclass
class Incoming:
    """A file as it arrives: display name, the body reader, its declared Content-Type."""

    filename: str
    body: object
    declared_type: str | None
    length: int | None = None  # declared byte count (a raw body's Content-Length)
    sha256: str | None = None  # declared checksum (X-Content-SHA256), hex


class Verified:
    """Reads a source, and fails at its end unless the declared length and sha256 were met.

    Raised inside storage.put, the error makes it delete what it stored: an upload cut short, or
    altered on the way, is never kept as complete.
    """

    def __init__(self, source, length: int | None, sha256: str | None):
        self.source, self.length, self.sha256 = source, length, sha256
        self.count = 0
        self.digest = hashlib.sha256() if sha256 else None

    def read(self, size: int = -1) -> bytes:
        data = self.source.read(size)
        self.count += len(data)
        if self.digest is not None:
            self.digest.update(data)
        if not data or (self.length is not None and self.count >= self.length):
            self._check_end(bool(data))
        return data

    def _check_end(self, more: bool) -> None:
        if self.length is not None and self.count < self.length:
            raise BadRequest(f"The upload was cut short: {self.count:,} of {self.length:,} bytes arrived; "
                             "nothing was stored. Send it again.")
        if not more and self.digest is not None and self.digest.hexdigest() != self.sha256:
            raise BadRequest("The upload does not match its X-Content-SHA256 checksum; nothing was "
                             "stored. Send it again.")


def incoming_files(limit: int, on_field=None) -> Iterator[Incoming]:
    """The files of the current request, streamed: multipart parts, or the raw body as one file.

    on_field(name, value) sees each small form field before the files that follow it.
    Raises 413 before reading anything when Content-Length already exceeds the limit.
    """
    request.max_content_length = limit + REQUEST_SLACK
    ctype, options = parse_options_header(request.headers.get("Content-Type", ""))
    if ctype == "multipart/form-data":
        boundary = options.get("boundary", "").encode()
        if not boundary:
            raise BadRequest("The multipart upload has no boundary.")
        for part in MultipartStream(request.stream, boundary).parts():
            if part.filename is None:
                if on_field is not None:
                    on_field(part.name, part.reader.field_value(part))
                continue
            if part.name not in ("file", "files", "files[]"):
                continue
            yield Incoming(clean_filename(part.filename), part, part.headers.get("Content-Type"))
        return
    # A raw body (curl --data-binary): the name from ?filename= or Content-Disposition.
    _, disp = parse_options_header(request.headers.get("Content-Disposition", ""))
    name = request.args.get("filename") or disp.get("filename")
    if not name and not request.content_length and ctype in ("", "application/x-www-form-urlencoded"):
        return  # nothing was sent
    checksum = (request.headers.get("X-Content-SHA256") or "").strip().lower() or None
    if checksum is not None and not re.fullmatch(r"[0-9a-f]{64}", checksum):
        raise BadRequest("X-Content-SHA256 must be 64 hexadecimal digits (the sha256 of the file).")
    yield Incoming(clean_filename(name), request.stream, ctype or None, length=request.content_length,
                   sha256=checksum)


def store_one(item: Incoming, owner: str, limit: int) -> dict:
    """Check one file by content, stream it into GridFS and queue its job; the job document.

    UploadRejected (empty, unsupported) and 413 (over the limit) leave nothing stored.
    """
    source = item.body
    if item.length is not None or item.sha256 is not None:
        source = Verified(source, item.length, item.sha256)
    body = LimitedReader(source, limit)
    head = storage.read_full(body, HEAD_BYTES)
    kind, mime = classify(head)
    file_id = storage.put(UPLOADS, Prepend(head, body), item.filename, content_type=mime,
                          metadata={"owner": owner})
    try:
        job = jobs.create(owner=owner, filename=item.filename, kind=kind, input_id=file_id,
                          size=body.count, content_type=mime)
    except BaseException:
        storage.delete(UPLOADS, file_id)
        raise
    return send(job)


def store_files(owner: str, limit: int, csrf_field_check=None) -> list[dict]:
    """Store every file of the request; one outcome per file: {filename, job} or {filename, error...}.

    With csrf_field_check (a form post without the CSRF header), the form's csrf_token field must
    arrive, and pass the check, before any file is stored; the check raises otherwise.
    """
    checked = csrf_field_check is None

    def on_field(name: str, value: str) -> None:
        nonlocal checked
        if name == "csrf_token" and not checked:
            csrf_field_check(value)
            checked = True

    outcomes = []
    for item in incoming_files(limit, on_field):
        if not checked:
            csrf_field_check(None)  # raises: no token before the first file
        try:
            outcomes.append({"filename": item.filename, "job": store_one(item, owner, limit)})
        except UploadRejected as e:
            outcomes.append({"filename": item.filename, "error": e.code, "status": e.status,
                             "message": str(e)})
    return outcomes
