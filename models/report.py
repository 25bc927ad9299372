"""Metrics, speed, report PNGs and the model card of the mask classifier."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from models.faces import LABELS
from models.metrics import COMPLIANT, SIZE_BINS, size_bin


def _accuracy(pred: np.ndarray, truth: np.ndarray) -> dict:
    if len(truth) == 0:
        return {"faces": 0, "accuracy": None, "accuracy_binary": None}
    return {
        "faces": int(len(truth)),
        "accuracy": round(float(np.mean(pred == truth)), 4),
        # Compliance is what the product reports: masked vs (unmasked or incorrect).
        "accuracy_binary": round(float(np.mean((pred == COMPLIANT) == (truth == COMPLIANT))), 4),
    }


def classification_metrics(probs: np.ndarray, labels: np.ndarray, short_side: np.ndarray) -> dict:
    """Accuracy (3-class and compliant/not) overall and by face size, recall per class, confusion, AUC."""
    from sklearn.metrics import confusion_matrix, roc_auc_score

    pred = probs.argmax(axis=1)
    bins = size_bin(short_side)
    out = _accuracy(pred, labels)
    out["by_size"] = {
        name: _accuracy(pred[bins == i], labels[bins == i]) for i, (name, _, _) in enumerate(SIZE_BINS)
    }
    out["recall_by_class"] = {
        name: round(float(np.mean(pred[labels == c] == c)), 4) if np.any(labels == c) else None
        for c, name in enumerate(LABELS)
    }
    out["confusion_truth_by_predicted"] = confusion_matrix(labels, pred, labels=range(len(LABELS))).tolist()
    out["auc_one_vs_rest"] = {
        name: round(float(roc_auc_score(labels == c, probs[:, c])), 4)
        if 0 < np.sum(labels == c) < len(labels)
        else None
        for c, name in enumerate(LABELS)
    }
    return out


def unmasked_footage_metrics(probs: np.ndarray, short_side: np.ndarray) -> dict:
    """How often faces known to be unmasked (pre-2020 CCTV) are called masked, overall and by size."""
    pred = probs.argmax(axis=1)
    bins = size_bin(short_side)

    def share(sel: np.ndarray) -> dict:
        n = int(np.sum(sel))
        return {"faces": n, "called_masked": round(float(np.mean(pred[sel] == COMPLIANT)), 4) if n else None}

    return {**share(np.ones(len(pred), bool)),
            "by_size": {name: share(bins == i) for i, (name, _, _) in enumerate(SIZE_BINS)}}


def faces_per_second(classifier, crops: np.ndarray, seconds: float = 3.0) -> float:
    """Throughput of classifier(crops) in faces/s, after one warm-up call, over >= `seconds`."""
    classifier(crops[:8])
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        classifier(crops)
        done += len(crops)
    return round(done / (time.perf_counter() - started), 1)


def speed(classifiers: dict, our_crops: np.ndarray, seed_crops: np.ndarray) -> dict:
    """{name: faces/s} for each classifier, batched; names starting 'seed' get the 224 px crops."""
    return {
        name: faces_per_second(clf, seed_crops if name.startswith("seed") else our_crops)
        for name, clf in classifiers.items()
    }


def interleaved_speed(classifiers: dict, rounds: int = 4, batch: int = 64) -> dict:
    """{key: faces/s} of (N, S, S, 3) batches of random crops, timed round-robin, best round each."""
    rng = np.random.default_rng(0)
    crops = {
        k: rng.integers(0, 256, (batch, c.input_size, c.input_size, 3), np.uint8)
        for k, c in classifiers.items()
    }
    best = dict.fromkeys(classifiers, 0.0)
    for _ in range(rounds):
        for k, clf in classifiers.items():
            best[k] = max(best[k], faces_per_second(clf, crops[k], seconds=2.0))
    return best


def per_face_speed(classifier, crops: np.ndarray) -> float:
    """faces/s when each face is a separate call (the seeds' per-face model.predict)."""
    classifier(crops[:1])
    started = time.perf_counter()
    for i in range(len(crops)):
        classifier(crops[i : i + 1])
    return round(len(crops) / (time.perf_counter() - started), 1)


def plots(folder: Path, probs: np.ndarray, labels: np.ndarray, history: dict) -> None:
    """confusion_matrix.png, roc.png (one-vs-rest, with AUC) and loss_accuracy.png into folder."""
    import matplotlib

    matplotlib.use("Agg")
    folder.mkdir(parents=True, exist_ok=True)
    _confusion_png(folder / "confusion_matrix.png", probs, labels)
    _roc_png(folder / "roc.png", probs, labels)
    _curves_png(folder / "loss_accuracy.png", history)


def _confusion_png(path: Path, probs: np.ndarray, labels: np.ndarray) -> None:
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, ax = plt.subplots(figsize=(5, 4.5))
    ConfusionMatrixDisplay.from_predictions(
        labels, probs.argmax(axis=1), labels=range(len(LABELS)), display_labels=LABELS, ax=ax,
        cmap="Blues", colorbar=False,
    )  # fmt: skip
    ax.set_title("Validation faces (mask_scenes val)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _roc_png(path: Path, probs: np.ndarray, labels: np.ndarray) -> None:
    import matplotlib.pyplot as plt
    from sklearn.metrics import auc, roc_curve

    fig, ax = plt.subplots(figsize=(5, 4.5))
    for c, name in enumerate(LABELS):
        if 0 < np.sum(labels == c) < len(labels):
            fpr, tpr, _ = roc_curve(labels == c, probs[:, c])
            ax.plot(fpr, tpr, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], "k:", linewidth=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, one vs rest")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _curves_png(path: Path, history: dict) -> None:
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history["loss"]) + 1)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        ax.plot(epochs, history[key], "o-", label=f"train {key} (augmented)")
        ax.plot(epochs, history[f"val_{key}"], "o-", label=f"val {key}")
        stages = np.asarray(history["stage"])
        if np.any(stages > 0):
            ax.axvline(np.argmax(stages > 0) + 0.5, color="grey", linestyle="--", linewidth=1)
        ax.set(xlabel="epoch (head, then fine-tuning after the dashed line)", title=key)
        ax.set_xticks(epochs)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _bin_title(lo: float, hi: float) -> str:
    if lo == 0:
        return f"< {hi:.0f} px"
    return f">= {lo:.0f} px" if hi == float("inf") else f"{lo:.0f}-{hi:.0f} px"


def _size_table(metrics: dict, names: dict) -> str:
    header = "| model | all | " + " | ".join(_bin_title(lo, hi) for _, lo, hi in SIZE_BINS) + " |"
    lines = [header, "|" + "---|" * (len(SIZE_BINS) + 2)]
    for key, title in names.items():
        m = metrics[key]
        cells = [f"{m['accuracy']:.3f} / {m['accuracy_binary']:.3f} (n={m['faces']})"]
        for name, _, _ in SIZE_BINS:
            b = m["by_size"][name]
            cells.append(f"{b['accuracy']:.3f} / {b['accuracy_binary']:.3f} (n={b['faces']})")
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def training_counts(train) -> dict:
    """{"<source> <kind>": [masked, unmasked, incorrect]} crops of a training CropSet."""
    origin = np.char.add(np.char.add(train.source.astype(str), " "), train.kind.astype(str))
    return {
        name: np.bincount(train.labels[origin == name], minlength=len(LABELS)).tolist()
        for name in sorted(set(origin.tolist()))
    }


def model_card(out: Path) -> Path:
    """Write out/MODEL_CARD.md from out's model.json, metrics.json and size_sweep.json (if any)."""
    meta = json.loads((out / "model.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    ours, t, counts = metrics["ours"], meta["training"], metrics["train_counts"]
    sweep_path = out / "size_sweep.json"
    sweep = json.loads(sweep_path.read_text()) if sweep_path.exists() else []
    speed = metrics["speed_faces_per_s"]
    cctv = metrics.get("cctv_pre2020_eval") or {"faces": 0, "called_masked": 0.0}
    text = CARD.format(
        meta=meta,
        t=t,
        counts="\n".join(f"| {src} | " + " | ".join(str(n) for n in c) + " |" for src, c in counts.items()),
        table=_size_table(
            metrics,
            {
                "ours": f"ours ({meta['input_size']} px)",
                "seed_same_crops": "seed (224 px, same crops)",
                "seed_tight_crops": "seed (224 px, tight box crops)",
            },
        ),
        recall=", ".join(f"{k} {v}" for k, v in ours["recall_by_class"].items()),
        auc=", ".join(f"{k} {v}" for k, v in ours["auc_one_vs_rest"].items()),
        confusion=json.dumps(ours["confusion_truth_by_predicted"]),
        sweep="\n".join(
            f"| {r['size']} | {r['accuracy']:.3f} | "
            + " | ".join(f"{r['accuracy_by_size'][name]:.3f}" for name, _, _ in SIZE_BINS)
            + f" | {r['litert_faces_per_s']:.0f} | {r['train_seconds']:.0f} |"
            for r in sweep
        )
        or "| (run `python -m models.train --sweep 96,128,160`) | | | | | | |",
        sp=speed,
        diff=metrics["backend_max_abs_diff"],
        minutes=metrics["train_seconds"] / 60,
        wall_minutes=metrics["wall_seconds"] / 60,
        mb={k: v["bytes"] / 1e6 for k, v in meta["files"].items()},
        quant="dynamic-range int8 weights" if t["quantize"] else "float32",
        loss=LOSS_WEIGHTED.format(power=t["class_weight_power"]) if t["class_weight_power"] else LOSS_PLAIN,
        labels=", ".join(LABELS),
        n_incorrect=sum(ours["confusion_truth_by_predicted"][2]),
        cctv=cctv,
        cctv_small=(cctv.get("by_size") or {}).get("lt24", {}).get("called_masked") or 0.0,
    )
    path = out / "MODEL_CARD.md"
    path.write_text(text)
    return path


LOSS_PLAIN = (
    "Loss: plain cross-entropy; the class imbalance is handled by sampling (the rare *incorrect*\n"
    "   faces get the most variants). In a trial at 128 px, class weights (n_max / n_class) ** 0.5\n"
    "   on top gave 0.939-0.949 val accuracy against 0.958 without, mostly by calling masked\n"
    "   faces incorrect."
)
LOSS_WEIGHTED = "Loss: cross-entropy with class weights (n_max / n_class) ** {power}."

CARD = """# Model card: {meta[name]} {meta[version]}

A 3-class face-mask classifier for CCTV face crops: **masked**, **unmasked**, **incorrect**
(mask worn below the nose or chin). Only *masked* counts as compliant: *incorrect* is **not
compliant**, like *unmasked*. The worker crops each detected face with a margin of
{meta[margin]} x the box's longer side on every side, squares it, resizes it to
{meta[input_size]} px (RGB) and feeds raw 0..255 values (the model scales them itself).

## Files

| file | what | MB |
|---|---|---|
| mask_classifier.keras | Keras 3 model (GPU path, Grad-CAM) | {mb[keras]:.1f} |
| mask_classifier.tflite | LiteRT export, {quant} (CPU path, XNNPACK) | {mb[tflite]:.1f} |
| model.json | name, version, input size, labels, margin, sha256 of each file, settings | |
| metrics.json | every number below, and per-epoch history | |
| report/ | confusion_matrix.png, roc.png, loss_accuracy.png | |

The worker refuses a model file whose sha256 differs from model.json.

## Model and training

MobileNetV2 (alpha 1.0) from the ImageNet weights, global average pooling, dropout
{t[dropout]}, dense softmax over 3 classes. Training (`python -m models.train`, seeded
{t[seed]}; {minutes:.1f} min of fitting, {wall_minutes:.1f} min for the whole command including
export, evaluation and this report, on a shared 2-core CPU machine, no GPU):

1. Every training crop becomes several variants: the first is clean (random flip), the others
   CCTV-like: small shifts/rotations/zoom, down-scaling to 10-32 px and back up (8-24 px faces),
   blur, sensor noise, JPEG quality 15-70, low light and gamma, grey (IR-like) frames, flips.
   mask_crops images get {t[copies_crops]} variants, train-scene faces {t[copies_scenes]}, and every
   *incorrect* face {t[copies_incorrect]} (oversampling the rare class).
2. The ImageNet network up to `{t[split_layer]}` is frozen; its features are computed once.
3. The head is trained {t[head_epochs]} epochs (Adam {t[head_lr]}), then the blocks above
   `{t[split_layer]}` are fine-tuned {t[fine_epochs]} epochs (Adam {t[fine_lr]}, batch norm frozen).
   {loss}

## Data

Training: `datasets/mask_crops` (web face crops, mostly large and frontal; about 600 masks pasted
on synthetically) plus every face of the **train** split of `datasets/mask_scenes` (real street
photos, PASCAL VOC boxes), cut with the worker's crop function and margin, plus unmasked CCTV
faces mined by our own detector from the 'mine' split of `datasets/cctv_pre2020` (`models/mine.py`:
footage from before 2020, so every face is unmasked; high-angle, small, compressed, badly lit).
mask_scenes is split by near-duplicate group (`models/splits.py`: dHash candidates confirmed by
thumbnail correlation; 22 groups of 2-4 near-identical photos go to one side whole), 20 %
validation; validation scenes are never trained on. Training crops per source, by class
(masked, unmasked, incorrect):

| source | masked | unmasked | incorrect |
|---|---|---|---|
{counts}

Validation: every ground-truth face of the **val** split of mask_scenes (boxes from the
annotations, not from a detector), cut the same way; and, for the CCTV domain, the faces our
detector finds in the 'eval' split of cctv_pre2020 (never mined): {cctv[faces]} faces, all unmasked, of
which {cctv[called_masked]:.1%} are called masked (under 24 px {cctv_small:.1%}).

## Results on mask_scenes validation faces

Accuracy, 3-class / compliant-vs-not, by the face's short side in pixels:

{table}

Ours: recall per class {recall}; one-vs-rest AUC {auc};
confusion (rows truth, columns predicted, order {labels}): {confusion}.
The seed is the seeds' 2-class model (224 px); it cannot answer *incorrect*, so every such face
counts as wrong in its 3-class accuracy and as "not compliant" only if it says unmasked.

Speed on this 2-core CPU, shared with other jobs (faces/s over a few seconds of batched calls
on the val crops; other jobs make these vary up to 2x between runs; the sweep below is
timed round-robin and is the fairer comparison):

| ours, LiteRT | ours, Keras (TF graph) | seed, Keras batched | seed, per-face `model.predict` |
|---|---|---|---|
| {sp[ours_litert]:.0f} | {sp[ours_keras]:.0f} | {sp[seed_keras_batched]:.0f} | {sp[seed_keras_per_face]:.1f}

LiteRT and Keras probabilities agree within {diff:.1e}.

## Input size: measured trade-off

Quick runs (fewer variants, one fine-tuning epoch) at each size; accuracy on the same
validation faces, LiteRT speed on this machine:

| input px | val accuracy | < 24 px | 24-48 px | >= 48 px | LiteRT faces/s (batches of 64) | train s |
|---|---|---|---|---|---|---|
{sweep}

{t[size_choice]}

## Limitations

- Validation has only {n_incorrect} *incorrect* faces: its recall is a rough number.
- Run-to-run spread is about a point: the same recipe trained from MongoDB (`--from-mongo`; rows
  in sha256 order, so other augmentation draws) scored 0.945 overall and 0.922 under 24 px at
  128 px. The 0.95 / 0.90 goals hold with a margin of that size, not more.
- mask_scenes are photos, not CCTV video: motion blur, interlacing, fisheye and IR cameras are
  only simulated by augmentation. Faces are mostly frontal; profiles and backs of heads are rare.
- Faces under ~10 px carry almost no signal; the product should treat low-confidence tiny faces
  as unknown rather than trust the argmax.
- Validation boxes are ground truth; with detector boxes (jitter, partial faces) accuracy is lower
  (see the detector's evaluation).
- mask_crops are web images with some synthetic masks; their demographics are not documented.
"""
