"""The seeds' models, kept as baselines: OpenCV's res10 SSD face detector and their 2-class MobileNetV2."""

from __future__ import annotations

import time

import cv2
import numpy as np

from models.classify import _chunks, _graph_runner
from models.detect import _as_bgr, _clip
from models.faces import Faces
from shared.assets import asset_path, manifest, sha256_file


class Res10Detector:
    """The seeds' detector: OpenCV's res10 SSD on the frame squashed to 300x300, confidence > 0.5."""

    name = "res10"
    INPUT = (300, 300)
    MEAN = (104.0, 177.0, 123.0)

    def __init__(self, confidence: float = 0.5, prototxt=None, caffemodel=None) -> None:
        self.confidence = confidence
        weights = caffemodel or asset_path("res10_caffemodel")
        self.sha256 = manifest()["res10_caffemodel"].sha256 if caffemodel is None else sha256_file(weights)
        self._net = cv2.dnn.readNetFromCaffe(str(prototxt or asset_path("res10_prototxt")), str(weights))

    def __call__(self, frame_bgr: np.ndarray) -> Faces:
        """Faces of one BGR uint8 frame, as the seeds found them (boxes clipped to the frame)."""
        frame = _as_bgr(frame_bgr)
        height, width = frame.shape[:2]
        if height == 0 or width == 0:
            return Faces.empty()
        blob = cv2.dnn.blobFromImage(cv2.resize(frame, self.INPUT), 1.0, self.INPUT, self.MEAN)
        self._net.setInput(blob)
        out = self._net.forward().reshape(-1, 7)  # rows: image id, class, confidence, x1 y1 x2 y2 (0..1)
        out = out[out[:, 2] > self.confidence]
        xyxy, keep = _clip(out[:, 3:7] * np.array([width, height, width, height]), width, height)
        return Faces(xyxy=xyxy[keep], score=out[keep, 2])

    def describe(self) -> dict:
        """Name and confidence threshold."""
        return {"name": self.name, "confidence": self.confidence, "input": list(self.INPUT)}



class SeedClassifier:
    """The seeds' 2-class MobileNetV2 (224 px), mapped to our 3 columns with 'incorrect' = 0."""

    name = "seed-mask-classifier"
    input_size = 224
    backend = "keras"

    def __init__(self, per_face: bool = False, batch_size: int = 32) -> None:
        import keras

        from shared.assets import asset_path, manifest

        self.per_face = per_face
        self.batch_size = batch_size
        self.sha256 = manifest()["seed_mask_classifier"].sha256
        self.model = keras.saving.load_model(asset_path("seed_mask_classifier"), compile=False)
        self._fn = _graph_runner(self.model, self.input_size)

    def __call__(self, crops_rgb: np.ndarray) -> np.ndarray:
        """(N, H, W, 3) uint8 RGB crops (resized to 224 here) -> (N, 3) float32 probabilities."""
        x = _resize_batch(np.asarray(crops_rgb), self.input_size).astype(np.float32) / 127.5 - 1.0
        two = np.empty((len(x), 2), np.float32)
        if self.per_face:
            # The seeds' way: one model.predict per face (slow; kept as the benchmark baseline).
            for i in range(len(x)):
                two[i] = self.model.predict(x[i : i + 1], verbose=0)[0]
        else:
            for part in _chunks(len(x), self.batch_size):
                two[part] = self._fn(x[part])
        return np.concatenate([two, np.zeros((len(x), 1), np.float32)], axis=1)


def _resize_batch(crops: np.ndarray, size: int) -> np.ndarray:
    if crops.shape[1:3] == (size, size):
        return crops
    return np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_LINEAR) for c in crops])


class SeedPipeline:
    """The seeds' way of analysing a clip: res10 + their classifier on every frame, no tracking.

    They had no people, only faces per frame: a clip's "people" is the most faces seen in one frame,
    every one of them decided, and its rate the masked share of all face-frames.
    """

    def __init__(self) -> None:
        self.detector = Res10Detector()
        self.classifier = SeedClassifier()

    def summary(self, path) -> dict:
        """People and rate of one clip (decoded with OpenCV, as the seeds did), and frames per second."""
        from models.classify import crop_faces

        started = time.monotonic()
        cap = cv2.VideoCapture(str(path))
        most = masked = faces = frames = 0
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                frames += 1
                found = self.detector(frame)
                most = max(most, len(found))
                if len(found):
                    crops = crop_faces(frame, found.xyxy, self.classifier.input_size, margin=0.0)
                    probs = self.classifier(crops)
                    masked += int(np.sum(np.argmax(probs, axis=1) == 0))
                    faces += len(found)
        finally:
            cap.release()
        seconds = time.monotonic() - started
        rate = round(masked / faces, 4) if faces else None
        n_masked = round(most * rate) if rate is not None else 0
        return {
            "people": {"total": most, "masked": n_masked, "unmasked": most - n_masked, "incorrect": 0,
                       "unknown": 0},
            "compliance_rate": rate,
            "processing_fps": round(frames / seconds, 2) if seconds else None,
        }
