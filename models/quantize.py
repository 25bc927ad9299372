"""Post-training int8 quantisation of the committed classifier, checked against the float model.

    python -m models.quantize [--model-dir models/mask_classifier] [--samples 1000] [--write]

The representative dataset (which sets each activation's int8 range) is a seeded sample of the
training faces, half of them through the training augmentation (CCTV-like: small, blurred, dark), so
the ranges cover what the worker feeds. Prints the float and int8 accuracy on the mask_scenes
validation faces (never used for the ranges); --write keeps the file (mask_classifier_int8.tflite)
and records it in model.json only when int8 is within MAX_ACCURACY_DROP of float.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from models import data, export, report, train
from models.classify import MODEL_DIR, MaskClassifier, read_model_json
from shared.assets import sha256_file

INT8_FILE = "mask_classifier_int8.tflite"
MAX_ACCURACY_DROP = 0.005  # 3-class accuracy on the validation faces, float minus int8
SEED = 20240611


def representative(train_crops: data.CropSet, samples: int, seed: int = SEED) -> np.ndarray:
    """(samples, S, S, 3) uint8 RGB: training faces, every second one augmented as in training."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(train_crops), size=min(samples, len(train_crops)), replace=False)
    out = train_crops.images[rows].copy()
    for j in range(1, len(out), 2):
        out[j] = data.augment(out[j], rng)
    return out


def quantize(model_dir: Path, out: Path, rep: np.ndarray) -> Path:
    """Write the int8 export of model_dir's Keras model to out (uint8 input, float32 output)."""
    import keras

    meta = read_model_json(model_dir)
    model = keras.saving.load_model(Path(model_dir) / meta["files"]["keras"]["path"], compile=False)
    return export.to_tflite(model, out, representative=rep)


def compare(model_dir: Path, int8_path: Path, val: data.CropSet) -> dict:
    """Float and int8 metrics on the validation faces, and how often their labels agree."""
    float_probs = MaskClassifier(model_dir, backend="litert", precision="float")(val.images)
    int8 = MaskClassifier(model_dir, backend="litert", precision="int8", tflite_path=int8_path)
    int8_probs = int8(val.images)
    f = report.classification_metrics(float_probs, val.labels, val.short_side)
    q = report.classification_metrics(int8_probs, val.labels, val.short_side)
    return {
        "faces": len(val),
        "float": _short(f),
        "int8": _short(q),
        "accuracy_drop": round(f["accuracy"] - q["accuracy"], 4),
        "labels_agree": round(float(np.mean(float_probs.argmax(1) == int8_probs.argmax(1))), 4),
        "max_abs_prob_diff": round(float(np.abs(float_probs - int8_probs).max()), 4),
    }


def _short(m: dict) -> dict:
    return {"accuracy": m["accuracy"], "accuracy_binary": m["accuracy_binary"],
            "by_size": {k: v["accuracy"] for k, v in m["by_size"].items()},
            "recall_by_class": m["recall_by_class"]}


def record(model_dir: Path, path: Path, result: dict, samples: int) -> None:
    """Add the int8 file (sha256, bytes) and its measured accuracy to model.json."""
    meta_path = Path(model_dir) / "model.json"
    meta = json.loads(meta_path.read_text())
    meta["files"]["tflite_int8"] = {"path": path.name, "sha256": sha256_file(path),
                                    "bytes": path.stat().st_size}
    meta["quantization"] = {
        "file": path.name, "method": "post-training full-integer (int8 weights per channel, int8 "
        "activations), uint8 input, float32 output; `python -m models.quantize`",
        "representative": f"{samples} training faces (seed {SEED}), every second one augmented",
        "validation": result,
    }
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Entry point: prints float vs int8 on the validation faces as JSON."""
    ap = argparse.ArgumentParser(prog="python -m models.quantize", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model-dir", type=Path, default=MODEL_DIR)
    ap.add_argument("--samples", type=int, default=1000, help="representative faces")
    ap.add_argument("--out", type=Path, help="where to write the int8 file (default: beside the model)")
    ap.add_argument("--write", action="store_true", help="record the file in model.json if it passes")
    args = ap.parse_args(argv)
    meta = read_model_json(args.model_dir)
    train_crops, val = train.load_crops(int(meta["input_size"]), from_mongo=False)
    out = args.out or args.model_dir / INT8_FILE
    quantize(args.model_dir, out, representative(train_crops, args.samples))
    result = compare(args.model_dir, out, val)
    result["passes"] = result["accuracy_drop"] <= MAX_ACCURACY_DROP
    if args.write and result["passes"]:
        record(args.model_dir, out, result, args.samples)
    print(json.dumps(result, indent=1))
    return 0 if result["passes"] else 1


if __name__ == "__main__":
    sys.exit(main())
