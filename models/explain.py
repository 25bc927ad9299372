"""Why the mask classifier said what it said: Grad-CAM, occlusion sensitivity, heat-map overlays.

Importable by the worker: TensorFlow is imported only inside grad_cam / load_keras_model.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from models.classify import MODEL_DIR, read_model_json, verified_file

# Grad-CAM reads the last convolutional activation of MobileNetV2 (before pooling).
LAST_CONV = "out_relu"


def load_keras_model(model_dir: Path = MODEL_DIR):
    """Our Keras model (sha256 verified against model.json), for grad_cam."""
    import keras

    path = verified_file(Path(model_dir), read_model_json(model_dir), "keras")
    return keras.saving.load_model(path, compile=False)


def _fit(crop_rgb: np.ndarray, size: int) -> np.ndarray:
    if crop_rgb.shape[:2] == (size, size):
        return crop_rgb
    return cv2.resize(crop_rgb, (size, size), interpolation=cv2.INTER_LINEAR)


def _normalise(heat: np.ndarray) -> np.ndarray:
    heat = np.maximum(np.nan_to_num(heat.astype(np.float32)), 0.0)
    top = float(heat.max())
    return heat / top if top > 0 else heat


def grad_cam(
    model, crop_rgb: np.ndarray, class_index: int | None = None, layer: str = LAST_CONV
) -> np.ndarray:
    """(H, W) float32 heat map in [0, 1] over an (H, W, 3) uint8 RGB crop; class: predicted if None.

    Gradients are taken of the class logit (before the softmax), which does not saturate.
    """
    import keras
    import tensorflow as tf

    size = model.input_shape[1]
    x = _fit(crop_rgb, size).astype(np.float32)[None]
    dense = model.layers[-1]
    grad_model = keras.Model(model.input, [model.get_layer(layer).output, dense.input])
    with tf.GradientTape() as tape:
        conv, features = grad_model(x, training=False)
        logits = tf.matmul(features, dense.kernel) + dense.bias
        c = int(tf.argmax(logits[0])) if class_index is None else class_index
        score = logits[:, c]
    grads = tape.gradient(score, conv)[0]
    weights = tf.reduce_mean(grads, axis=(0, 1))
    cam = tf.reduce_sum(conv[0] * weights, axis=-1).numpy()
    h, w = crop_rgb.shape[:2]
    return _normalise(cv2.resize(cam, (w, h), interpolation=cv2.INTER_LINEAR))


def occlusion_sensitivity(
    classifier,
    crop_rgb: np.ndarray,
    patch: int = 24,
    stride: int = 8,
    class_index: int | None = None,
) -> np.ndarray:
    """(H, W) float32 heat map in [0, 1]: how much the class's log-odds drop when a grey
    patch x patch square (pixels of the classifier's input) covers each place.

    `classifier` maps (N, S, S, 3) uint8 RGB to (N, 3) probabilities; all occluded copies go in
    one batched call. Log-odds, not probabilities: a confident 0.99999 barely moves in probability
    when evidence is hidden, but its log-odds do.
    """
    size = classifier.input_size
    crop = _fit(crop_rgb, size)
    base = classifier(crop[None])
    c = int(np.argmax(base[0])) if class_index is None else class_index
    starts = list(range(0, max(size - patch, 0) + 1, stride))
    if starts[-1] != size - patch:
        starts.append(max(size - patch, 0))
    places = [(y, x) for y in starts for x in starts]
    batch = np.repeat(crop[None], len(places), axis=0)
    for i, (y, x) in enumerate(places):
        batch[i, y : y + patch, x : x + patch] = 128
    drops = _log_odds(base, c)[0] - _log_odds(classifier(batch), c)
    heat = np.zeros((size, size), np.float32)
    hits = np.zeros((size, size), np.float32)
    for (y, x), drop in zip(places, drops, strict=True):
        heat[y : y + patch, x : x + patch] += drop
        hits[y : y + patch, x : x + patch] += 1
    heat = _normalise(heat / np.maximum(hits, 1))
    h, w = crop_rgb.shape[:2]
    return heat if (h, w) == (size, size) else cv2.resize(heat, (w, h))


def _log_odds(probs: np.ndarray, c: int) -> np.ndarray:
    # 1 - p loses all precision near p = 1 in float32; the sum of the other classes keeps it.
    rest = np.delete(probs, c, axis=1).sum(axis=1)
    return np.log(probs[:, c].astype(np.float64) + 1e-12) - np.log(rest.astype(np.float64) + 1e-12)


def overlay(crop_rgb: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """(H, W, 3) uint8 RGB: the crop with a jet-coloured heat map ((h, w) in [0, 1]) blended on top."""
    h, w = crop_rgb.shape[:2]
    heat = cv2.resize(np.clip(heatmap, 0, 1).astype(np.float32), (w, h))
    colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    blended = (1 - alpha) * crop_rgb.astype(np.float32) + alpha * colour.astype(np.float32)
    return np.clip(blended, 0, 255).astype(np.uint8)
