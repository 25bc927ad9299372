"""Helpers that make and inspect media files for tests (PyAV; no external binaries)."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def make_clip(path: Path, *, frames: int = 30, size: tuple[int, int] = (320, 240), fps: int = 25,
              codec: str = "libx264", fmt: str | None = None, pix_fmt: str = "yuv420p",
              rotate: int | None = None) -> Path:
    """A moving-gradient clip; rotate (MP4/MOV only) sets a display matrix, like a phone held upright."""
    w, h = size
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        yy, xx = np.mgrid[0:h, 0:w]
        for i in range(frames):
            img = np.stack([(xx + 4 * i) % 256, (yy + 2 * i) % 256, np.full_like(xx, (9 * i) % 256)], -1)
            f = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    if rotate:
        set_display_rotation(path, rotate)
    return path


# tkhd display matrices (16.16 fixed point; the last column 2.30) that turn the stored picture
# clockwise by this many degrees for display; PyAV cannot write one, so the bytes are patched.
_MATRICES = {
    0: (0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000),
    90: (0, 0x10000, 0, -0x10000, 0, 0, 0, 0, 0x40000000),
    180: (-0x10000, 0, 0, 0, -0x10000, 0, 0, 0, 0x40000000),
    270: (0, -0x10000, 0, 0x10000, 0, 0, 0, 0, 0x40000000),
}


def set_display_rotation(path: Path, clockwise: int) -> Path:
    """Patch the video track's tkhd matrix of an MP4/MOV so players turn it clockwise by 90/180/270."""
    data = bytearray(Path(path).read_bytes())
    identity = struct.pack(">9i", *_MATRICES[0])
    at = data.find(b"tkhd")
    m = data.find(identity, at)
    if at < 0 or not 0 < m - at < 100:
        raise ValueError(f"{path}: no tkhd box with an identity matrix")
    data[m:m + 36] = struct.pack(">9i", *_MATRICES[clockwise % 360])
    Path(path).write_bytes(bytes(data))
    return path


def make_vfr_clip(path: Path, times_s: list[float], *, size: tuple[int, int] = (160, 120)) -> Path:
    """An H.264 MP4 whose frames are shown at the given times (seconds): a variable frame rate."""
    w, h = size
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.time_base = Fraction(1, 1000)
        s.codec_context.time_base = Fraction(1, 1000)
        for i, t in enumerate(times_s):
            img = np.full((h, w, 3), (i * 37) % 256, np.uint8)
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            f.pts, f.time_base = round(t * 1000), Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def frame_times(path: Path) -> list[float]:
    """Presentation time (seconds) of every decoded frame, in order."""
    with av.open(str(path)) as c:
        return [float(f.time) for f in c.decode(video=0)]


def write_frames(path: Path, frames, *, fps: int = 25, codec: str = "libx264", fmt: str | None = None,
                 pix_fmt: str = "yuv420p") -> Path:
    """Encode an iterable of BGR (H, W, 3) frames, all of one size, at a constant rate."""
    with av.open(str(path), "w", format=fmt) as c:
        s = None
        for image in frames:
            if s is None:
                s = c.add_stream(codec, rate=fps)
                s.height, s.width = image.shape[:2]
                s.pix_fmt = pix_fmt
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def probe(path: Path) -> dict:
    """Codec, pixel format, size, frame count (decoded), duration and whether moov precedes mdat."""
    data = Path(path).read_bytes()
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        return {
            "codec": s.codec_context.name,
            "pix_fmt": s.codec_context.pix_fmt,
            "width": s.codec_context.width,
            "height": s.codec_context.height,
            "frames": n,
            "duration_s": float(s.duration * s.time_base) if s.duration else None,
            "faststart": 0 <= data.find(b"moov") < data.find(b"mdat"),
            "rate": Fraction(s.average_rate) if s.average_rate else None,
        }


def walking_faces(faces: list[np.ndarray], *, frames: int, size: tuple[int, int] = (480, 270),
                  face_px: int = 90, step: float = 3.0):
    """BGR frames (H, W, 3) with each face image (BGR) sliding right across a grey background.

    Face k starts at x = 10 + k * (face_px + 40); all move by `step` pixels a frame. Yields (frame, boxes)
    with boxes (K, 4) x1, y1, x2, y2 of where each face was pasted.
    """
    import cv2

    w, h = size
    resized = [cv2.resize(f, (face_px, face_px), interpolation=cv2.INTER_AREA) for f in faces]
    y = (h - face_px) // 2
    for i in range(frames):
        frame = np.full((h, w, 3), 110, np.uint8)
        boxes = []
        for k, face in enumerate(resized):
            x = int(round(10 + k * (face_px + 40) + step * i)) % max(1, w - face_px)
            frame[y:y + face_px, x:x + face_px] = face
            boxes.append([x, y, x + face_px, y + face_px])
        yield frame, np.array(boxes, np.float32)


def pan_over_photos(photos: list[tuple[np.ndarray, np.ndarray]], *, size: tuple[int, int] = (640, 360),
                    frames_per_photo: int = 50, zoom: float = 1.25):
    """A slow left-to-right pan over each photo in turn: CCTV-like crowd frames with known faces.

    photos: (BGR image, (K, 4) annotated face boxes in its pixels). Yields (frame (H, W, 3) BGR,
    boxes (K, 4) in frame pixels, ids (K,) distinct across all photos); boxes may reach outside the frame.
    """
    import cv2

    w, h = size
    first_id = 0
    for image, boxes in photos:
        ih, iw = image.shape[:2]
        scale = zoom * max(w / iw, h / ih)
        scaled = cv2.resize(image, (round(iw * scale), round(ih * scale)), interpolation=cv2.INTER_CUBIC)
        sh, sw = scaled.shape[:2]
        oy = (sh - h) // 2
        ids = np.arange(first_id, first_id + len(boxes))
        first_id += len(boxes)
        for i in range(frames_per_photo):
            ox = round((sw - w) * i / max(1, frames_per_photo - 1))
            frame = np.ascontiguousarray(scaled[oy:oy + h, ox:ox + w])
            shifted = np.asarray(boxes, np.float32) * scale - np.array([ox, oy, ox, oy], np.float32)
            yield frame, shifted, ids
