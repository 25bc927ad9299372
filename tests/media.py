"""Helpers that make and inspect media files for tests (PyAV; no external binaries)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def make_clip(path: Path, *, frames: int = 30, size: tuple[int, int] = (320, 240), fps: int = 25,
              codec: str = "libx264", fmt: str | None = None, pix_fmt: str = "yuv420p",
              rotate: int | None = None) -> Path:
    """A moving-gradient clip; rotate writes display-rotation metadata (degrees)."""
    w, h = size
    with av.open(str(path), "w", format=fmt) as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        if rotate is not None:
            s.metadata["rotate"] = str(rotate)
        yy, xx = np.mgrid[0:h, 0:w]
        for i in range(frames):
            img = np.stack([(xx + 4 * i) % 256, (yy + 2 * i) % 256, np.full_like(xx, (9 * i) % 256)], -1)
            f = av.VideoFrame.from_ndarray(img.astype(np.uint8), format="rgb24")
            for p in s.encode(f):
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
