"""Crowd clips composed from annotated photos, so that every frame has true face boxes and identities.

Motions: "pan" (a slow pan over each photo, a cut between photos), "zoom" (a slow zoom into each
photo) and "out_and_back" (a pan that carries everyone out of view and back: the same people return,
which a good tracker counts once). Photos come from the validation split of mask_scenes only.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.splits import split_of
from models.voc import read_scenes
from shared.assets import asset_path

SIZE = (640, 360)
FPS = 25
FRAMES_PER_PHOTO = 50
MIN_VISIBLE_PX = 10  # a face smaller than this in the frame is not expected to be found
MOTIONS = ("pan", "zoom", "out_and_back")


@dataclass
class Scene:
    """One annotated photo: BGR image and its (K, 4) face boxes in pixels."""

    stem: str
    image: np.ndarray
    boxes: np.ndarray


@dataclass
class Truth:
    """Per frame: (K, 4) visible true boxes and their (K,) identities, distinct across the clip."""

    boxes: list[np.ndarray]
    ids: list[np.ndarray]


def validation_scenes(min_faces: int = 6) -> list[Scene]:
    """Validation photos of mask_scenes with at least min_faces annotated faces, by name."""
    out = []
    for s in read_scenes(asset_path("mask_scenes")):
        if split_of(s.stem) == "val" and len(s.boxes) >= min_faces:
            out.append(Scene(s.stem, cv2.imread(str(s.image_path)), np.asarray(s.boxes, np.float32)))
    return out


def _views(scene: Scene, motion: str, n: int) -> Iterator[tuple[float, float, float]]:
    """(scale, x offset, y offset) of each frame's view of the photo, in photo pixels."""
    w, h = SIZE
    ih, iw = scene.image.shape[:2]
    base = 1.25 * max(w / iw, h / ih)
    for i in range(n):
        u = i / max(1, n - 1)
        if motion == "zoom":
            scale = base * (1.0 + 0.6 * u)
            cx, cy = iw / 2, ih / 2
            yield scale, cx - w / 2 / scale, cy - h / 2 / scale
        elif motion == "out_and_back":
            # Left until the photo has left the frame, then back: everyone exits and returns.
            x = (2 * u if u <= 0.5 else 2 - 2 * u) * iw
            yield base, x, (ih - h / base) / 2
        else:
            scale = base
            yield scale, u * (iw - w / scale), (ih - h / scale) / 2


def frames(scenes: list[Scene], motion: str, frames_per_photo: int = FRAMES_PER_PHOTO
           ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(frame BGR (H, W, 3), visible true boxes (K, 4), ids (K,)) of a clip over the scenes in turn."""
    w, h = SIZE
    first_id = 0
    n = frames_per_photo * (2 if motion == "out_and_back" else 1)
    for scene in scenes:
        ids = np.arange(first_id, first_id + len(scene.boxes))
        first_id += len(scene.boxes)
        for scale, ox, oy in _views(scene, motion, n):
            m = np.array([[scale, 0, -ox * scale], [0, scale, -oy * scale]], np.float32)
            frame = cv2.warpAffine(scene.image, m, SIZE, flags=cv2.INTER_CUBIC,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=(90, 90, 90))
            boxes = (scene.boxes - np.array([ox, oy, ox, oy], np.float32)) * scale
            clipped = boxes.copy()
            clipped[:, 0::2] = clipped[:, 0::2].clip(0, w)
            clipped[:, 1::2] = clipped[:, 1::2].clip(0, h)
            side = clipped[:, 2:] - clipped[:, :2]
            area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
            ok = (side.min(axis=1) >= MIN_VISIBLE_PX) & (np.prod(side.clip(0), axis=1) >= 0.6 * area)
            yield frame, clipped[ok], ids[ok]


def write_clip(path: Path, scenes: list[Scene], *, motion: str, seed: int = 0) -> Truth:
    """Write the composed clip as H.264 MP4 (25 fps) and return its per-frame truth."""
    import av

    truth = Truth([], [])
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=FPS)
        stream.width, stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "23"}
        for frame, boxes, ids in frames(scenes, motion):
            # Sensor noise, as a camera adds: identical frames would flatter the tracker.
            noisy = np.clip(frame.astype(np.int16) + rng.normal(0, 2.0, frame.shape).astype(np.int16), 0, 255)
            image = av.VideoFrame.from_ndarray(noisy.astype(np.uint8), format="bgr24")
            out.mux(stream.encode(image))
            truth.boxes.append(boxes)
            truth.ids.append(ids)
        out.mux(stream.encode())
    return truth
