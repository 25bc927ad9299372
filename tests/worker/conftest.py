"""Fixtures of the worker tests: the real models (once per session) and a stand-in classifier for plumbing."""

from __future__ import annotations

import numpy as np
import pytest

from worker.loaded_models import Models


class ColourClassifier:
    """A stand-in for the mask network in plumbing tests: 'masked' when a crop is more red than blue."""

    name, sha256, input_size, backend = "colour-stand-in", "0" * 64, 32, "numpy"

    def __init__(self):
        self.calls: list[int] = []

    def __call__(self, crops_rgb: np.ndarray) -> np.ndarray:
        """(N, 32, 32, 3) RGB -> (N, 3) probabilities."""
        self.calls.append(len(crops_rgb))
        mean = crops_rgb.reshape(len(crops_rgb), -1, 3).mean(axis=1)
        red = mean[:, 0] > mean[:, 2]
        return np.stack([red, ~red, np.zeros_like(red)], axis=1).astype(np.float32) * 0.9 + 0.1 / 3


@pytest.fixture(scope="session")
def models():
    """The worker's real models (YuNet and our trained classifier), loaded once."""
    from worker.loaded_models import get_models

    return get_models()


@pytest.fixture(scope="session")
def detectors():
    """The worker's detectors (video and still profiles), loaded once."""
    from models.detect import load_detector
    from worker.loaded_models import STILL_DETECTOR, VIDEO_DETECTOR

    return load_detector("yunet", **VIDEO_DETECTOR), load_detector("yunet", **STILL_DETECTOR)


@pytest.fixture
def plumbing_models(detectors):
    """The real detectors with the stand-in classifier (no trained network needed)."""
    return Models(video_detector=detectors[0], still_detector=detectors[1], classifier=ColourClassifier(),
                  gpu=False)
