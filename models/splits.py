"""The train/validation split of mask_scenes, by near-duplicate group, fixed by a hash of the group.

mask_scenes holds pairs of near-identical photos (the same scene re-encoded, cropped or resized). A
split by file name puts one of a pair in training and the other in validation, which flatters every
validation figure. So photos are grouped first: candidates by a perceptual hash (dHash, 64 bits of
horizontal brightness gradients on a 9x8 thumbnail, robust to re-encoding and resizing), confirmed by
the correlation of 32x32 grey thumbnails; linked pairs form groups (union-find), and a group goes to
one side as a whole, chosen by a hash of its first member's name.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import cv2
import numpy as np

VALIDATION_PERCENT = 20
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Measured on mask_scenes' 639 photos: the clear duplicates differ by 0-14 dHash bits and correlate
# >= 0.85; a further band (<= 12 bits, >= 0.69) holds crops of one scene, grouped too (leaking a
# near-copy costs more than a slightly uneven split). Unrelated photos correlate below 0.6.
CANDIDATE_BITS = 16
SAME_CORRELATION = 0.85
CLOSE_BITS, CLOSE_CORRELATION = 12, 0.69


def dhash(image_bgr: np.ndarray) -> int:
    """64-bit difference hash of a BGR image."""
    grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    bits = (small[:, 1:] > small[:, :-1]).flatten()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def thumbnail(image_bgr: np.ndarray) -> np.ndarray:
    """(1024,) zero-mean, unit-variance 32x32 grey thumbnail: dot / 1024 is a correlation."""
    grey = cv2.resize(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY), (32, 32), interpolation=cv2.INTER_AREA)
    g = grey.astype(np.float32).flatten()
    return (g - g.mean()) / (g.std() + 1e-6)


def near_duplicate(bits: int, correlation: float) -> bool:
    """Whether two photos with this dHash distance and thumbnail correlation are one scene."""
    return (bits <= CANDIDATE_BITS and correlation >= SAME_CORRELATION) or (
        bits <= CLOSE_BITS and correlation >= CLOSE_CORRELATION)


def duplicate_groups(hashes: dict[str, int], thumbs: dict[str, np.ndarray]) -> dict[str, str]:
    """{stem: group key}, the key being the alphabetically first stem of its near-duplicate group."""
    stems = sorted(hashes)
    parent = {s: s for s in stems}

    def find(s: str) -> str:
        while parent[s] != s:
            parent[s] = parent[parent[s]]
            s = parent[s]
        return s

    for i, a in enumerate(stems):
        for b in stems[i + 1:]:
            bits = bin(hashes[a] ^ hashes[b]).count("1")
            if bits > CANDIDATE_BITS:
                continue
            if near_duplicate(bits, float(np.dot(thumbs[a], thumbs[b]) / len(thumbs[a]))):
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[max(ra, rb)] = min(ra, rb)
    return {s: find(s) for s in stems}


@cache
def _groups(folder: str) -> dict[str, str]:
    hashes, thumbs = {}, {}
    for p in sorted((Path(folder) / "images").iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            image = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if image is not None:
                hashes[p.stem], thumbs[p.stem] = dhash(image), thumbnail(image)
    return duplicate_groups(hashes, thumbs)


def _default_folder() -> str:
    from shared.assets import asset_path

    return str(asset_path("mask_scenes"))


def group_of(image_stem: str, folder: str | None = None) -> str:
    """The near-duplicate group key of one photo of mask_scenes (its own stem when it has no twin)."""
    return _groups(folder or _default_folder()).get(image_stem, image_stem)


def split_of(image_stem: str, folder: str | None = None) -> str:
    """'train' or 'val' for one image of mask_scenes (e.g. 'maksssksksss42'); stable across runs."""
    key = group_of(image_stem, folder)
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 100
    return "val" if bucket < VALIDATION_PERCENT else "train"
