"""Explanations of the mask classifier on real faces: Grad-CAM, occlusion maps, overlays."""

from __future__ import annotations

import numpy as np
import pytest

from models import data
from models.classify import MaskClassifier, crop_faces
from models.explain import grad_cam, load_keras_model, occlusion_sensitivity, overlay
from models.faces import INCORRECT, MASKED, UNMASKED
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


@pytest.fixture(scope="module")
def unmasked_face(classifier):
    """A real, clearly unmasked web crop, at the classifier's input size (RGB)."""
    path = asset_path("mask_crops") / "without_mask" / "without_mask_0001.jpg"
    h, w = (image := data.read_bgr(path)).shape[:2]
    crop = crop_faces(image, [[0, 0, w, h]], classifier.input_size, margin=0.0)[0]
    assert classifier(crop[None]).argmax() == UNMASKED
    return crop


def test_grad_cam_explains_the_predicted_class_and_each_class_differently(keras_model, masked_face,
                                                                           unmasked_face):
    for face, predicted in ((masked_face, MASKED), (unmasked_face, UNMASKED)):
        default = grad_cam(keras_model, face)
        by_class = [grad_cam(keras_model, face, class_index=c) for c in (MASKED, UNMASKED, INCORRECT)]
        np.testing.assert_allclose(default, by_class[predicted], atol=1e-5)
        assert default.max() == pytest.approx(1.0)  # the predicted class has evidence somewhere
        for other in {MASKED, UNMASKED, INCORRECT} - {predicted}:
            # Another class's map (often empty: no positive evidence for it) is not the same map.
            assert np.abs(by_class[other] - default).mean() > 0.05, (predicted, other)


def test_grad_cam_follows_the_face_when_it_moves(keras_model, masked_face):
    heat = grad_cam(keras_model, masked_face, class_index=MASKED)
    # Shift the face down by a quarter of the crop: the evidence, and so the heat, moves with it.
    shift = masked_face.shape[0] // 4
    moved = np.concatenate([np.repeat(masked_face[:1], shift, axis=0), masked_face[:-shift]])
    heat_moved = grad_cam(keras_model, moved, class_index=MASKED)
    dy = _centre_of_mass(heat_moved)[0] - _centre_of_mass(heat)[0]
    assert dy > shift / 3, dy


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
