"""Decode videos and still images into BGR frames, one generator, with probing and clear errors."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from shared.errors import BadInput

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds; width and height are as displayed (after rotation), in pixels."""

    width: int
    height: int
    fps: float
    frames: int | None  # container's count; None when it does not say
    duration_s: float
    codec: str
    rotation: int  # degrees counter-clockwise applied to decoded frames for display
    time_base: Fraction
    has_audio: bool

    @classmethod
    def from_path(cls, path: Path, *, max_pixels: int, max_seconds: float) -> VideoInfo:
        """Probe a video; BadInput with a user-facing sentence when it cannot be analysed."""
        container = open_container(path)
        try:
            return cls.from_container(container, max_pixels=max_pixels, max_seconds=max_seconds)
        finally:
            container.close()

    @classmethod
    def from_container(cls, container, *, max_pixels: int, max_seconds: float) -> VideoInfo:
        """Probe an open container (a file or a stored upload read in place); BadInput as from_path."""
        if not container.streams.video:
            raise BadInput("the file has no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if not ctx.width or not ctx.height:
            raise BadInput("the video stream has no picture size; the file may be damaged")
        if ctx.width * ctx.height > max_pixels or min(ctx.width, ctx.height) < 16:
            raise BadInput(
                f"the video is {ctx.width}x{ctx.height} pixels; supported sizes are from 16 px "
                f"up to {max_pixels:,} pixels per frame"
            )
        rate = stream.average_rate or _declared(stream.guessed_rate)
        duration = _duration_s(container, stream)
        if duration > max_seconds:
            raise BadInput(
                f"the video lasts {duration / 60:.0f} minutes; the limit is "
                f"{max_seconds / 60:.0f} minutes"
            )
        rotation = _rotation(container, stream)
        if rate is None:  # last: it reads on from the first frame (callers open the file again)
            rate = _rate_of_packets(container, stream) or Fraction(25)
        w, h = (ctx.height, ctx.width) if rotation % 180 else (ctx.width, ctx.height)
        return cls(
            width=w, height=h, fps=float(rate), frames=stream.frames or None,
            duration_s=duration, codec=ctx.name, rotation=rotation,
            time_base=stream.time_base or Fraction(1, 90000), has_audio=bool(container.streams.audio),
        )


@dataclass
class Frame:
    """One decoded frame: index from 0, presentation time in seconds, BGR uint8 (H, W, 3) image."""

    index: int
    time_s: float
    image: np.ndarray
    pts: int | None = None  # in the input stream's time base; kept so output timing equals input


def open_container(path: Path) -> av.container.InputContainer:
    """Open a media file; BadInput when it is empty or not a media file."""
    path = Path(path)
    if path.stat().st_size == 0:
        raise BadInput("the file is empty (0 bytes)")
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.error.InvalidDataError, av.error.FFmpegError, UnicodeDecodeError) as e:
        if _looks_like_mp4(path):
            # An MP4/MOV whose index (moov) was never written: a recording or an upload cut short.
            raise BadInput("the MP4/MOV file is incomplete (its index is missing): the recording or "
                           "the upload was cut short; upload the complete file") from None
        raise BadInput(f"this is not a video or image file we can read ({_reason(e)})") from None


def _looks_like_mp4(path: Path) -> bool:
    """True when the file starts like an ISO media file (an 'ftyp' box)."""
    with open(path, "rb") as f:
        return f.read(12)[4:8] == b"ftyp"


def _reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e).split(":")[0] or type(e).__name__


MAX_FPS = 240


def _declared(rate: Fraction | None) -> Fraction | None:
    """A guessed rate that is a frame rate: a WebM from a browser's MediaRecorder declares none, and
    FFmpeg then guesses its time base (1000 fps), which would make a whole chunk look truncated."""
    return rate if rate and rate <= MAX_FPS else None


def _rate_of_packets(container, stream, n: int = 60) -> Fraction | None:
    """The frame rate from the median step between the next n packets' times (a variable-rate file)."""
    times = []
    try:
        for packet in container.demux(stream):
            if packet.pts is not None:
                times.append(packet.pts)
            if len(times) >= n:
                break
    except av.error.FFmpegError:
        pass
    steps = sorted(b - a for a, b in zip(sorted(times), sorted(times)[1:], strict=False) if b > a)
    if len(steps) < 2 or not stream.time_base:
        return None
    rate = 1 / (steps[len(steps) // 2] * stream.time_base)
    return _declared(rate.limit_denominator(1001))


def _duration_s(container, stream) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / av.time_base
    return 0.0


def _rotation(container, stream) -> int:
    """Display rotation in degrees counter-clockwise (0, 90, 180, 270), from the first frame."""
    try:
        for frame in container.decode(stream):
            return int(round(getattr(frame, "rotation", 0) or 0)) % 360
    except av.error.FFmpegError:
        raise BadInput("the first frame cannot be decoded; the file is damaged") from None
    raise BadInput("the video has no decodable frames")


def as_frame(frame: av.VideoFrame, index: int, k: int, fallback_step: float) -> Frame:
    """A decoded frame as BGR, turned k quarter turns for display, timed (by index when it has no time)."""
    image = frame.to_ndarray(format="bgr24")
    if k:
        image = np.ascontiguousarray(np.rot90(image, k))
    t = float(frame.time) if frame.time is not None else index * fallback_step
    return Frame(index=index, time_s=t, image=image, pts=frame.pts)


def video_frames(path: Path, info: VideoInfo) -> Iterator[Frame]:
    """Every frame of the first video stream, in order, rotated for display, as BGR."""
    container = open_container(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame + slice threads: decoding overlaps the analysis
        k = (info.rotation // 90) % 4
        index = 0
        fallback_step = 1.0 / info.fps if info.fps else 0.04
        try:
            for frame in container.decode(stream):
                yield as_frame(frame, index, k, fallback_step)
                index += 1
        except av.error.FFmpegError as e:
            if index == 0:
                raise BadInput(f"no frame of the video can be decoded ({_reason(e)})") from None
            raise BadInput(
                f"the video is damaged after {index} frames ({index / (info.fps or 25):.1f} s): "
                f"{_reason(e)}"
            ) from None
        if index == 0:
            raise BadInput("the video has no decodable frames")
        _check_complete(index, info)
    finally:
        container.close()


def _check_complete(decoded: int, info: VideoInfo) -> None:
    """BadInput when far fewer frames decoded than the file declares (truncated or damaged midway).

    Demuxers resynchronise over damaged data and drop what they skip without an error; the count is
    then the only sign. The slack allows for edit lists and rounding of declared durations.
    """
    expected = info.frames or round(info.duration_s * info.fps)
    if expected and decoded < 0.9 * expected - 2:
        raise BadInput(
            f"only {decoded} of the video's {expected} frames could be decoded "
            f"({decoded / (info.fps or 25):.1f} s of {info.duration_s:.1f} s): the file is truncated "
            "or damaged"
        )


def read_image(path: Path, *, max_pixels: int) -> np.ndarray:
    """A still image as BGR uint8 (H, W, 3), turned upright by its EXIF orientation."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if path.stat().st_size == 0:
        raise BadInput("the file is empty (0 bytes)")
    try:
        with Image.open(path) as im:
            if im.width * im.height > max_pixels or min(im.width, im.height) < 16:
                raise BadInput(f"the image is {im.width}x{im.height} pixels; supported sizes are from "
                               f"16 px up to {max_pixels:,} pixels")
            im = ImageOps.exif_transpose(im).convert("RGB")
            return np.ascontiguousarray(np.asarray(im)[:, :, ::-1])
    except UnidentifiedImageError:
        raise BadInput("this is not an image file we can read (JPEG, PNG, BMP, WebP or TIFF)") from None
    except Image.DecompressionBombError:
        raise BadInput(f"the image is larger than the limit of {max_pixels:,} pixels") from None
    except OSError as e:
        raise BadInput(f"the image is truncated or damaged and cannot be read ({e})") from None


def is_image(path: Path) -> bool:
    """True for still-image file names (the web has already checked the content)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def segment_frames(container, info: VideoInfo, *, seek_ts: int, start_pts: int, end_pts: int | None,
                   first_index: int, overlap: int = 0) -> Iterator[Frame]:
    """Frames start_pts <= pts < end_pts of an open container, then `overlap` frames more, decoded from
    the keyframe at seek_ts (one segment of a long clip: worker/segments.py).

    Indices count on from first_index (the plan's frame number of start_pts), so records, bins and
    timestamps equal those of decoding the whole clip from the start.
    """
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    k = (info.rotation // 90) % 4
    fallback_step = 1.0 / info.fps if info.fps else 0.04
    index, extra = first_index, 0
    container.seek(seek_ts, stream=stream, backward=True, any_frame=False)
    try:
        for frame in container.decode(stream):
            if frame.pts is not None and frame.pts < start_pts:
                continue  # before the segment (an open GOP's leading frames)
            if end_pts is not None and frame.pts is not None and frame.pts >= end_pts:
                if extra >= overlap:
                    return
                extra += 1
            yield as_frame(frame, index, k, fallback_step)
            index += 1
    except av.error.FFmpegError as e:
        raise BadInput(f"the video is damaged after {index} frames ({index / (info.fps or 25):.1f} s): "
                       f"{_reason(e)}") from None
