"""Training images in MongoDB: files in the GridFS bucket "training", one document each in "training_images".

python -m models.trainset import DIR --label-from-folders [--source NAME] [--split train]
python -m models.trainset import-scenes DIR [--split train|val|all]
python -m models.trainset stats

A document: {sha256, file_id, filename, kind: "crop" | "scene", label (crops: a LABELS name),
faces (scenes: [{box: [x1, y1, x2, y2] pixels, label}]), split, source, provenance, width, height,
imported_at}. Importing is idempotent by the file's sha256 (a unique index): a file already there is
skipped. Files are streamed to and from GridFS one at a time.
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

from models.data import FOLDER_LABELS, IMAGE_SUFFIXES, Record, decode_bgr, read_bgr
from models.splits import split_of
from models.voc import read_scenes
from shared import db
from worker.pipeline.classify import sha256_of
from worker.pipeline.faces import LABELS

COLLECTION = "training_images"


@dataclass
class ImportResult:
    """How many files an import added and skipped (already there by sha256)."""

    added: int = 0
    skipped: int = 0


def _collection():
    return db.get_db()[COLLECTION]


def _put(path: Path, doc: dict) -> bool:
    """Upload one file and insert its document unless its sha256 is there; True when added."""
    images = _collection()
    sha = sha256_of(path)
    if images.find_one({"sha256": sha}, {"_id": 1}) is not None:
        return False
    bucket = db.gridfs_bucket(db.TRAINING)
    with open(path, "rb") as f:
        file_id = bucket.upload_from_stream(path.name, f, metadata={"sha256": sha})
    try:
        images.insert_one({**doc, "sha256": sha, "file_id": file_id, "filename": path.name})
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


def import_folder(
    folder: Path, source: str | None = None, split: str = "train"
) -> ImportResult:
    """Import folder/<label>/*.jpg face crops (label from the folder name, e.g. with_mask)."""
    folder = Path(folder)
    result = ImportResult()
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
            added = _put(path, doc)
            result.added += added
            result.skipped += not added
    return result


def import_scenes(
    folder: Path, split: str = "train", source: str | None = None
) -> ImportResult:
    """Import PASCAL VOC scenes (images/ + annotations/) of one split ('train' | 'val' | 'all')."""
    folder = Path(folder)
    result = ImportResult()
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
        added = _put(scene.image_path, doc)
        result.added += added
        result.skipped += not added
    return result


def mongo_records(split: str = "train") -> Iterator[Record]:
    """Each training image of a split as a Record, in sha256 order (stable for seeded training)."""
    bucket = db.gridfs_bucket(db.TRAINING)
    cursor = _collection().find({"split": split}, sort=[("sha256", 1)], batch_size=64)
    for doc in cursor:
        with bucket.open_download_stream(doc["file_id"]) as stream:
            image = decode_bgr(stream.read(), doc["filename"])
        yield to_record(doc, image)


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
