"""The inference-log contract's image features, computed from a frame's pixels.

The drift monitor compares these between windows, so they must mean the same thing for every
frame, every camera and every model version: they depend on the pixels alone (never on the
model) and are computed in float64 on the decoded 8-bit RGB image, vectorised with numpy.

- ``brightness``: mean luma, ITU-R BT.601 weights (0.299 R + 0.587 G + 0.114 B), 0..255;
- ``contrast``: standard deviation of the luma (population), 0..127.5;
- ``saturation``: mean HSV saturation ``(max - min) / max`` of the channels (0 where the
  pixel is black), in [0, 1];
- ``sharpness``: variance of the 3x3 Laplacian (4-neighbour kernel ``[[0,1,0],[1,-4,1],[0,1,0]]``,
  OpenCV's ``Laplacian(ksize=1)``) of the luma over the interior pixels — the usual blur
  measure; 0 for images narrower or shorter than 3 pixels;
- ``mean_r``, ``mean_g``, ``mean_b``: channel means, 0..255.
"""

from __future__ import annotations

from typing import Any

import numpy as np  # noqa: TID253 (the scorer's process, never a DAG file)

LUMA_WEIGHTS = (0.299, 0.587, 0.114)
FEATURE_NAMES: tuple[str, ...] = (
    "brightness",
    "contrast",
    "saturation",
    "sharpness",
    "mean_r",
    "mean_g",
    "mean_b",
)


def as_rgb_array(image: Any) -> np.ndarray:
    """An ``[H, W, 3]`` uint8 array of a PIL image (converted to RGB) or of an array."""
    pixels = image if isinstance(image, np.ndarray) else np.asarray(image.convert("RGB"))
    if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise ValueError(f"expected an RGB image [H, W, 3], got an array of shape {pixels.shape}")
    if pixels.dtype != np.uint8:
        raise ValueError(f"expected 8-bit pixels (uint8), got {pixels.dtype}")
    return pixels


def luma(pixels: np.ndarray) -> np.ndarray:
    """BT.601 luma ``[H, W]`` (float64, 0..255) of uint8 RGB pixels."""
    return pixels.astype(np.float64) @ np.asarray(LUMA_WEIGHTS)


def laplacian_variance(y: np.ndarray) -> float:
    """Variance of the 4-neighbour Laplacian over the interior of a 2-D array."""
    if y.shape[0] < 3 or y.shape[1] < 3:
        return 0.0
    centre = y[1:-1, 1:-1]
    lap = y[:-2, 1:-1] + y[2:, 1:-1] + y[1:-1, :-2] + y[1:-1, 2:] - 4.0 * centre
    return float(lap.var())


def mean_saturation(pixels: np.ndarray) -> float:
    """Mean HSV saturation in [0, 1] (a black pixel has saturation 0)."""
    # elementwise over the three channel planes: a reduction along the last axis of an
    # [H, W, 3] array is ~20x slower
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    high = np.maximum(np.maximum(r, g), b)
    spread = (high - np.minimum(np.minimum(r, g), b)).astype(np.float64)
    high = high.astype(np.float64)
    saturation = np.divide(spread, high, out=np.zeros_like(high), where=high > 0)
    return float(saturation.mean())


def channel_means(pixels: np.ndarray) -> np.ndarray:
    """``[mean_r, mean_g, mean_b]`` (exact: integer sums over channel-major planes)."""
    planes = np.ascontiguousarray(np.moveaxis(pixels, 2, 0)).reshape(3, -1)
    return planes.sum(axis=1, dtype=np.int64) / planes.shape[1]


def image_features(image: Any) -> dict[str, float]:
    """The contract's image features of one frame (a PIL image or a uint8 RGB array)."""
    pixels = as_rgb_array(image)
    y = luma(pixels)
    means = channel_means(pixels)
    return {
        "brightness": float(y.mean()),
        "contrast": float(y.std()),
        "saturation": mean_saturation(pixels),
        "sharpness": laplacian_variance(y),
        "mean_r": float(means[0]),
        "mean_g": float(means[1]),
        "mean_b": float(means[2]),
    }
