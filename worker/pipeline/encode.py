"""Encode annotated frames as browser-playable H.264 MP4 (yuv420p, +faststart), NVENC when present."""

from __future__ import annotations

from fractions import Fraction
from functools import cache
from pathlib import Path

import av
import cv2
import numpy as np

from models.resize import shrink


@cache
def h264_encoder(prefer_gpu: bool) -> str:
    """'h264_nvenc' when asked for and a GPU encoder opens here, else 'libx264'."""
    if prefer_gpu and "h264_nvenc" in av.codec.codecs_available:
        try:
            ctx = av.CodecContext.create("h264_nvenc", "w")
            ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = 256, 256, "yuv420p", Fraction(1, 25)
            ctx.open()  # fails without an NVIDIA driver
            return "h264_nvenc"
        except Exception:  # noqa: BLE001 - any failure means: no usable NVENC here
            pass
    return "libx264"


def output_size(width: int, height: int, max_height: int) -> tuple[int, int]:
    """Even output dimensions (yuv420p needs them), scaled down to max_height when set (0 = never)."""
    if max_height and height > max_height:
        width, height = round(width * max_height / height), max_height
    return max(2, width - width % 2), max(2, height - height % 2)


class VideoSink:
    """Context manager writing BGR frames to an H.264 MP4 with the input's timestamps."""

    def __init__(self, path: Path, *, width: int, height: int, fps: float, time_base: Fraction,
                 max_height: int = 0, preset: str = "veryfast", crf: int = 23, gpu: bool = False):
        self.path = Path(path)
        self.in_size = (width, height)
        self.width, self.height = output_size(width, height, max_height)
        self.fps = Fraction(fps).limit_denominator(1001) if fps else Fraction(25)
        self.time_base = time_base
        self.codec = h264_encoder(gpu)
        self.preset, self.crf = preset, crf
        self.frames = 0
        self._last_pts = -1

    def __enter__(self) -> VideoSink:
        self.container = av.open(str(self.path), mode="w", format="mp4",
                                 options={"movflags": "+faststart"})
        stream = self.container.add_stream(self.codec, rate=self.fps)
        stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
        # The encoder works in the input's time base too: with 1/fps it would round the timestamps of a
        # variable-frame-rate clip onto a fixed grid, merging or reordering frames.
        stream.time_base = self.time_base
        stream.codec_context.time_base = self.time_base
        if self.codec == "libx264":
            stream.options = {"preset": self.preset, "crf": str(self.crf), "profile": "high"}
        else:
            stream.options = {"preset": "p4", "cq": str(self.crf)}
        stream.thread_type = "AUTO"
        self.stream = stream
        return self

    def write(self, image: np.ndarray, pts: int | None = None) -> None:
        """Append one BGR (H, W, 3) frame; pts in the input time base keeps variable frame rates."""
        h, w = image.shape[:2]
        if w > self.width + 1 or h > self.height + 1:
            image = shrink(image, self.width, self.height)  # the output height cap
        elif (w, h) != (self.width, self.height):
            image = image[: self.height, : self.width]  # odd sizes lose their last row/column
        # OpenCV's BT.601 conversion matches swscale's default to a level, at a third of the cost.
        yuv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGR2YUV_I420)
        frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        if pts is None or pts <= self._last_pts:
            # Missing or non-increasing timestamps (broken files): continue at the nominal rate.
            step = max(1, round(1 / (self.fps * self.time_base)))
            pts = self._last_pts + step if self._last_pts >= 0 else 0
        frame.pts, frame.time_base = pts, self.time_base
        self._last_pts = pts
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                for packet in self.stream.encode():
                    self.container.mux(packet)
        finally:
            self.container.close()


def write_thumbnail(image: np.ndarray, path: Path, width: int = 480) -> Path:
    """A JPEG poster of a BGR frame, scaled to width pixels."""
    h, w = image.shape[:2]
    frame = av.VideoFrame.from_ndarray(image, format="bgr24").reformat(
        width=width, height=max(2, round(h * width / w)), format="rgb24")
    frame.to_image().save(path, format="JPEG", quality=85)
    return path
