"""The exact neighbours of the test rows: the reference every approximate model is measured
against (recall@k, and its exact twin's predictions in the paired test), computed once by
the ``exact`` stage with knnlab's own exact search and cached by DVC.

The file is an ``.npz`` of plain arrays (no pickle): ``distances`` (n_test, k) float64 and
``indices`` (n_test, k) int64, sorted by (distance, lower index), for p = 2 on the rows as
the model sees them (``model.scale`` fitted on the train split).
"""

from __future__ import annotations

import numpy as np

from knnlab import neighbors
from knnlab.options import fit_scaling
from knnlab.pipeline.io.files import atomic_path

REBUILD = "re-run `dvc repro exact`"


def reference_k(grid_ks, n_train: int) -> int:
    """The grid's largest k (the tuned model's k is one of them), at most n_train. Not the
    configured model's k: changing it must not re-run this search; a configured k beyond
    the grid's is searched by evaluate itself (:func:`exact_neighbours_for`)."""
    return min(max(grid_ks), n_train)


def exact_test_neighbours(X_train, X_test, k: int, scale: str):
    """Exact Euclidean neighbours of X_test (n_test, d) among X_train (n_train, d), both
    scaled as the estimators scale them: distances and indices, each (n_test, k)."""
    centre, factor = fit_scaling(X_train, scale)
    if scale != "none":  # the estimator's own transform, operation for operation
        X_train, X_test = (X_train - centre) / factor, (X_test - centre) / factor
    return neighbors.kneighbors(X_train, X_test, k, p=2)  # on this machine: one search


def write(path, distances: np.ndarray, indices: np.ndarray) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        np.savez(fh, distances=distances, indices=indices)


def exact_neighbours_for(path, X_train, X_test, k: int, scale: str):
    """The exact neighbours (distances, indices), each (n_test, k), of the test rows: the
    cached reference's first k columns, or a new search when k exceeds what it holds."""
    with np.load(path, allow_pickle=False) as archive:
        held = archive["indices"].shape[1] if "indices" in archive else 0
    if k > held:
        return exact_test_neighbours(X_train, X_test, k, scale)
    return read(path, len(X_test), k)


def read(path, n_test: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference's first k columns, checked against the test split's size."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            distances, indices = archive["distances"], archive["indices"]
    except (OSError, KeyError, ValueError) as error:
        raise ValueError(f"{path} cannot be read ({error}); {REBUILD}") from None
    if distances.shape != indices.shape or len(distances) != n_test or distances.shape[1] < k:
        raise ValueError(
            f"{path} holds neighbours of shape {distances.shape}, expected ({n_test}, >= {k}); "
            f"{REBUILD}"
        )
    return distances[:, :k], indices[:, :k]
