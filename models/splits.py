"""The train/validation split of mask_scenes, by image, fixed by a hash of the file stem."""

from __future__ import annotations

import hashlib

VALIDATION_PERCENT = 20


def split_of(image_stem: str) -> str:
    """'train' or 'val' for one image of mask_scenes (e.g. 'maksssksksss42'); stable across runs."""
    bucket = int(hashlib.sha256(image_stem.encode()).hexdigest()[:8], 16) % 100
    return "val" if bucket < VALIDATION_PERCENT else "train"
