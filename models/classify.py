"""Mask classification of face crops: crop with a margin, then run our 3-class MobileNetV2.

Two backends run the same trained network: "litert" (the TFLite export on XNNPACK; CPU, no
TensorFlow import, low memory) and "keras" (the .keras file on TensorFlow; used when a GPU is there).
Interpreters are not thread-safe: one classifier per worker process.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from models.faces import LABELS
from shared.assets import sha256_file
from shared.config import ROOT, get_settings
from shared.errors import MissingAsset

# Fraction of the face box's longer side added on every side before cropping: the mask's edges,
# chin and ears carry the signal, and detector boxes jitter. Training crops use the same value.
MARGIN = 0.15

MODEL_DIR = ROOT / "models" / "mask_classifier"
RETRAIN_HINT = "re-run `python -m models.train` or restore models/mask_classifier/ from git"


def crop_faces(frame_bgr: np.ndarray, xyxy: np.ndarray, size: int, margin: float = MARGIN) -> np.ndarray:
    """(N, size, size, 3) uint8 RGB square crops of an (H, W, 3) BGR frame around (N, 4) pixel boxes.

    Each box is grown by `margin` x its longer side on every side and squared about its centre;
    the parts outside the frame are filled by replicating the edge pixels.
    """
    boxes = np.asarray(xyxy, np.float32).reshape(-1, 4)
    out = np.empty((len(boxes), size, size, 3), np.uint8)
    for i, box in enumerate(boxes):
        # BGR to RGB crop by crop: reversing the whole batch's channels afterwards cost more than the crops.
        cv2.cvtColor(_crop_one(frame_bgr, box, size, margin), cv2.COLOR_BGR2RGB, dst=out[i])
    return out


def _crop_one(frame: np.ndarray, box: np.ndarray, size: int, margin: float) -> np.ndarray:
    h, w = frame.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(1, round(max(x2 - x1, y2 - y1, 1.0) * (1 + 2 * margin)))
    left = round((x1 + x2) / 2 - side / 2)
    top = round((y1 + y2) / 2 - side / 2)
    # Clamp to at least one pixel inside the frame so a box off the edge still yields an image.
    cx1, cy1 = min(max(left, 0), w - 1), min(max(top, 0), h - 1)
    cx2, cy2 = max(min(left + side, w), cx1 + 1), max(min(top + side, h), cy1 + 1)
    patch = frame[cy1:cy2, cx1:cx2]
    pad_t, pad_l = max(cy1 - top, 0), max(cx1 - left, 0)
    pad_b, pad_r = max(side - pad_t - patch.shape[0], 0), max(side - pad_l - patch.shape[1], 0)
    if pad_t or pad_b or pad_l or pad_r:
        patch = cv2.copyMakeBorder(patch, pad_t, pad_b, pad_l, pad_r, cv2.BORDER_REPLICATE)
    shrink = patch.shape[0] > size
    return cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def read_model_json(model_dir: Path = MODEL_DIR) -> dict:
    """The model's metadata (model.json written by models.train); MissingAsset when absent."""
    meta_path = Path(model_dir) / "model.json"
    if not meta_path.exists():
        raise MissingAsset(f"no trained mask classifier at {meta_path}: {RETRAIN_HINT}")
    return json.loads(meta_path.read_text())


def verified_file(model_dir: Path, meta: dict, kind: str) -> Path:
    """Path of the model file of `kind` ('keras' | 'tflite') after checking its sha256 against model.json."""
    entry = meta["files"][kind]
    path = Path(model_dir) / entry["path"]
    if not path.exists():
        raise MissingAsset(f"mask classifier file {path} is missing: {RETRAIN_HINT}")
    got = sha256_file(path)
    if got != entry["sha256"]:
        raise MissingAsset(
            f"mask classifier file {path} has sha256 {got}, but model.json expects {entry['sha256']}; "
            f"refusing a model that differs from the one recorded: {RETRAIN_HINT}"
        )
    return path


def _chunks(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


class MaskClassifier:
    """Our 3-class classifier (LABELS order); call with (N, S, S, 3) uint8 RGB crops, get (N, 3) probs.

    precision 'int8' runs the quantised export (model.json's tflite_int8) on LiteRT, 'float' the float
    one, 'auto' int8 when model.json records it. Batches of at least crowd_batch faces run on
    crowd_threads XNNPACK threads, smaller ones on num_threads (see loaded_models for why).
    """

    def __init__(
        self,
        model_dir: Path = MODEL_DIR,
        backend: str = "litert",
        num_threads: int | None = None,
        batch_size: int = 64,
        precision: str = "auto",
        crowd_threads: int | None = None,
        crowd_batch: int = 32,
        tflite_path: Path | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        meta = read_model_json(self.model_dir)
        if tuple(meta["labels"]) != LABELS:
            raise MissingAsset(f"{self.model_dir}/model.json labels {meta['labels']} != {LABELS}")
        if abs(float(meta["margin"]) - MARGIN) > 1e-9:
            # crop_faces' default is what the worker uses: a model trained on other crops misreads.
            raise MissingAsset(
                f"{self.model_dir}/model.json was trained with margin {meta['margin']}, the worker "
                f"crops with MARGIN={MARGIN}: {RETRAIN_HINT}"
            )
        self.meta = meta
        self.name = f"{meta['name']}@{meta['version']}"
        self.input_size = int(meta["input_size"])
        self.backend = backend
        self.batch_size = batch_size
        self.num_threads = num_threads or os.cpu_count() or 1
        self.crowd_threads = crowd_threads or self.num_threads
        self.crowd_batch = crowd_batch
        if precision == "auto":
            precision = "int8" if backend == "litert" and "tflite_int8" in meta["files"] else "float"
        if precision not in ("float", "int8") or (precision == "int8" and backend != "litert"):
            raise ValueError(f"precision={precision!r} on {backend!r}: int8 runs on 'litert' only")
        self.precision = precision
        kind = {"litert": "tflite_int8" if precision == "int8" else "tflite", "keras": "keras"}.get(backend)
        if kind is None:
            raise ValueError(f"backend={backend!r}: use 'litert' or 'keras'")
        if backend == "litert":
            path = Path(tflite_path) if tflite_path else verified_file(self.model_dir, meta, kind)
            # Both made now: XNNPACK starts its threads here, in the loading thread (see loaded_models).
            self._runners = {n: self._litert_runner(path, n) for n in {self.num_threads, self.crowd_threads}}
            self._run = self._litert_run
        else:
            path = verified_file(self.model_dir, meta, kind)
            self._run = _keras_runner(path, self.input_size)
        self.sha256 = sha256_file(path) if tflite_path else meta["files"][kind]["sha256"]

    def _litert_run(self, x: np.ndarray) -> np.ndarray:
        # A crowd's big batches use every core (the classifier is then most of the frame's work);
        # small ones stay on one thread, where XNNPACK's extra threads mostly spin.
        threads = self.crowd_threads if len(x) >= self.crowd_batch else self.num_threads
        return self._runners[threads](x)

    def _litert_runner(self, path: Path, threads: int):
        from ai_edge_litert.interpreter import Interpreter

        # The default op resolver applies the XNNPACK delegate (fast float and int8 kernels on CPU).
        interp = Interpreter(model_path=str(path), num_threads=threads)
        interp.allocate_tensors()  # applies the delegate, which creates its thread pool
        details = interp.get_input_details()[0]
        inp, dtype = details["index"], details["dtype"]
        out = interp.get_output_details()[0]["index"]
        shape = [0]

        def run(x: np.ndarray) -> np.ndarray:
            # Re-allocating for a new batch size costs well under a millisecond.
            if shape[0] != len(x):
                interp.resize_tensor_input(inp, [len(x), *x.shape[1:]])
                interp.allocate_tensors()
                shape[0] = len(x)
            # The int8 export takes uint8 pixels as they are; the float one float32 0..255.
            interp.set_tensor(inp, x if x.dtype == dtype else x.astype(dtype))
            interp.invoke()
            return interp.get_tensor(out).copy()

        return run

    def __call__(self, crops_rgb: np.ndarray) -> np.ndarray:
        """(N, S, S, 3) uint8 RGB crops (S = input_size) -> (N, 3) float32 probabilities, LABELS order."""
        crops = np.asarray(crops_rgb)
        if crops.ndim != 4 or crops.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(
                f"expected (N, {self.input_size}, {self.input_size}, 3) RGB crops, got {crops.shape}"
            )
        probs = np.empty((len(crops), len(LABELS)), np.float32)
        for part in _chunks(len(crops), self.batch_size):
            # Pixel scaling to [-1, 1] is inside the network; it takes raw 0..255 values.
            x = crops[part]
            probs[part] = self._run(x if self.backend == "litert" else x.astype(np.float32))
        return probs


def _keras_runner(path: Path, size: int):
    import keras

    return _graph_runner(keras.saving.load_model(path, compile=False), size)


def _graph_runner(model, size: int):
    import tensorflow as tf

    # One traced graph for every batch size: eager Keras calls are several times slower.
    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)], autograph=False)
    def run(x):
        return model(x, training=False)

    return lambda x: run(x).numpy()


def gpu_available() -> bool:
    """Whether TensorFlow sees a GPU (imports TensorFlow: call only when a GPU is plausible)."""
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _pick_backend(backend: str) -> str:
    if backend != "auto":
        return backend
    device = get_settings().worker_device
    if device == "cpu":
        return "litert"
    if device == "gpu":
        return "keras"
    # 'auto': a TensorFlow import costs ~0.5 GB and seconds; only pay it where an NVIDIA driver is.
    if not _nvidia_driver_present():
        return "litert"
    return "keras" if gpu_available() else "litert"


def _nvidia_driver_present() -> bool:
    return Path("/proc/driver/nvidia").exists() or Path("/dev/nvidiactl").exists()


def load_classifier(
    backend: str = "auto", model_dir: Path = MODEL_DIR, num_threads: int | None = None, **options
) -> MaskClassifier:
    """Our committed classifier on 'litert' (CPU) or 'keras' (GPU); 'auto' follows WORKER_DEVICE.

    options go to MaskClassifier (crowd_threads, ...); precision follows CLASSIFIER_PRECISION unless
    given, and applies to 'litert' only.
    """
    backend = _pick_backend(backend)
    options.setdefault("precision", get_settings().classifier_precision)
    if backend != "litert":
        options["precision"] = "float"  # TensorFlow runs the Keras file: float on a GPU
    return MaskClassifier(model_dir=model_dir, backend=backend, num_threads=num_threads, **options)
