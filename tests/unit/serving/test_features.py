"""Image features from pixels (driftloop.serving.features) on images whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from driftloop.serving.features import FEATURE_NAMES, image_features


def _solid(rgb, size=(12, 10)):
    return np.full((*size, 3), rgb, dtype=np.uint8)


def test_a_grey_image_is_flat():
    f = image_features(_solid((100, 100, 100)))
    assert set(f) == set(FEATURE_NAMES)
    assert f["brightness"] == pytest.approx(100.0)
    assert f["contrast"] == pytest.approx(0.0, abs=1e-9)
    assert f["saturation"] == 0.0
    assert f["sharpness"] == pytest.approx(0.0, abs=1e-9)
    assert (f["mean_r"], f["mean_g"], f["mean_b"]) == (100.0, 100.0, 100.0)


def test_pure_colours_use_bt601_luma_and_hsv_saturation():
    red = image_features(_solid((255, 0, 0)))
    assert red["brightness"] == pytest.approx(0.299 * 255)
    assert red["saturation"] == pytest.approx(1.0)
    assert (red["mean_r"], red["mean_g"], red["mean_b"]) == (255.0, 0.0, 0.0)
    green = image_features(_solid((0, 255, 0)))
    assert green["brightness"] == pytest.approx(0.587 * 255)
    half = image_features(_solid((200, 100, 100)))
    assert half["saturation"] == pytest.approx(0.5)
    black = image_features(_solid((0, 0, 0)))
    assert black["saturation"] == 0.0  # no division by zero


def test_contrast_is_the_luma_standard_deviation():
    pixels = _solid((0, 0, 0), (10, 10))
    pixels[:, 5:] = 255  # half black, half white
    f = image_features(pixels)
    assert f["brightness"] == pytest.approx(127.5)
    assert f["contrast"] == pytest.approx(127.5)


def test_sharpness_is_the_laplacian_variance():
    checker = (np.indices((10, 10)).sum(axis=0) % 2 * 255).astype(np.uint8)
    pixels = np.repeat(checker[:, :, None], 3, axis=2)
    # every interior Laplacian is +-4*255: variance (4*255)^2
    assert image_features(pixels)["sharpness"] == pytest.approx((4 * 255) ** 2)
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    luma = noisy.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    reference = ndimage.laplace(luma)[1:-1, 1:-1].var()  # scipy's 4-neighbour kernel
    assert image_features(noisy)["sharpness"] == pytest.approx(reference)
    blurred = ndimage.uniform_filter(noisy, size=(5, 5, 1))
    assert image_features(blurred)["sharpness"] < image_features(noisy)["sharpness"] / 10
    assert image_features(_solid((9, 9, 9), (2, 2)))["sharpness"] == 0.0  # no interior


def test_pil_images_and_arrays_agree():
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    assert image_features(Image.fromarray(pixels)) == image_features(pixels)
    # a palette / greyscale image is converted to RGB first
    grey = Image.fromarray(pixels[:, :, 0], "L")
    f = image_features(grey)
    assert f["saturation"] == 0.0
    assert f["brightness"] == pytest.approx(pixels[:, :, 0].mean(), rel=1e-3)


def test_bad_arrays_are_refused():
    with pytest.raises(ValueError, match=r"RGB image \[H, W, 3\]"):
        image_features(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="8-bit"):
        image_features(np.zeros((4, 4, 3), dtype=np.float32))
