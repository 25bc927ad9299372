"""Train the 3-class mask classifier (masked / unmasked / incorrect) on CPU in minutes.

python -m models.train [--out models/mask_classifier] [--from-mongo] [--size 128] [--sweep 96,128,160]

How it stays fast on 2 cores: every training crop is augmented into a few CCTV-like variants once,
the frozen lower MobileNetV2 (up to SPLIT_LAYER) runs over them once through LiteRT/XNNPACK, and
only the top blocks and the head are trained, on those cached features: the head first on pooled
features, then the top blocks are fine-tuned (batch norm kept in inference mode).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models import data, export, mine, report
from models.baselines import SeedClassifier
from models.classify import MARGIN, MODEL_DIR, MaskClassifier
from models.faces import LABELS
from shared.assets import asset_path, sha256_file

# Blocks above this layer are fine-tuned; below it the ImageNet features stay frozen.
SPLIT_LAYER = "block_12_add"
NAME, VERSION = "maskwatch-mask-classifier", "2.0"
# Why 128 px (numbers measured on this 2-core machine; the quick sweep is in size_sweep.json).
SIZE_CHOICE = (
    "Quick runs put 96, 128 and 160 px within noise of each other (0.937-0.941 val accuracy, a face "
    "is 0.002). LiteRT at 96 px measured 2.1-2.2x as fast as at 128 px; 160 px 0.64-0.91x of 128 px "
    "(two interleaved timings on this shared CPU). With the full recipe, 96 px reached 0.949 overall "
    "(< 24 px 0.934, 24-48 px 0.961, >= 48 px 0.961), just under the 0.95 goal, and 128 px the "
    "numbers above: 128 px is the smallest input that meets the goals; 160 px is slower for no "
    "measured gain."
)


@dataclass(frozen=True)
class TrainConfig:
    """Every training setting; written into model.json."""

    size: int = 128  # see SIZE_CHOICE
    seed: int = 20240611
    copies_crops: int = 2  # variants of each web face crop (the first is clean)
    copies_scenes: int = 6  # variants of each train-scene face: the CCTV-like domain
    copies_incorrect: int = 16  # the rare class is oversampled with more variants
    copies_cctv: int = 3  # variants of each unmasked face mined from pre-2020 CCTV (models.mine)
    # Loss weight (n_max / n_class) ** power. 0: measured best; 0.5 pushed masked faces to "incorrect".
    class_weight_power: float = 0.0
    batch_size: int = 64
    dropout: float = 0.2
    head_epochs: int = 6
    head_lr: float = 1e-3
    fine_epochs: int = 3
    fine_lr: float = 3e-4
    quantize: bool = False  # dynamic-range int8 weights in the .tflite


@dataclass
class Datasets:
    """Training rows (augmented variants) and validation crops, with their bottom features."""

    train: data.CropSet
    val: data.CropSet
    train_index: np.ndarray  # (M,) row of `train` each variant came from
    train_features: np.ndarray  # (M, h, w, c) float16 output of SPLIT_LAYER
    val_features: np.ndarray


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TF ops deterministic."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def val_crops(size: int) -> data.CropSet:
    """Every face of the mask_scenes validation split (never trained on), cut as the worker cuts."""
    scenes = asset_path("mask_scenes")
    key = {"v": 3, "size": size, "margin": MARGIN, "what": "scenes-val"}
    return data.cached(key, lambda: data.crops_of(data.scene_records(scenes, "val"), size))


def load_crops(size: int, from_mongo: bool) -> tuple[data.CropSet, data.CropSet]:
    """(train, val) crops: train from the asset folders or Mongo, val always from mask_scenes val."""
    scenes = asset_path("mask_scenes")
    # v3: mask_scenes split by near-duplicate group (models.splits)
    key = {"v": 3, "size": size, "margin": MARGIN}
    val = val_crops(size)
    if from_mongo:
        from models import trainset

        # Mongo holds what was imported into it (python -m models.trainset); the mined CCTV faces are not.
        return trainset.mongo_crops("train", size), val
    crops = data.cached(
        {**key, "what": "mask_crops"},
        lambda: data.crops_of(data.folder_records(asset_path("mask_crops")), size),
    )
    train = data.cached(
        {**key, "what": "scenes-train"},
        lambda: data.crops_of(data.scene_records(scenes, "train"), size),
    )
    return data.CropSet.concat([crops, train, mine.mined(size, "mine")]), val


def copies_per_row(crops: data.CropSet, cfg: TrainConfig) -> np.ndarray:
    """(N,) number of variants per training row, by source and class."""
    copies = np.where(crops.kind == "crop", cfg.copies_crops, cfg.copies_scenes)
    copies = np.where(crops.kind == "cctv", cfg.copies_cctv, copies)
    return np.where(crops.labels == 2, cfg.copies_incorrect, copies)


def class_weights(labels: np.ndarray, power: float) -> dict[int, float]:
    """{class: weight}, (n_max / n_class) ** power over the training rows."""
    counts = np.bincount(labels, minlength=len(LABELS)).astype(np.float64)
    return {c: float((counts.max() / max(counts[c], 1)) ** power) for c in range(len(LABELS))}


def build_model(size: int, dropout: float):
    """MobileNetV2 (ImageNet) -> average pool -> dropout -> 3-way softmax; takes 0..255 RGB float input."""
    import keras

    inputs = keras.Input((size, size, 3), name="rgb")
    # Scaling to [-1, 1] lives in the model so every backend takes raw pixels.
    scaled = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="to_unit_range")(inputs)
    base = keras.applications.MobileNetV2(
        input_tensor=scaled, include_top=False, weights=str(asset_path("mobilenet_v2_imagenet"))
    )
    x = keras.layers.GlobalAveragePooling2D(name="pool")(base.output)
    x = keras.layers.Dropout(dropout, name="dropout")(x)
    outputs = keras.layers.Dense(len(LABELS), activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="mask_classifier")


def split_model(model):
    """(bottom, top, pooled): input -> SPLIT_LAYER, SPLIT_LAYER -> probs, SPLIT_LAYER -> pool."""
    import keras

    mid = model.get_layer(SPLIT_LAYER).output
    bottom = keras.Model(model.input, mid, name="bottom")
    top = keras.Model(mid, model.output, name="top")
    pooled = keras.Model(mid, model.get_layer("pool").output, name="pooled")
    return bottom, top, pooled


def bottom_features(bottom, images: list[np.ndarray], workdir: Path) -> list[np.ndarray]:
    """SPLIT_LAYER outputs (float16) of each (M, S, S, 3) uint8 array, computed with LiteRT/XNNPACK."""
    path = export.to_tflite(bottom, workdir / "bottom.tflite")
    return [export.litert_predict(path, x, out_dtype=np.float16) for x in images]


def prepare(cfg: TrainConfig, model, from_mongo: bool, workdir: Path) -> Datasets:
    """Crops, their augmented variants and the frozen bottom's features for train and val."""
    train, val = load_crops(cfg.size, from_mongo)
    images, index = data.augmented_copies(train, copies_per_row(train, cfg), cfg.seed)
    bottom, _, _ = split_model(model)
    feats, val_feats = bottom_features(bottom, [images, val.images], workdir)
    return Datasets(train, val, index, feats, val_feats)


def train_head(cfg: TrainConfig, model, ds: Datasets, weights: dict) -> dict:
    """Fit the dense head on pooled features of the frozen network; returns the per-epoch history."""
    import keras

    _, _, pooled = split_model(model)
    x = pooled.predict(ds.train_features, batch_size=256, verbose=0)
    xv = pooled.predict(ds.val_features, batch_size=256, verbose=0)
    head_in = keras.Input(x.shape[1:])
    head = keras.Model(head_in, model.get_layer("probs")(model.get_layer("dropout")(head_in)))
    head.compile(keras.optimizers.Adam(cfg.head_lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
    y = ds.train.labels[ds.train_index]
    fit = head.fit(
        x, y, batch_size=cfg.batch_size, epochs=cfg.head_epochs, class_weight=weights,
        validation_data=(xv, ds.val.labels), shuffle=True, verbose=2,
    )  # fmt: skip
    return fit.history


def fine_tune(cfg: TrainConfig, model, ds: Datasets, weights: dict) -> dict:
    """Fine-tune the blocks above SPLIT_LAYER (batch norm frozen) on cached features; history."""
    import keras

    _, top, _ = split_model(model)
    for layer in top.layers:
        # Frozen batch norm runs in inference mode: small, augmented batches would wreck its stats.
        layer.trainable = not isinstance(layer, keras.layers.BatchNormalization)
    y = ds.train.labels[ds.train_index]
    steps = cfg.fine_epochs * int(np.ceil(len(y) / cfg.batch_size))
    # Cosine decay to zero: the last epochs settle instead of jumping around the minimum.
    lr = keras.optimizers.schedules.CosineDecay(cfg.fine_lr, decay_steps=steps)
    top.compile(keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", metrics=["accuracy"])
    fit = top.fit(
        ds.train_features, y, batch_size=cfg.batch_size, epochs=cfg.fine_epochs,
        class_weight=weights, validation_data=(ds.val_features, ds.val.labels), shuffle=True,
        verbose=2,
    )  # fmt: skip
    return fit.history


def merge_histories(*histories: dict) -> dict:
    """Concatenate per-epoch histories ('loss', 'accuracy', 'val_loss', 'val_accuracy')."""
    keys = ("loss", "accuracy", "val_loss", "val_accuracy")
    return {k: [float(v) for h in histories for v in h[k]] for k in keys} | {
        "stage": [i for i, h in enumerate(histories) for _ in h["loss"]]
    }


def fit(cfg: TrainConfig, from_mongo: bool, workdir: Path):
    """Build, train and return (model, datasets, history, seconds)."""
    started = time.perf_counter()
    seed_everything(cfg.seed)
    model = build_model(cfg.size, cfg.dropout)
    ds = prepare(cfg, model, from_mongo, workdir)
    weights = class_weights(ds.train.labels[ds.train_index], cfg.class_weight_power)
    print(f"training rows {len(ds.train_index)} from {len(ds.train)} crops; class weights {weights}")
    history = merge_histories(train_head(cfg, model, ds, weights), fine_tune(cfg, model, ds, weights))
    return model, ds, history, time.perf_counter() - started


def save(model, cfg: TrainConfig, out: Path) -> dict:
    """Write mask_classifier.keras and .tflite into out; returns model.json's 'files' entry."""
    out.mkdir(parents=True, exist_ok=True)
    keras_path = out / "mask_classifier.keras"
    model.save(keras_path)
    tflite_path = export.to_tflite(model, out / "mask_classifier.tflite", quantize=cfg.quantize)
    return {
        kind: {"path": p.name, "sha256": sha256_file(p), "bytes": p.stat().st_size}
        for kind, p in (("keras", keras_path), ("tflite", tflite_path))
    }


def model_json(cfg: TrainConfig, files: dict, seconds: float, from_mongo: bool) -> dict:
    """The metadata the worker verifies and reads at load (input size, labels, margin, sha256)."""
    return {
        "name": NAME,
        "version": VERSION,
        "architecture": "MobileNetV2 alpha 1.0 (ImageNet) + average pool + dense softmax",
        "input_size": cfg.size,
        "input": "RGB, float32 values 0..255 (scaling to [-1, 1] is inside the model)",
        "labels": list(LABELS),
        "compliant_labels": [LABELS[0]],
        "margin": MARGIN,
        "files": files,
        "training": {
            **dataclasses.asdict(cfg),
            "split_layer": SPLIT_LAYER,
            "size_choice": SIZE_CHOICE,
            "data": "mongo training_images (split=train)" if from_mongo else "asset folders",
            "fit_seconds": round(seconds, 1),
        },
    }


def evaluate(out: Path, ds: Datasets, history: dict) -> dict:
    """Score the saved model (both backends) and the seed on the val crops; write report PNGs."""
    ours = MaskClassifier(out, backend="litert", precision="float")
    probs = ours(ds.val.images)
    keras_ours = MaskClassifier(out, backend="keras")
    metrics = {"ours": report.classification_metrics(probs, ds.val.labels, ds.val.short_side)}
    seed, seed_tight = seed_crops(ds.val)
    seed_model = SeedClassifier()
    metrics["seed_same_crops"] = report.classification_metrics(
        seed_model(seed), ds.val.labels, ds.val.short_side
    )
    metrics["seed_tight_crops"] = report.classification_metrics(
        seed_model(seed_tight), ds.val.labels, ds.val.short_side
    )
    metrics["speed_faces_per_s"] = report.speed(
        {"ours_litert": ours, "ours_keras": keras_ours, "seed_keras_batched": seed_model},
        ds.val.images,
        seed,
    )
    seed_model.per_face = True  # the seeds' way, one model.predict per face
    metrics["speed_faces_per_s"]["seed_keras_per_face"] = report.per_face_speed(seed_model, seed[:40])
    cctv = mine.mined(ours.input_size, "eval")
    metrics["cctv_pre2020_eval"] = report.unmasked_footage_metrics(ours(cctv.images), cctv.short_side)
    metrics["backend_max_abs_diff"] = float(np.abs(keras_ours(ds.val.images) - probs).max())
    report.plots(out / "report", probs, ds.val.labels, history)
    return metrics


def seed_crops(val: data.CropSet) -> tuple[np.ndarray, np.ndarray]:
    """Val faces at 224 px for the seed: with our MARGIN, and tight on the box as the seeds cut them."""
    scenes = asset_path("mask_scenes")
    base = {"v": 3, "size": 224, "what": "scenes-val"}
    same = data.cached(
        {**base, "margin": MARGIN}, lambda: data.crops_of(data.scene_records(scenes, "val"), 224)
    )
    tight = data.cached(
        {**base, "margin": 0.0},
        lambda: data.crops_of(data.scene_records(scenes, "val"), 224, margin=0.0),
    )
    return same.images, tight.images


def sweep(sizes: list[int], cfg: TrainConfig, out: Path) -> list[dict]:
    """Quick runs at several input sizes: val accuracy and LiteRT faces/s of each; writes size_sweep.json.

    Speeds are timed after all runs, round-robin, best of several rounds: the CPU is shared, and
    timing each size right after its own training would compare different loads.
    """
    rows, classifiers = [], {}
    with tempfile.TemporaryDirectory(prefix="sweep-") as tmp:
        for size in sizes:
            quick = dataclasses.replace(cfg, size=size, copies_scenes=3, copies_incorrect=8, fine_epochs=1)
            model, ds, _, seconds = fit(quick, False, Path(tmp) / "work")
            folder = Path(tmp) / str(size)
            files = save(model, quick, folder)
            (folder / "model.json").write_text(json.dumps(model_json(quick, files, seconds, False)))
            clf = classifiers[size] = MaskClassifier(folder, backend="litert")
            m = report.classification_metrics(clf(ds.val.images), ds.val.labels, ds.val.short_side)
            rows.append(
                {
                    "size": size,
                    "accuracy": m["accuracy"],
                    "accuracy_by_size": {k: v["accuracy"] for k, v in m["by_size"].items()},
                    "train_seconds": round(seconds, 1),
                    "settings": "quick: copies_scenes=3, copies_incorrect=8, fine_epochs=1",
                }
            )
            print(json.dumps(rows[-1]))
        speeds = report.interleaved_speed(classifiers, rounds=4)
    for row in rows:
        row["litert_faces_per_s"] = speeds[row["size"]]
    out.mkdir(parents=True, exist_ok=True)
    (out / "size_sweep.json").write_text(json.dumps(rows, indent=2) + "\n")
    if (out / "metrics.json").exists():
        report.model_card(out)  # the card quotes the sweep
    return rows


def main(argv: list[str] | None = None) -> None:
    """Command line: train, export, evaluate and write the model folder (or run a size sweep)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=MODEL_DIR)
    parser.add_argument("--from-mongo", action="store_true", help="train from training_images")
    parser.add_argument("--size", type=int, default=TrainConfig.size, help="input side, 96..224")
    parser.add_argument("--sweep", help="comma-separated sizes to compare quickly, e.g. 96,128,160")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    cfg = TrainConfig(size=args.size)
    if args.sweep:
        sweep([int(s) for s in args.sweep.split(",")], cfg, args.out)
        return
    with tempfile.TemporaryDirectory(prefix="train-") as tmp:
        model, ds, history, seconds = fit(cfg, args.from_mongo, Path(tmp))
    files = save(model, cfg, args.out)
    meta = model_json(cfg, files, seconds, args.from_mongo)
    (args.out / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
    metrics = evaluate(args.out, ds, history) | {
        "train_counts": report.training_counts(ds.train),
        "history": history,
        "train_seconds": round(seconds, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    (args.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    report.model_card(args.out)
    summary = {k: metrics[k] for k in ("speed_faces_per_s", "wall_seconds")}
    print(json.dumps(summary | {"accuracy": metrics["ours"]["by_size"]}))


if __name__ == "__main__":
    main()
