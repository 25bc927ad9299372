"""The analysis stages as generators over Items: detect, classify (batched across frames), annotate.

Tracking lives in track.py (`track_faces`); run.py chains them between decode and encode. Each stage
takes an iterable of Items and yields the same Items with more filled in, so any one of them can be
tested, timed or swapped alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from models.classify import crop_faces
from models.faces import Faces
from models.rules import Rules, face_quality, frame_labels
from worker.pipeline.annotate import annotate
from worker.pipeline.decode import Frame
from worker.pipeline.timing import NO_TIMES


@dataclass
class Item:
    """One frame on its way through the stages: BGR (H, W, 3) image, t in seconds from the first frame."""

    index: int
    t: float
    image: np.ndarray
    faces: Faces
    pts: int | None = None


def detect_faces(frames: Iterable[Frame], detector: Callable[[np.ndarray], Faces],
                 start: float | None = None, times=NO_TIMES) -> Iterator[Item]:
    """Items with the detector's faces, t counted from the first frame's timestamp (or from start: a
    segment of a clip counts from the clip's first frame)."""
    for frame in frames:
        if start is None:
            start = frame.time_s
        with times.stage("detect"):
            faces = detector(frame.image)
        yield Item(index=frame.index, t=max(0.0, frame.time_s - start), image=frame.image, faces=faces,
                   pts=frame.pts)


def classify_faces(items: Iterable[Item], classifier, rules: Rules, times=NO_TIMES) -> Iterator[Item]:
    """Fill probs and labels; one classifier call per window of frames (or of faces, in a crowd)."""
    window: list[Item] = []
    faces = 0
    for item in items:
        window.append(item)
        faces += len(item.faces)
        if len(window) >= rules.classify_window or faces >= rules.classify_max_faces:
            classify_window(window, classifier=classifier, rules=rules, times=times)
            yield from window
            window, faces = [], 0
    if window:
        classify_window(window, classifier=classifier, rules=rules, times=times)
        yield from window


def classify_window(window: list[Item], *, classifier, rules: Rules, times=NO_TIMES) -> None:
    """Classify, in one classifier call, every large-enough face of the frames in window (in place)."""
    crops, spans = [], []
    with times.stage("crop"):
        for item in window:
            faces = item.faces
            big = np.flatnonzero(faces.short_side >= rules.min_face_px)
            spans.append(big)
            if len(big):
                crops.append(crop_faces(item.image, faces.xyxy[big], classifier.input_size))
        crops = np.concatenate(crops) if crops else None
    times.count("faces", sum(len(item.faces) for item in window))
    times.count("classified", 0 if crops is None else len(crops))
    with times.stage("classify"):
        probs = classifier(crops) if crops is not None else np.zeros((0, 3), np.float32)
    start = 0
    for item, big in zip(window, spans, strict=True):
        faces = item.faces
        faces.probs[big] = probs[start:start + len(big)]
        start += len(big)
        faces.quality = face_quality(faces)  # once per face: the labels and the votes both use it
        faces.label = frame_labels(faces.probs, faces.short_side, rules, faces.quality)


def annotate_frames(items: Iterable[Item], annotators=None) -> Iterator[Item]:
    """Draw boxes, labels and the counter on each item's image (in place)."""
    for item in items:
        if annotators is None:
            annotate(item.image, item.faces)
        else:
            annotate(item.image, item.faces, annotators=annotators)
        yield item
