"""Export a Keras model to LiteRT/TFLite (via a TF SavedModel, the Keras 3 route) and run such files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np


def to_tflite(model, path: Path, quantize: bool = False, representative: np.ndarray | None = None) -> Path:
    """Write `model` as a .tflite file: float32; dynamic-range int8 weights when quantize; full int8
    (weights and activations, uint8 input, float32 output) calibrated on `representative` inputs."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="export-") as tmp:
        model.export(tmp, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if quantize or representative is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if representative is not None:
            rows = np.asarray(representative, np.float32)
            converter.representative_dataset = lambda: ([rows[i:i + 1]] for i in range(len(rows)))
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            # Pixels are 0..255 integers: a uint8 input with scale 1 is exact and needs no float copy.
            converter.inference_input_type = tf.uint8
        data = converter.convert()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def litert_predict(path: Path, x: np.ndarray, batch_size: int = 64, out_dtype=np.float32) -> np.ndarray:
    """Run a one-input, one-output .tflite file over (N, ...) rows (as float32); (N, ...) out_dtype."""
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=os.cpu_count() or 1)
    inp = interp.get_input_details()[0]["index"]
    out_index = interp.get_output_details()[0]["index"]
    outputs = []
    for start in range(0, len(x), batch_size):
        part = np.asarray(x[start : start + batch_size], np.float32)
        interp.resize_tensor_input(inp, list(part.shape))
        interp.allocate_tensors()
        interp.set_tensor(inp, part)
        interp.invoke()
        outputs.append(interp.get_tensor(out_index).astype(out_dtype))
    return np.concatenate(outputs)
