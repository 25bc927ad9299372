"""Training and validation face crops for the mask classifier, and CCTV-like augmentation.

Crops are cut exactly as the worker cuts them (models.classify.crop_faces, same MARGIN),
so the network sees at training time what it will see in production.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from models.classify import MARGIN, crop_faces
from models.splits import split_of
from models.voc import VOC_CLASSES, read_scenes
from shared.config import ROOT

CACHE_DIR = ROOT / ".cache" / "mask_classifier"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
# Folder names accepted as labels (the datasets' names and ours), in LABELS index order.
FOLDER_LABELS = {
    **VOC_CLASSES,
    "masked": 0,
    "unmasked": 1,
    "incorrect": 2,
}


@dataclass
class Record:
    """One source image: a face crop (boxes None: the whole image is the face) or a scene with boxes."""

    image_bgr: np.ndarray
    labels: np.ndarray  # (N,) int label per face (one for a crop)
    boxes: np.ndarray | None = None  # (N, 4) float32 x1, y1, x2, y2 pixels; None for a crop
    source: str = ""


@dataclass
class CropSet:
    """Square face crops: images (N, S, S, 3) uint8 RGB, labels (N,) int8, short_side (N,) px,
    source (N,) dataset name, kind (N,) 'crop' (a web face crop) | 'scene' (cut from a photo)."""

    images: np.ndarray
    labels: np.ndarray
    short_side: np.ndarray
    source: np.ndarray
    kind: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index) -> CropSet:
        """Rows selected by a mask or an index array."""
        return CropSet(*(getattr(self, f)[index] for f in CropSet.fields()))

    @staticmethod
    def concat(parts: list[CropSet]) -> CropSet:
        """All rows of several sets, in order."""
        return CropSet(*(np.concatenate([getattr(p, f) for p in parts]) for f in CropSet.fields()))

    @staticmethod
    def fields() -> tuple[str, ...]:
        """Names of the per-row arrays."""
        return ("images", "labels", "short_side", "source", "kind")


def crops_of(records: Iterable[Record], size: int, margin: float = MARGIN) -> CropSet:
    """Cut every face of every record to a (size, size) RGB square; streams, keeping only crops."""
    images, labels, short, source, kind = [], [], [], [], []
    for rec in records:
        if rec.boxes is None:
            h, w = rec.image_bgr.shape[:2]
            # A crop is already framed around its face: square it, add no margin.
            images.append(crop_faces(rec.image_bgr, [[0, 0, w, h]], size, margin=0.0))
            short.append([min(h, w) / (1 + 2 * margin)])
        else:
            images.append(crop_faces(rec.image_bgr, rec.boxes, size, margin=margin))
            short.append((rec.boxes[:, 2:] - rec.boxes[:, :2]).min(axis=1))
        labels.append(rec.labels)
        source.append([rec.source] * len(rec.labels))
        kind.append(["crop" if rec.boxes is None else "scene"] * len(rec.labels))
    if not images:
        return CropSet(
            np.zeros((0, size, size, 3), np.uint8),
            np.zeros(0, np.int8),
            np.zeros(0, np.float32),
            np.zeros(0, str),
            np.zeros(0, str),
        )
    return CropSet(
        np.concatenate(images),
        np.concatenate(labels).astype(np.int8),
        np.concatenate(short).astype(np.float32),
        np.concatenate(source),
        np.concatenate(kind),
    )


def folder_records(folder: Path) -> Iterator[Record]:
    """Each image below folder/<label>/ (label: with_mask | without_mask | mask_weared_incorrect | ours)."""
    for sub in sorted(p for p in Path(folder).iterdir() if p.is_dir()):
        if sub.name not in FOLDER_LABELS:
            raise ValueError(f"{sub}: folder name is not a label; use one of {sorted(FOLDER_LABELS)}")
        for path in sorted(sub.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                yield Record(read_bgr(path), np.array([FOLDER_LABELS[sub.name]]), source=sub.parent.name)


def scene_records(folder: Path, split: str) -> Iterator[Record]:
    """Each annotated scene of one split ('train' | 'val') of a VOC folder, with all its boxes."""
    for scene in read_scenes(folder):
        if split_of(scene.stem) == split and len(scene.labels):
            yield Record(read_bgr(scene.image_path), scene.labels, scene.boxes, Path(folder).name)


def read_bgr(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 BGR image; ValueError when the file is not a readable image."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path} is not a readable image")
    return image


def decode_bgr(data: bytes, name: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 BGR image from encoded bytes (JPEG/PNG...)."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{name} is not a decodable image")
    return image


def cached(key: dict, build) -> CropSet:
    """A CropSet from .cache/mask_classifier keyed by a hash of `key`, built and saved on a miss."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = CACHE_DIR / f"crops-{digest}.npz"
    if path.exists():
        with np.load(path) as z:
            return CropSet(*(z[f] for f in CropSet.fields()))
    crops = build()
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **{f: getattr(crops, f) for f in CropSet.fields()})
    tmp.replace(path)
    return crops


# --- augmentation: what a CCTV camera does to a face -------------------------------------------


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A CCTV-like variant of one (S, S, 3) uint8 RGB crop: shift, tiny resolution, blur, JPEG, light, IR."""
    size = image.shape[0]
    out = image[:, ::-1] if rng.random() < 0.5 else image
    if rng.random() < 0.7:
        out = _shift_scale(out, rng)
    low = size
    if rng.random() < 0.6:
        # Face short sides of 8-24 px become crops of ~10-32 px once the margin is added.
        low = int(rng.integers(10, 33))
        out = cv2.resize(out, (low, low), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=float(rng.uniform(0.4, 1.2)) * low / 32)
    if rng.random() < 0.3:
        out = _noise(out, rng)
    if rng.random() < 0.4:
        out = _jpeg(out, int(rng.integers(15, 70)))
    if low != size:
        out = cv2.resize(out, (size, size), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.4:
        out = _light(out, rng)
    if rng.random() < 0.15:
        grey = cv2.cvtColor(np.ascontiguousarray(out), cv2.COLOR_RGB2GRAY)
        out = np.repeat(grey[..., None], 3, axis=2)
    return np.ascontiguousarray(out)


def _shift_scale(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    size = image.shape[0]
    scale = rng.uniform(0.9, 1.12)
    dx, dy = rng.uniform(-0.08, 0.08, 2) * size
    m = cv2.getRotationMatrix2D((size / 2, size / 2), float(rng.uniform(-8, 8)), scale)
    m[:, 2] += (dx, dy)
    return cv2.warpAffine(np.ascontiguousarray(image), m, (size, size), borderMode=cv2.BORDER_REPLICATE)


def _noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noisy = image.astype(np.float32) + rng.normal(0, rng.uniform(2, 8), image.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image), [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).reshape(image.shape)


def _light(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Low light: darker, flatter, gamma-curved, as night-time CCTV with auto-gain.
    gamma = rng.uniform(0.7, 1.8)
    gain = rng.uniform(0.4, 1.1)
    x = (image.astype(np.float32) / 255.0) ** gamma * gain
    return np.clip(x * 255.0, 0, 255).astype(np.uint8)


def augmented_copies(crops: CropSet, copies: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (M, S, S, 3) uint8 and their row index (M,): copies[i] variants of row i, the first clean."""
    rng = np.random.default_rng(seed)
    index = np.repeat(np.arange(len(crops)), copies)
    out = np.empty((len(index), *crops.images.shape[1:]), np.uint8)
    first = np.r_[True, index[1:] != index[:-1]]
    for j, (i, is_first) in enumerate(zip(index, first, strict=True)):
        image = crops.images[i]
        if is_first:
            out[j] = image[:, ::-1] if rng.random() < 0.5 else image
        else:
            out[j] = augment(image, rng)
    return out, index
