"""The datasets that need no network: scikit-learn's digits and iris, and moons generated
from a seed."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn import datasets as sk_datasets

from knnlab.pipeline.data.dataset import LABEL, Dataset


def _from_bunch(name: str, bunch, image_shape=None, class_names=None) -> Dataset:
    frame = pd.DataFrame(bunch.data, columns=list(bunch.feature_names)).astype(np.float64)
    frame[LABEL] = np.asarray(bunch.target)
    return Dataset(name, frame, image_shape, class_names or {})


def load_digits() -> Dataset:
    """scikit-learn's 8x8 digits: 1797 rows, 64 pixel features with values 0..16."""
    return _from_bunch("digits", sk_datasets.load_digits(), image_shape=(8, 8))


def load_iris() -> Dataset:
    """Fisher's iris: 150 rows, 4 measurements in cm, 3 species."""
    bunch = sk_datasets.load_iris()
    names = {str(i): str(n) for i, n in enumerate(bunch.target_names)}
    return _from_bunch("iris", bunch, class_names=names)


def load_moons(n_samples: int, noise: float, seed: int) -> Dataset:
    """Two interleaving half-moons in 2-D, ``make_moons`` with a seed."""
    X, y = sk_datasets.make_moons(n_samples=n_samples, noise=noise, random_state=seed)
    frame = pd.DataFrame(X, columns=["x0", "x1"])
    frame[LABEL] = y
    return Dataset("moons", frame)
