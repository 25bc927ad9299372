"""A corpus of bad uploads: each file, and what the product must say (at upload, or as the job's sentence)."""

from __future__ import annotations

import gzip
import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from tests.media import make_clip
from tests.worker.test_failures import bad_files


@dataclass(frozen=True)
class Bad:
    """One bad upload: refused at upload (status + words of the message) or stored and failed (words)."""

    case: str
    filename: str
    data: bytes
    status: int | None = None  # the upload's HTTP status when refused there
    says: str = ""  # words of the upload's message or of the failed job's sentence


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares a size and holds one row of data: a decompression bomb's first bytes."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * (3 * 64 + 1)))


def _jpeg(size: tuple[int, int]) -> bytes:
    img = np.random.default_rng(size[0]).integers(0, 256, (size[1], size[0], 3), np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def _encoded(ext: str) -> bytes:
    """A black 64 px picture in the format of ext."""
    return cv2.imencode(ext, np.zeros((64, 64, 3), np.uint8))[1].tobytes()


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("clip.mp4", b"not really")
    return buf.getvalue()


def corpus(d: Path) -> list[Bad]:
    """At least 30 kinds of bad upload, made here from nothing but code (no shared files needed)."""
    job_level = {case: (path, says) for case, path, _, says in bad_files(d)}
    good = make_clip(d / "corpus-good.mp4", frames=30, size=(160, 120)).read_bytes()
    webm = make_clip(d / "corpus.webm", frames=30, size=(160, 120), codec="libvpx", fmt="webm").read_bytes()
    jpeg = _jpeg((320, 240))
    unsupported = "not a supported video or image"
    cases = [
        # Refused at upload: nothing is stored, the answer says why.
        Bad("zero bytes", "empty.mp4", b"", 400, "The file is empty."),
        Bad("plain text named .mp4", "notes.mp4", b"hello, this is not a video\n" * 20, 415, unsupported),
        Bad("PDF", "report.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", 415,
            "(application/pdf)"),
        Bad("ZIP named .mp4", "clip.mp4", _zip(), 415, "(application/zip)"),
        Bad("gzip", "clip.mp4.gz", gzip.compress(good), 415, "(application/gzip)"),
        Bad("ELF executable", "clip.mp4", b"\x7fELF\x02\x01\x01" + b"\0" * 200, 415, unsupported),
        Bad("Windows executable", "setup.exe", b"MZ\x90\0" + b"\0" * 300, 415, unsupported),
        Bad("HTML with a script named .jpg", "x.jpg", b"<html><script>alert(1)</script></html>", 415,
            "(unknown type)"),
        Bad("SVG", "logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
            415, "(unknown type)"),
        Bad("GIF", "anim.gif", b"GIF89a\x01\x00\x01\x00\x80\x00\x00" + b"\0" * 40, 415, "(image/gif)"),
        Bad("MP3 audio", "song.mp3", b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x00" * 100, 415,
            "(audio/mpeg)"),
        Bad("WAV audio", "voice.wav", b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\0" * 100, 415, "(audio/x-wav)"),
        Bad("mp4 cut to its first bytes", "tiny.mp4", good[:3], 415, "(unknown type)"),
        # Stored, then failed by the worker with a sentence (the type looks right; the content is not).
        Bad("truncated mp4", "cut.mp4", job_level["truncated mp4"][0].read_bytes(),
            says=job_level["truncated mp4"][1]),
        Bad("truncated mkv", "cut.mkv", job_level["truncated mkv"][0].read_bytes(),
            says=job_level["truncated mkv"][1]),
        Bad("mp4 damaged midway", "damaged.mp4", job_level["damaged midway"][0].read_bytes(),
            says=job_level["damaged midway"][1]),
        Bad("mkv damaged midway", "damaged.mkv", job_level["damaged midway mkv"][0].read_bytes(),
            says=job_level["damaged midway mkv"][1]),
        Bad("absurd dimensions", "huge.avi", job_level["absurd dimensions"][0].read_bytes(),
            says=job_level["absurd dimensions"][1]),
        Bad("too small", "tiny.avi", job_level["too small"][0].read_bytes(), says=job_level["too small"][1]),
        Bad("too long", "long.mp4", job_level["too long"][0].read_bytes(), says=job_level["too long"][1]),
        Bad("truncated jpeg", "cut.jpg", job_level["truncated image"][0].read_bytes(),
            says=job_level["truncated image"][1]),
        Bad("mp4 header only", "header.mp4", good[:64], says="incomplete"),
        Bad("webm cut in half", "cut.webm", webm[: len(webm) // 2], says="the file is truncated or damaged"),
        Bad("png decompression bomb", "bomb.png", _png_header(30000, 30000),
            says="the image is larger than the limit of"),
        Bad("png 8 px", "dot.png", cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes(),
            says="the image is 8x8 pixels; supported sizes"),
        Bad("jpeg header only", "head.jpg", jpeg[:200], says="the image is truncated or damaged"),
        Bad("webp header, no picture", "x.webp", b"RIFF\x40\x00\x00\x00WEBPVP8 " + b"\0" * 60,
            says="the image is truncated or damaged"),
        Bad("bmp cut short", "x.bmp", _encoded(".bmp")[:500],
            says="the image is truncated or damaged"),
        Bad("tiff cut short", "x.tif", _encoded(".tif")[:300],
            says="not an image file we can read"),
        Bad("avi header, junk after", "junk.avi", b"RIFF\x00\x10\x00\x00AVI LIST" + bytes(range(256)) * 8,
            says="the file has no video stream"),
        Bad("mkv magic, junk after", "junk.mkv", b"\x1aE\xdf\xa3" + bytes(range(256)) * 8, 415,
            "(unknown type)"),
        Bad("audio only (m4a looks like mp4)", "voice.m4a", job_level["no video stream"][0].read_bytes(),
            says=job_level["no video stream"][1]),
    ]
    assert len(cases) >= 30
    return cases
