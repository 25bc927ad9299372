"""Unmasked CCTV faces mined from footage recorded before 2020, for training the mask classifier.

    python -m models.mine [--limit N]      # fills the crop cache; prints what it found as JSON

Every face in datasets/cctv_pre2020 is unmasked (recorded before COVID: weak labels), and these are
exactly the faces the product meets: high-angle cameras, 8-40 px, compressed, badly lit, turned
down or away. Our own detector (the worker's video profile) finds them; confident detections on
every STEP-th frame are cut as the worker cuts them. Only the 'mine' split is used: the 'eval' split
(models/clip_splits.py) measures how often the product says "masked" where nobody was.
"""

from __future__ import annotations

import argparse
import json
import sys

import cv2
import numpy as np

from models import clip_splits, data
from models.classify import MARGIN, crop_faces
from models.detect import load_detector
from models.faces import UNMASKED
from shared.assets import asset_path

STEP = 3  # frames between samples: two-second clips give ~15-20 frames each
MIN_SCORE = 0.7  # confident detections only: the weak label "unmasked" must be about a face
MIN_SIDE = 8
PER_CLIP = 40  # a crowded clip must not dominate


def clip_faces(path, detector, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(K, size, size, 3) RGB crops and (K,) short sides of confident faces in one clip."""
    cap = cv2.VideoCapture(str(path))
    crops, sides = [], []
    index = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if index % STEP == 0:
                faces = detector(frame)
                keep = (faces.score >= MIN_SCORE) & (faces.short_side >= MIN_SIDE)
                if keep.any():
                    crops.append(crop_faces(frame, faces.xyxy[keep], size))
                    sides.append(faces.short_side[keep])
            index += 1
    finally:
        cap.release()
    if not crops:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros(0, np.float32)
    images, short = np.concatenate(crops), np.concatenate(sides)
    if len(images) > PER_CLIP:
        pick = np.sort(rng.choice(len(images), PER_CLIP, replace=False))
        images, short = images[pick], short[pick]
    return images, short


def build(size: int, split: str = "mine", limit: int | None = None) -> data.CropSet:
    """Crops of every clip of a split of cctv_pre2020, labelled unmasked."""
    folder = asset_path("cctv_pre2020")
    clips = sorted(p for p in folder.glob("*.mp4") if clip_splits.pre2020_split(p.name) == split)[:limit]
    detector = load_detector("yunet", profile="video", score_threshold=0.3)
    rng = np.random.default_rng(2020)
    images, sides, names = [], [], []
    for clip in clips:
        crops, short = clip_faces(clip, detector, size, rng)
        images.append(crops)
        sides.append(short)
        names.extend([clip.stem] * len(crops))
    n = len(names)
    return data.CropSet(
        images=np.concatenate(images) if n else np.zeros((0, size, size, 3), np.uint8),
        labels=np.full(n, UNMASKED, np.int8),
        short_side=np.concatenate(sides).astype(np.float32) if n else np.zeros(0, np.float32),
        source=np.array(["cctv_pre2020"] * n),
        kind=np.array(["cctv"] * n),
    )


def mined(size: int, split: str = "mine", limit: int | None = None) -> data.CropSet:
    """The cached crop set of a split (built on first use)."""
    key = {"v": 1, "what": f"cctv_pre2020-{split}", "size": size, "margin": MARGIN, "step": STEP,
           "min_score": MIN_SCORE, "min_side": MIN_SIDE, "per_clip": PER_CLIP, "limit": limit}
    return data.cached(key, lambda: build(size, split, limit))


def main(argv: list[str] | None = None) -> int:
    """Fill the cache for both splits and print their sizes."""
    ap = argparse.ArgumentParser(prog="python -m models.mine", description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--limit", type=int)
    args = ap.parse_args(argv)
    out = {}
    for split in ("mine", "eval"):
        crops = mined(args.size, split, args.limit)
        side = crops.short_side
        out[split] = {"faces": len(crops), "under_24px": int(np.sum(side < 24)),
                      "median_px": round(float(np.median(side)), 1) if len(side) else None}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
