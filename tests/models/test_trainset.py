"""Training images in the real MongoDB (FerretDB): import, read back, idempotent by sha256."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from models import trainset
from shared import db
from shared.assets import sha256_file


@pytest.fixture
def labelled_folder(tmp_path, asset):
    """Three real crops per label in DIR/with_mask and DIR/without_mask."""
    for label in ("with_mask", "without_mask"):
        (tmp_path / "crops" / label).mkdir(parents=True)
        for path in sorted((asset("mask_crops") / label).iterdir())[:3]:
            shutil.copy(path, tmp_path / "crops" / label / path.name)
    return tmp_path / "crops"


@pytest.fixture
def empty_trainset(mongo):
    """The test database's training_images collection, emptied."""
    mongo[trainset.COLLECTION].delete_many({})
    return mongo[trainset.COLLECTION]


def test_import_folder_read_back_and_idempotent(labelled_folder, empty_trainset, capsys):
    trainset.main(["import", str(labelled_folder), "--label-from-folders", "--source", "t"])
    assert '"added": 6' in capsys.readouterr().out
    again = trainset.import_folder(labelled_folder, source="t")
    assert (again.added, again.skipped) == (0, 6)
    assert empty_trainset.count_documents({}) == 6
    doc = empty_trainset.find_one({"provenance.path": "with_mask/with_mask_0000.jpg"})
    assert doc["label"] == "masked" and doc["split"] == "train" and doc["source"] == "t"
    assert doc["sha256"] == sha256_file(labelled_folder / "with_mask" / "with_mask_0000.jpg")
    records = [r for _, r in trainset.mongo_records("train")]
    assert sorted(int(r.labels[0]) for r in records) == [0, 0, 0, 1, 1, 1]
    assert all(r.image_bgr.ndim == 3 and r.boxes is None for r in records)
    crops = trainset.mongo_crops("train", 64)
    assert crops.images.shape == (6, 64, 64, 3) and sorted(crops.labels.tolist()) == [0, 0, 0, 1, 1, 1]
    stored = db.gridfs_bucket(db.TRAINING).open_download_stream(doc["file_id"]).read()
    assert stored == (labelled_folder / "with_mask" / "with_mask_0000.jpg").read_bytes()


def test_import_scenes_keeps_boxes_and_only_the_asked_split(tmp_path, asset, empty_trainset):
    src = asset("mask_scenes")
    for sub in ("images", "annotations"):
        (tmp_path / sub).mkdir()
    for stem in ("maksssksksss1", "maksssksksss2", "maksssksksss5"):  # train, train, val
        shutil.copy(next((src / "images").glob(stem + ".*")), tmp_path / "images")
        shutil.copy(src / "annotations" / f"{stem}.xml", tmp_path / "annotations")
    first = trainset.import_scenes(tmp_path, split="train")
    assert (first.added, first.skipped) == (2, 0)
    assert empty_trainset.count_documents({"split": "val"}) == 0  # val scenes stay out
    second = trainset.import_scenes(tmp_path, split="all")
    assert (second.added, second.skipped) == (1, 2)
    splits = {d["split"] for d in empty_trainset.find({"kind": "scene"})}
    assert splits == {"train", "val"}
    for split in splits:
        records = [r for _, r in trainset.mongo_records(split)]
        assert records and all(len(r.boxes) == len(r.labels) > 0 for r in records)
        assert all(np.all(r.boxes[:, 2:] > r.boxes[:, :2]) for r in records)
    assert {r["split"] for r in trainset.stats()} == splits


def test_training_reads_its_crops_from_mongo(labelled_folder, empty_trainset):
    from models.train import load_crops

    trainset.import_folder(labelled_folder)
    train, val = load_crops(64, from_mongo=True)
    assert train.images.shape == (6, 64, 64, 3) and set(train.kind) == {"crop"}
    assert len(val) > 100 and set(val.kind) == {"scene"}  # validation stays the files' val split
