"""Training images in MongoDB: files in the GridFS bucket "training", one document each in "training_images".

python -m models.trainset import DIR --label-from-folders [--source NAME] [--split train]
python -m models.trainset import-scenes DIR [--split train|val|all]
python -m models.trainset stats

A document: {sha256, file_id, filename, bytes, kind: "crop" | "scene", label (crops: a LABELS name),
faces (scenes: [{box: [x1, y1, x2, y2] pixels, label}]), split, source, provenance, width, height,
imported_at}. Importing is idempotent by the file's sha256 (a unique index): a file already there is
skipped. Files are streamed to GridFS one at a time and read back in one pass over its chunks.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pymongo.errors import DuplicateKeyError

from models.data import (
    FOLDER_LABELS,
    IMAGE_SUFFIXES,
    CropSet,
    Record,
    crops_of,
    decode_bgr,
    read_bgr,
)
from models.faces import LABELS
from models.splits import split_of
from models.voc import read_scenes
from shared import db
from shared.assets import sha256_file

COLLECTION = "training_images"


@dataclass
class ImportResult:
    """How many files an import added and skipped (already there by sha256)."""

    added: int = 0
    skipped: int = 0


def _collection():
    return db.get_db()[COLLECTION]


def _known_sha256() -> set[str]:
    # One scan up front: a find by a non-_id field is a full scan on FerretDB, per file O(n^2).
    return {d["sha256"] for d in _collection().find({}, {"sha256": 1, "_id": 0})}


def _put(path: Path, doc: dict, known: set[str]) -> bool:
    """Upload one file and insert its document unless its sha256 is known; True when added."""
    sha = sha256_file(path)
    if sha in known:
        return False
    known.add(sha)
    bucket = db.gridfs_bucket(db.TRAINING)
    with open(path, "rb") as f:
        file_id = bucket.upload_from_stream(path.name, f, metadata={"sha256": sha})
    record = {**doc, "sha256": sha, "file_id": file_id, "filename": path.name, "bytes": path.stat().st_size}
    try:
        _collection().insert_one(record)
    except DuplicateKeyError:
        # A concurrent import won the race: keep its document, drop our copy of the bytes.
        bucket.delete(file_id)
        return False
    return True


def _provenance(path: Path, root: Path) -> dict:
    return {
        "path": str(path.relative_to(root)),
        "folder": root.name,
        "imported_by": "models.trainset",
    }


def import_folder(folder: Path, source: str | None = None, split: str = "train") -> ImportResult:
    """Import folder/<label>/*.jpg face crops (label from the folder name, e.g. with_mask)."""
    folder = Path(folder)
    result, known = ImportResult(), _known_sha256()
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        if sub.name not in FOLDER_LABELS:
            raise ValueError(f"{sub}: folder name is not a label; use one of {sorted(FOLDER_LABELS)}")
        for path in sorted(p for p in sub.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            h, w = read_bgr(path).shape[:2]
            doc = {
                "kind": "crop",
                "label": LABELS[FOLDER_LABELS[sub.name]],
                "split": split,
                "source": source or folder.name,
                "provenance": _provenance(path, folder),
                "width": w,
                "height": h,
                "imported_at": dt.datetime.now(dt.UTC),
            }
            added = _put(path, doc, known)
            result.added += added
            result.skipped += not added
    return result


def import_scenes(folder: Path, split: str = "train", source: str | None = None) -> ImportResult:
    """Import PASCAL VOC scenes (images/ + annotations/) of one split ('train' | 'val' | 'all')."""
    folder = Path(folder)
    result, known = ImportResult(), _known_sha256()
    for scene in read_scenes(folder):
        scene_split = split_of(scene.stem)
        if split not in ("all", scene_split) or not len(scene.labels):
            continue
        h, w = read_bgr(scene.image_path).shape[:2]
        doc = {
            "kind": "scene",
            "faces": [
                {"box": [round(float(v), 1) for v in box], "label": LABELS[int(label)]}
                for box, label in zip(scene.boxes, scene.labels, strict=True)
            ],
            "split": scene_split,
            "source": source or folder.name,
            "provenance": _provenance(scene.image_path, folder),
            "width": w,
            "height": h,
            "imported_at": dt.datetime.now(dt.UTC),
        }
        added = _put(scene.image_path, doc, known)
        result.added += added
        result.skipped += not added
    return result


def mongo_records(split: str = "train") -> Iterator[tuple[str, Record]]:
    """(sha256, Record) of each training image of a split, in storage order.

    One streaming pass over the bucket's chunks (a GridFS download per file re-scans every chunk
    on FerretDB); only the chunks of a file being assembled are held in memory.
    """
    database = db.get_db()
    docs = {d["file_id"]: d for d in _collection().find({"split": split}, {"provenance": 0})}
    parts: dict = {}
    for chunk in database[f"{db.TRAINING}.chunks"].find({}, batch_size=32):
        doc = docs.get(chunk["files_id"])
        if doc is None:
            continue  # a file of another split
        got = parts.setdefault(chunk["files_id"], {})
        got[chunk["n"]] = bytes(chunk["data"])
        if sum(map(len, got.values())) == doc["bytes"]:
            del parts[chunk["files_id"]]
            blob = b"".join(got[n] for n in sorted(got))
            yield doc["sha256"], to_record(doc, decode_bgr(blob, doc["filename"]))


def mongo_crops(split: str, size: int) -> CropSet:
    """Every face of a split's training images as crops, ordered by sha256 (reproducible training)."""
    keys: list[str] = []

    def tagged() -> Iterator[Record]:
        for sha, record in mongo_records(split):
            keys.extend([sha] * len(record.labels))
            yield record

    crops = crops_of(tagged(), size)
    return crops.take(np.argsort(np.asarray(keys), kind="stable"))


def to_record(doc: dict, image_bgr: np.ndarray) -> Record:
    """A Record from one training_images document and its decoded image."""
    if doc["kind"] == "crop":
        return Record(image_bgr, np.array([LABELS.index(doc["label"])]), source=doc["source"])
    boxes = np.array([f["box"] for f in doc["faces"]], np.float32).reshape(-1, 4)
    labels = np.array([LABELS.index(f["label"]) for f in doc["faces"]], np.int64)
    return Record(image_bgr, labels, boxes, source=doc["source"])


def stats() -> list[dict]:
    """Counts of documents by split, kind and source."""
    pipeline = [
        {"$group": {"_id": {"split": "$split", "kind": "$kind", "source": "$source"}, "n": {"$sum": 1}}}
    ]
    rows = [{**r["_id"], "images": r["n"]} for r in _collection().aggregate(pipeline)]
    return sorted(rows, key=lambda r: (r["split"], r["kind"], r["source"]))


def main(argv: list[str] | None = None) -> None:
    """Command line: import a labelled folder or VOC scenes, or print counts."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    crops = sub.add_parser("import", help="face crops in DIR/<label>/")
    crops.add_argument("dir", type=Path)
    crops.add_argument("--label-from-folders", action="store_true", required=True)
    crops.add_argument("--source", help="dataset name (default: the folder's name)")
    crops.add_argument("--split", default="train", choices=("train", "val"))
    scenes = sub.add_parser("import-scenes", help="PASCAL VOC DIR/images + DIR/annotations")
    scenes.add_argument("dir", type=Path)
    scenes.add_argument("--split", default="train", choices=("train", "val", "all"))
    scenes.add_argument("--source", help="dataset name (default: the folder's name)")
    sub.add_parser("stats", help="documents by split, kind and source")
    args = parser.parse_args(argv)
    db.ping()
    if args.command == "import":
        result = import_folder(args.dir, source=args.source, split=args.split)
    elif args.command == "import-scenes":
        result = import_scenes(args.dir, split=args.split, source=args.source)
    else:
        print(json.dumps(stats(), indent=2))
        return
    print(json.dumps({"added": result.added, "skipped": result.skipped}))


if __name__ == "__main__":
    main()
