"""A synthetic, MNIST-shaped dataset built offline from scikit-learn's bundled digits.

The search benchmark's second case (beside real Fashion-MNIST) and the stand-in of
``examples/mnist_chapter3.py`` when MNIST cannot be downloaded. Its images have few real
degrees of freedom (they are upscaled 8x8 digits), which flatters any pruning search: never
quote a speed measured on it alone.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from sklearn.datasets import load_digits

IMAGE_SIDE = 28  # MNIST: 28x28 canvas ...
_BOX_SIDE = 20  # ... with the digit in a centred 20x20 box
_MAX_ROTATION_DEG = 15.0
_MAX_SHIFT_PX = 2.0
_GAIN_RANGE = (0.8, 1.2)  # per-image contrast
_NOISE_STD = 16.0  # grey levels, added to stroke pixels only: the background stays 0
_BATCH = 5_000  # images distorted per ndimage call (bounds the coordinate arrays)
_TEST_SOURCE_FRACTION = 0.2  # share of the 1,797 source digits kept for test images


def make_mnist_like(
    n_train: int = 60_000, n_test: int = 10_000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An MNIST-shaped classification set built from scikit-learn's bundled digits.

    Each 8x8 digit (grey levels 0..16) is upscaled to 20x20, centred on a 28x28 canvas as
    in MNIST, then each sample gets a random rotation (±15°), shift (±2 px), contrast
    (x0.8..1.2) and Gaussian noise on its stroke, and is clipped and rounded to integer
    grey levels 0..255. Test samples come from a held-out fifth of the source digits.
    No network, nothing cached; seeded: the same arguments give the same arrays, and the
    test set does not depend on ``n_train``.

    Parameters
    ----------
    n_train, n_test : int
        Number of training and test samples (``n_train >= 1``, ``n_test >= 0``).
    seed : int
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    X_train : ndarray of shape (n_train, 784), float32
        Row-major 28x28 images, integer values in [0, 255].
    y_train : ndarray of shape (n_train,), int64
        Digit labels 0..9.
    X_test : ndarray of shape (n_test, 784), float32
    y_test : ndarray of shape (n_test,), int64
    """
    if n_train < 1 or n_test < 0:
        raise ValueError(f"need n_train >= 1 and n_test >= 0, got {n_train} and {n_test}")
    digits = load_digits()
    canvas = _upscale_to_canvas(digits.images)
    split_rng, train_rng, test_rng = np.random.default_rng(seed).spawn(3)
    order = split_rng.permutation(len(canvas))
    n_test_sources = round(_TEST_SOURCE_FRACTION * len(canvas))
    test_sources, train_sources = order[:n_test_sources], order[n_test_sources:]
    X_train, y_train = _sample(canvas, digits.target, train_sources, n_train, train_rng)
    X_test, y_test = _sample(canvas, digits.target, test_sources, n_test, test_rng)
    return X_train, y_train, X_test, y_test


def _upscale_to_canvas(images: np.ndarray) -> np.ndarray:
    """(n, 8, 8) grey levels 0..16 -> (n, 28, 28) float64 grey levels 0..255, each digit
    bilinearly upscaled into the canvas's centred 20x20 box."""
    zoom = _BOX_SIDE / images.shape[1]
    boxes = ndimage.zoom(images.astype(np.float64), (1, zoom, zoom), order=1)
    margin = (IMAGE_SIDE - _BOX_SIDE) // 2
    canvas = np.pad(boxes, ((0, 0), (margin, margin), (margin, margin)))
    return canvas * (255.0 / images.max())


def _sample(
    canvas: np.ndarray, labels: np.ndarray, sources: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """n distorted copies of digits drawn from ``sources`` (indices into canvas (m, 28, 28)).
    Returns (n, 784) float32 images and (n,) int64 labels."""
    picks = rng.choice(sources, size=n)
    X = np.empty((n, IMAGE_SIDE * IMAGE_SIDE), dtype=np.float32)
    for start in range(0, n, _BATCH):
        stop = min(start + _BATCH, n)
        X[start:stop] = _distort(canvas, picks[start:stop], rng)
    return X, labels[picks].astype(np.int64)


def _distort(canvas: np.ndarray, picks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rotate, shift, re-contrast and noise canvas[picks]: (b,) indices -> (b, 784) float64.

    One bilinear ``map_coordinates`` call for the batch: the image index is an exact
    integer coordinate on the first axis, so images never blend into each other.
    """
    b = len(picks)
    angle = np.deg2rad(rng.uniform(-_MAX_ROTATION_DEG, _MAX_ROTATION_DEG, size=(b, 1)))
    shift = rng.uniform(-_MAX_SHIFT_PX, _MAX_SHIFT_PX, size=(b, 2))
    gain = rng.uniform(*_GAIN_RANGE, size=(b, 1))
    noise = rng.normal(0.0, _NOISE_STD, size=(b, IMAGE_SIDE * IMAGE_SIDE))
    centre = (IMAGE_SIDE - 1) / 2
    rows, cols = np.indices((IMAGE_SIDE, IMAGE_SIDE)).reshape(2, 1, -1) - centre  # (1, 784)
    rows, cols = rows - shift[:, :1], cols - shift[:, 1:]  # (b, 784), output pixel -> source
    cos, sin = np.cos(angle), np.sin(angle)
    coordinates = [
        np.broadcast_to(picks[:, None].astype(np.float64), rows.shape),
        cos * rows - sin * cols + centre,
        sin * rows + cos * cols + centre,
    ]
    images = ndimage.map_coordinates(canvas, coordinates, order=1, mode="constant", cval=0.0)
    images *= gain
    images += noise * (images > 0.5)
    np.clip(images, 0.0, 255.0, out=images)
    return np.rint(images, out=images)
