"""The one frame loop: decode -> detect -> track -> classify -> gate people -> annotate -> encode.

Three threads overlap on the cores: decoding (prefetch), the analysis stages (this thread) and
encoding (BackgroundWriter). Tracking runs before classification so that the uncertain detections the
tracker drops are never cropped or classified; the classifier still sees a window of frames per call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from models.rules import Rules
from shared.config import Settings
from worker.loaded_models import get_models, set_threads
from worker.pipeline.annotate import annotate
from worker.pipeline.decode import VideoInfo, is_image, read_image, video_frames
from worker.pipeline.encode import VideoSink, write_thumbnail
from worker.pipeline.persons import gate_people, lag_frames
from worker.pipeline.stages import Item, classify_faces, classify_window, detect_faces
from worker.pipeline.stats import StatsCollector, frame_doc
from worker.pipeline.threads import BackgroundWriter, prefetch
from worker.pipeline.timing import NO_TIMES
from worker.pipeline.track import CutDetector, Tracker, TrackerParams, track_faces

POSTER_WIDTH = 480
ID_STRIDE = 1000  # part k of a clip (a segment, a camera's segment) draws track ids k*1000 + 1, 2, ...
LOST_TRACK_S = 1.2  # a face unseen this long is matched again only by re-identification
REID_S = 4.0  # a lost person coming back (same place, same clothes) within this long keeps their id


@dataclass
class Outcome:
    """What one analysis produced: local files to store and numbers for the job document."""

    output_path: Path
    output_type: str  # MIME type of output_path
    thumbnail_path: Path
    summary: dict = field(default_factory=dict)
    crops: dict[int, bytes] = field(default_factory=dict)  # track id -> best face JPEG


def _noop(*args, **kwargs) -> None:
    return None


class _Poster:
    """The annotated frame with the most faces (first such), kept small: the clip's poster."""

    def __init__(self):
        self.faces = -1
        self.image: np.ndarray | None = None

    def offer(self, image: np.ndarray, faces: int) -> None:
        if faces > self.faces:
            h, w = image.shape[:2]
            size = (POSTER_WIDTH, max(2, round(h * POSTER_WIDTH / w)))
            self.image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            self.faces = faces


def analyse_video(src: Path, workdir: Path, *, settings: Settings, models=None, rules: Rules | None = None,
                  on_progress: Callable[..., None] = _noop,
                  on_frame: Callable[[dict], None] = _noop, times=NO_TIMES) -> Outcome:
    """Analyse every frame of a video; writes the annotated H.264 MP4 and a poster into workdir.

    on_progress(done_frames, total=...) may raise Cancelled; on_frame gets each frame document; times
    (a timing.StageTimes) collects CPU time per stage.
    """
    # Probe first: a file that cannot be analysed fails before any model is loaded.
    info = VideoInfo.from_path(src, max_pixels=settings.max_pixels, max_seconds=settings.max_video_seconds)
    models = models or get_models()
    rules = rules or Rules()
    out, thumb = workdir / "annotated.mp4", workdir / "poster.jpg"
    expected = info.frames or round(info.duration_s * info.fps) or None
    done = frame_loop(video_frames(src, info), info, out, settings=settings, models=models, rules=rules,
                      on_progress=lambda n: on_progress(n, total=expected), on_frame=on_frame,
                      times=times)
    write_thumbnail(done.poster.image, thumb, width=POSTER_WIDTH)
    stats, crops = done.collector.summary()
    summary = video_summary(info, done, stats, settings=settings, rules=rules)
    return Outcome(output_path=out, output_type="video/mp4", thumbnail_path=thumb, summary=summary,
                   crops=crops)


@dataclass
class Pass:
    """What one run of the frame loop leaves: tallies, poster, encoder facts and timing."""

    collector: StatsCollector
    poster: _Poster
    tracker: TrackerParams
    models: dict  # models.describe() of the detector used
    frames: int  # frames encoded
    output_width: int
    output_height: int
    encoder: str
    last_t: float
    seconds: float
    overlap: list = field(default_factory=list)  # (index, xyxy, track ids) of frames past end_index


def frame_loop(frames, info: VideoInfo, out: Path, *, settings: Settings, models, rules: Rules,
               on_progress: Callable[[int], None] = _noop, on_frame: Callable[[dict], None] = _noop,
               start: float | None = None, end_index: int | None = None, id_offset: int = 0,
               times=NO_TIMES) -> Pass:
    """The frame loop over decoded frames: every stage, the statistics and the annotated MP4 at out.

    A segment passes start (the clip's first timestamp) and end_index: frames from end_index on are the
    overlap into the next segment, tracked so that tracks there can be linked, but not counted, drawn
    or encoded; id_offset is added to its track ids (ids stay unique across segments). on_progress gets
    the number of frames done.
    """
    set_threads(video=True)
    fps = info.fps or 25
    tracker = Tracker(TrackerParams(lost_frames=max(5, round(LOST_TRACK_S * fps)),
                                    reid_frames=max(10, round(REID_S * fps))))
    collector = StatsCollector(rules)
    poster = _Poster()
    started = time.monotonic()
    last_t = 0.0
    overlap: list = []
    done = 0
    # A segment's part is libx264 on any worker: the parts of one clip, made on GPU and CPU workers
    # alike, must be one stream to be concatenated without re-encoding.
    sink = VideoSink(out, width=info.width, height=info.height, fps=info.fps, time_base=info.time_base,
                     max_height=settings.output_max_height, preset=settings.encoder_preset,
                     gpu=models.gpu and start is None)
    frames = prefetch(frames, maxsize=4, name="decode")
    detector = models.for_video()
    items = detect_faces(frames, detector, start=start, times=times)
    items = track_faces(items, tracker, cuts=CutDetector(), times=times)
    if id_offset:
        items = _offset_ids(items, id_offset)
    items = classify_faces(items, models.classifier, rules, times=times)
    items = gate_people(items, rules, lag_frames(info.fps, rules), evidence=collector.evidence)
    try:
        with BackgroundWriter(sink, maxsize=4, name="encode") as writer:
            for item in items:
                if end_index is not None and item.index >= end_index:
                    overlap.append((item.index, item.faces.xyxy.copy(), item.faces.track_id.copy()))
                    continue
                collector.add(item.index, item.t, item.faces, item.image)
                on_frame(frame_doc(item.index, item.t, item.faces))
                with times.stage("annotate"):
                    annotate(item.image, item.faces)
                poster.offer(item.image, len(item.faces))
                writer.write(item.image, item.pts)
                times.sample()
                last_t = item.t
                done += 1
                on_progress(done if start is not None else item.index + 1)
    finally:
        # Stops the decode thread at once on cancel or error (not only when garbage is collected).
        items.close()
        frames.close()
    times.stop(done)
    return Pass(collector=collector, poster=poster, tracker=tracker.params, models=models.describe(detector),
                frames=sink.frames, output_width=sink.width, output_height=sink.height, encoder=sink.codec,
                last_t=last_t, seconds=time.monotonic() - started, overlap=overlap)


def _offset_ids(items, offset: int):
    """Items with offset added to every public track id (faces on no track keep -1)."""
    for item in items:
        ids = item.faces.track_id
        item.faces.track_id = np.where(ids >= 0, ids + offset, ids).astype(ids.dtype)
        yield item


def video_summary(info: VideoInfo, done: Pass, stats: dict, *, settings: Settings, rules: Rules,
                  seconds: float | None = None) -> dict:
    """The result summary of a video (docs/DATA.md) from its probe, its frame loop(s) and statistics."""
    seconds = done.seconds if seconds is None else seconds
    frame_step = 1 / info.fps if info.fps else 0.0
    duration = max(info.duration_s, done.last_t + frame_step)
    return {
        "frames": done.frames, "duration_s": round(duration, 3), "fps": round(info.fps, 3),
        "width": info.width, "height": info.height, "rotation": info.rotation, "codec_in": info.codec,
        "output_width": done.output_width, "output_height": done.output_height, "encoder": done.encoder,
        "processing_s": round(seconds, 2),
        "processing_fps": round(done.frames / seconds, 2) if seconds else None,
        **stats,
        "models": done.models,
        "settings": _settings_record(rules, done.tracker, settings),
    }


def analyse_image(src: Path, workdir: Path, *, settings: Settings, models=None, rules: Rules | None = None,
                  on_progress: Callable[..., None] = _noop,
                  on_frame: Callable[[dict], None] = _noop) -> Outcome:
    """Analyse a still image through the same stages; writes the annotated JPEG and a poster."""
    started = time.monotonic()
    image = read_image(src, max_pixels=settings.max_pixels)
    models = models or get_models()
    set_threads(video=False)
    rules = (rules or Rules()).for_images()
    faces = models.still_detector(image)
    # One frame: every detected face is a person of its own (no motion to link them by).
    faces.track_id = np.arange(1, len(faces) + 1, dtype=np.int32)
    item = Item(index=0, t=0.0, image=image, faces=faces)
    classify_window([item], classifier=models.classifier, rules=rules)
    collector = StatsCollector(rules)
    collector.add(0, 0.0, item.faces, image)
    on_frame(frame_doc(0, 0.0, item.faces))
    annotate(image, item.faces)
    out = workdir / "annotated.jpg"
    cv2.imwrite(str(out), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    thumb = write_thumbnail(image, workdir / "poster.jpg", width=min(POSTER_WIDTH, image.shape[1]))
    on_progress(1, total=1, force=True)
    stats, crops = collector.summary()
    h, w = image.shape[:2]
    seconds = time.monotonic() - started
    summary = {
        "frames": 1, "duration_s": 0.0, "fps": None, "width": w, "height": h, "rotation": 0,
        "codec_in": src.suffix.lstrip(".").lower() or None, "output_width": w, "output_height": h,
        "encoder": "jpeg", "processing_s": round(seconds, 2),
        "processing_fps": round(1 / seconds, 2) if seconds else None,
        **stats,
        "models": models.describe(image=True),
        "settings": _settings_record(rules, None, settings),
    }
    return Outcome(output_path=out, output_type="image/jpeg", thumbnail_path=thumb, summary=summary,
                   crops=crops)


def _settings_record(rules: Rules, tracker: TrackerParams | None, settings: Settings) -> dict:
    """The analysis settings recorded with a result: rules, tracker, output cap and encoder preset."""
    return {
        "rules": rules.describe(),
        "tracker": tracker.describe() if tracker else None,
        "output_max_height": settings.output_max_height,
        "encoder_preset": settings.encoder_preset,
    }


def analyse(src: Path, workdir: Path, *, kind: str, settings: Settings, models=None,
            on_progress: Callable[..., None] = _noop, on_frame: Callable[[dict], None] = _noop) -> Outcome:
    """Analyse a video or a still image (kind 'video' | 'image'; anything else: by file name)."""
    fn = analyse_image if kind == "image" or (kind != "video" and is_image(src)) else analyse_video
    return fn(src, workdir, settings=settings, models=models, on_progress=on_progress, on_frame=on_frame)
