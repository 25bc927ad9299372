"""The worker's models, loaded once per process on first use (in the Celery child, never before fork).

WORKER_DEVICE picks the hardware: 'cpu' runs the classifier on LiteRT/XNNPACK and encodes with libx264;
'gpu' runs it on TensorFlow's GPU and encodes with NVENC; 'auto' uses the GPU only where an NVIDIA
driver answers. The detector (OpenCV DNN, CPU build) runs on the CPU either way.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2

from models.multiscale import AdaptiveDetector
from shared.config import get_settings
from worker.pipeline.threads import os_thread_name

# The tracker's second stage needs the uncertain faces too, so the detector reports down to its low
# score; the tracker drops those that extend no track. The video profile caps the working image at
# 960 px; the coarse pass (320 px, ~8x cheaper) serves frames where every face is large.
VIDEO_DETECTOR = {"profile": "video", "score_threshold": 0.3}
COARSE_DETECTOR = {**VIDEO_DETECTOR, "max_side": 320}
STILL_DETECTOR = {"profile": "still"}

_lock = threading.Lock()
_cache: dict[str, object] = {}
_pid: int | None = None


@dataclass(frozen=True)
class Models:
    """What one analysis uses: video detectors (fine, coarse), a still-image detector, the classifier."""

    video_detector: object
    still_detector: object
    classifier: object
    gpu: bool
    coarse_detector: object | None = None

    def for_video(self):
        """A fresh per-clip video detector: adaptive between fine and coarse when there is a coarse one."""
        if self.coarse_detector is None:
            return self.video_detector
        return AdaptiveDetector(self.video_detector, self.coarse_detector)

    def describe(self, detector=None, *, image: bool = False) -> dict:
        """The result's `models` record: names, sha256 and parameters (of `detector` when given)."""
        det = detector or (self.still_detector if image else self.for_video())
        return {
            "detector": {"name": det.name, "sha256": det.sha256, "params": det.describe()},
            "classifier": {"name": self.classifier.name, "sha256": self.classifier.sha256,
                           "input_size": self.classifier.input_size,
                           "backend": self.classifier.backend,
                           "precision": getattr(self.classifier, "precision", "float")},
        }


def use_gpu() -> bool:
    """Whether this process should use a GPU, per WORKER_DEVICE ('auto': an NVIDIA driver is present)."""
    device = get_settings().worker_device
    if device != "auto":
        return device == "gpu"
    return Path("/proc/driver/nvidia").exists() or Path("/dev/nvidiactl").exists()


def set_threads(*, video: bool) -> None:
    """OpenCV's thread count: 1 for the video loop, every core for a still image."""
    # The video loop's decode, analysis and encode threads already fill the cores; an OpenCV pool on
    # top costs more in hand-offs than it gains (measured: 1080p 16.4-16.9 fps with 2, 18.7-19.3 with 1).
    cv2.setNumThreads(1 if video else (os.cpu_count() or 1))


def get_models() -> Models:
    """The process's models, loaded on first call (thread-safe; reloaded in a forked child)."""
    global _pid
    with _lock:
        if _pid != os.getpid():
            _cache.clear()
            _pid = os.getpid()
        if "models" not in _cache:
            _cache["models"] = _load()
        return _cache["models"]


def _load() -> Models:
    from models.classify import load_classifier
    from models.detect import load_detector

    gpu = use_gpu()
    # XNNPACK's worker threads start with the classifier and inherit this name: the stage timer
    # (pipeline/timing.py) counts their CPU as classification.
    with os_thread_name("classify"):
        # backend and precision follow WORKER_DEVICE and CLASSIFIER_PRECISION
        classifier = load_classifier(backend="auto", num_threads=1, crowd_threads=os.cpu_count() or 1)
    return Models(
        video_detector=load_detector("yunet", **VIDEO_DETECTOR),
        coarse_detector=load_detector("yunet", **COARSE_DETECTOR),
        still_detector=load_detector("yunet", **STILL_DETECTOR),
        # One LiteRT thread for a few faces: decode, analysis and encode threads already keep every
        # core busy, and XNNPACK's extra threads mostly spin (measured: -10 ms of CPU per 1080p frame
        # with one). A crowd's batches (32 faces and more) are most of a frame's work: every core.
        classifier=classifier,
        gpu=gpu,
    )
