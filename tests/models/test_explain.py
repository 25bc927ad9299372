"""Explanations of the mask classifier on real faces: Grad-CAM, occlusion maps, overlays."""

from __future__ import annotations

import numpy as np
import pytest

from models import data
from models.classify import MaskClassifier, crop_faces
from models.explain import grad_cam, load_keras_model, occlusion_sensitivity, overlay
from models.faces import MASKED
from shared.assets import asset_path


@pytest.fixture(scope="module")
def classifier():
    """Our classifier on LiteRT."""
    return MaskClassifier(backend="litert")


@pytest.fixture(scope="module")
def masked_face(classifier):
    """A real, clearly masked web crop, at the classifier's input size (RGB)."""
    path = asset_path("mask_crops") / "with_mask" / "with_mask_0002.jpg"
    h, w = (image := data.read_bgr(path)).shape[:2]
    crop = crop_faces(image, [[0, 0, w, h]], classifier.input_size, margin=0.0)[0]
    assert classifier(crop[None]).argmax() == MASKED
    return crop


@pytest.fixture(scope="module")
def keras_model():
    """Our Keras model (Grad-CAM needs its layers)."""
    return load_keras_model()


def _centre_of_mass(heat: np.ndarray) -> np.ndarray:
    ys, xs = np.mgrid[: heat.shape[0], : heat.shape[1]]
    return np.array([(heat * ys).sum(), (heat * xs).sum()]) / heat.sum()


def test_grad_cam_is_a_heat_map_over_the_crop(keras_model, masked_face):
    heat = grad_cam(keras_model, masked_face)
    assert heat.shape == masked_face.shape[:2] and heat.dtype == np.float32
    assert heat.min() >= 0 and heat.max() == pytest.approx(1.0)
    small = grad_cam(keras_model, masked_face[::2, ::2], class_index=1)
    assert small.shape == (masked_face.shape[0] // 2, masked_face.shape[1] // 2)


def test_occlusion_map_depends_on_the_face_and_moves_with_it(classifier, masked_face):
    heat = occlusion_sensitivity(classifier, masked_face, patch=32, stride=8)
    assert heat.shape == masked_face.shape[:2] and heat.min() >= 0
    assert heat.max() == pytest.approx(1.0) and np.median(heat) < 0.5  # a peak, not a flat map
    # Shift the face down by a quarter of the crop: the sensitive region follows it.
    shift = masked_face.shape[0] // 4
    moved = np.concatenate([np.repeat(masked_face[:1], shift, axis=0), masked_face[:-shift]])
    heat_moved = occlusion_sensitivity(classifier, moved, patch=32, stride=8, class_index=MASKED)
    dy = _centre_of_mass(heat_moved)[0] - _centre_of_mass(heat)[0]
    assert dy > shift / 3


def test_overlay_is_an_rgb_image_of_the_crop(masked_face):
    heat = np.zeros(masked_face.shape[:2], np.float32)
    heat[:10, :10] = 1.0
    out = overlay(masked_face, heat)
    assert out.shape == masked_face.shape and out.dtype == np.uint8
    # Cold regions keep most of the picture; the hot corner turns red.
    assert np.abs(out[-20:, -20:].astype(int) - masked_face[-20:, -20:]).mean() < 60
    assert out[:5, :5, 0].mean() > out[:5, :5, 2].mean()
