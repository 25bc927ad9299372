"""Annotations read the same at 360p and at 4K: sizes scale with the frame; colours follow labels."""

from __future__ import annotations

import numpy as np
import pytest

from models.faces import INCORRECT, MASKED, UNKNOWN, UNMASKED, Faces
from worker.pipeline.annotate import (
    BoxAnnotator,
    CounterAnnotator,
    LabelAnnotator,
    annotate,
    colour_of,
)


def one_face(width: int, height: int, label: int = MASKED) -> Faces:
    """A face in the middle of the frame, a fifth of its height tall, with id 7."""
    s = height / 5
    cx, cy = width / 2, height / 2
    probs = np.array([[0.9, 0.05, 0.05]], np.float32)
    return Faces(xyxy=[[cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2]], score=[0.9], probs=probs,
                 label=np.array([label], np.int8), track_id=np.array([7], np.int32))


def ink_rows(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """Row indices holding pixels of exactly this BGR colour."""
    return np.flatnonzero((image == np.array(colour, np.uint8)).all(axis=2).any(axis=1))


def text_height(image: np.ndarray) -> int:
    """Height in pixels of the white text drawn on a tag."""
    rows = np.flatnonzero((image > 230).all(axis=2).any(axis=1))
    return int(rows.max() - rows.min() + 1) if len(rows) else 0


@pytest.mark.parametrize("size", [(640, 360), (3840, 2160)])
def test_label_tag_is_legible_at_any_size(size):
    w, h = size
    frame = np.zeros((h, w, 3), np.uint8)
    LabelAnnotator().annotate(frame, one_face(w, h))
    th = text_height(frame)
    # Legible: at least ~10 px of text at 360p; a constant share of the frame at every size.
    assert th >= 10
    assert 0.025 <= th / h <= 0.06, th / h


def test_sizes_scale_with_the_frame():
    small, big = np.zeros((360, 640, 3), np.uint8), np.zeros((2160, 3840, 3), np.uint8)
    for frame in (small, big):
        h, w = frame.shape[:2]
        annotate(frame, one_face(w, h))
    ratio = text_height(big) / text_height(small)
    assert 4.5 <= ratio <= 7.5, ratio  # the frame is 6x taller
    # Box lines are thicker at 4K too: count rows of the box colour at the box's top edge.
    col = colour_of(MASKED)
    top_small = ink_rows(small[:, 320:321], col)
    top_big = ink_rows(big[:, 1920:1921], col)
    assert len(top_big) >= 4 * len(top_small) > 0


def test_colours_follow_labels_and_unknown_is_grey():
    colours = {colour_of(k) for k in (MASKED, UNMASKED, INCORRECT, UNKNOWN)}
    assert len(colours) == 4
    frame = np.zeros((360, 640, 3), np.uint8)
    BoxAnnotator().annotate(frame, one_face(640, 360, UNMASKED))
    assert len(ink_rows(frame, colour_of(UNMASKED))) > 0
    assert len(ink_rows(frame, colour_of(MASKED))) == 0


def test_counter_and_tags_stay_inside_the_frame():
    frame = np.zeros((360, 640, 3), np.uint8)
    f = one_face(640, 360)
    f.xyxy[:] = [[600, 0, 640, 40]]  # a face in the top-right corner: its tag cannot go above it
    out = annotate(frame, f, annotators=(LabelAnnotator(), CounterAnnotator()))
    assert out is frame
    assert frame[:, :5].any() and frame[:, -5:].any()  # counter on the left, tag pushed inside
    assert frame[:60, :].any(axis=2).sum() > 0


def ink_columns(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """Column indices holding pixels of exactly this BGR colour."""
    return np.flatnonzero((image == np.array(colour, np.uint8)).all(axis=2).any(axis=0))


@pytest.mark.parametrize("x1", [600, 630, 639])
def test_a_tag_near_the_right_edge_is_whole_inside_the_frame(x1):
    w, h = 640, 360
    middle, edge = np.zeros((h, w, 3), np.uint8), np.zeros((h, w, 3), np.uint8)
    LabelAnnotator().annotate(middle, one_face(w, h))
    f = one_face(w, h)
    f.xyxy[:] = [[x1, 150, x1 + 40, 190]]
    LabelAnnotator().annotate(edge, f)
    tag, moved = ink_columns(middle, colour_of(MASKED)), ink_columns(edge, colour_of(MASKED))
    # The same tag, shifted left so that its right end is the frame's last column: nothing cut off.
    assert len(moved) == len(tag) > 0 and moved.max() == w - 1
    text, text_moved = (np.flatnonzero((im > 230).all(axis=2).any(axis=0)) for im in (middle, edge))
    assert len(text_moved) == len(text) > 0


def test_annotators_share_one_signature():
    frame = np.zeros((240, 320, 3), np.uint8)
    for a in (BoxAnnotator(), LabelAnnotator(), CounterAnnotator()):
        assert a.annotate(scene=frame, faces=Faces.empty()) is frame
