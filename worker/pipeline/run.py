"""The one frame loop: decode -> (analysis stages) -> encode, for a video or a still image."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from shared.config import Settings
from worker.pipeline.decode import VideoInfo, is_image, read_image, video_frames
from worker.pipeline.encode import VideoSink, write_thumbnail


@dataclass
class Outcome:
    """What one analysis produced: local files to store and numbers for the job document."""

    output_path: Path
    output_type: str  # MIME type of output_path
    thumbnail_path: Path
    summary: dict = field(default_factory=dict)


def analyse_video(src: Path, workdir: Path, *, settings: Settings,
                  on_progress: Callable[..., None] = lambda done, **kw: None) -> Outcome:
    """Analyse every frame of a video and write the annotated H.264 MP4 and a poster."""
    info = VideoInfo.from_path(src, max_pixels=settings.max_pixels,
                               max_seconds=settings.max_video_seconds)
    out = workdir / "annotated.mp4"
    thumb = workdir / "poster.jpg"
    started = time.monotonic()
    last_time = 0.0
    expected = info.frames or round(info.duration_s * info.fps) or None
    with VideoSink(out, width=info.width, height=info.height, fps=info.fps, time_base=info.time_base,
                   max_height=settings.output_max_height, preset=settings.encoder_preset) as sink:
        for frame in video_frames(src, info):
            if frame.index == 0:
                write_thumbnail(frame.image, thumb)
            sink.write(frame.image, frame.pts)
            last_time = frame.time_s
            on_progress(frame.index + 1, total=expected)
    seconds = time.monotonic() - started
    duration = max(info.duration_s, last_time)
    return Outcome(
        output_path=out, output_type="video/mp4", thumbnail_path=thumb,
        summary={
            "frames": sink.frames, "duration_s": round(duration, 3), "fps": round(info.fps, 3),
            "width": info.width, "height": info.height, "codec_in": info.codec,
            "rotation": info.rotation, "encoder": sink.codec,
            "output_width": sink.width, "output_height": sink.height,
            "processing_s": round(seconds, 2),
            "processing_fps": round(sink.frames / seconds, 2) if seconds else None,
        },
    )


def analyse_image(src: Path, workdir: Path, *, settings: Settings,
                  on_progress: Callable[..., None] = lambda done, **kw: None) -> Outcome:
    """Analyse a still image and write the annotated JPEG."""
    from PIL import Image

    image = read_image(src, max_pixels=settings.max_pixels)
    out = workdir / "annotated.jpg"
    Image.fromarray(image[:, :, ::-1]).save(out, format="JPEG", quality=90)
    thumb = write_thumbnail(image, workdir / "poster.jpg")
    on_progress(1, force=True)
    h, w = image.shape[:2]
    return Outcome(output_path=out, output_type="image/jpeg", thumbnail_path=thumb,
                   summary={"frames": 1, "duration_s": 0.0, "width": w, "height": h})


def analyse(src: Path, workdir: Path, *, kind: str, settings: Settings,
            on_progress: Callable[..., None] = lambda done, **kw: None) -> Outcome:
    """Analyse a video or a still image (kind 'video' | 'image')."""
    if kind == "image" or (kind != "video" and is_image(src)):
        return analyse_image(src, workdir, settings=settings, on_progress=on_progress)
    return analyse_video(src, workdir, settings=settings, on_progress=on_progress)
