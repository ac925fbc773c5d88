"""Leaks across a train/test split: test rows with an exact or near duplicate among the
training rows. A model scores such a row by remembering it, so its accuracy there says
nothing about new data; kNN is the model that remembers most literally.

Distances are Euclidean on the features as given (before any scaling a model applies), from
knnlab's exact search, so "distance 0" means equal in every feature.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from knnlab.neighbors import kneighbors


@dataclass(frozen=True)
class CrossSplitDuplicates:
    """Each test row's nearest training row and the near-duplicate threshold.

    nearest : ndarray of shape (n_test,), int64
        Index of the nearest training row (among equal distances the lower index).
    distance : ndarray of shape (n_test,)
        Euclidean distance to it.
    threshold : float
        Distances at or below it are near duplicates: ``ratio`` times the median of
        ``distance``.
    ratio : float
    """

    nearest: np.ndarray
    distance: np.ndarray
    threshold: float
    ratio: float

    @property
    def exact(self) -> np.ndarray:
        """(n_test,) bool: equal to a training row in every feature."""
        return self.distance == 0

    @property
    def near(self) -> np.ndarray:
        """(n_test,) bool: not equal, but within the threshold."""
        return (self.distance > 0) & (self.distance <= self.threshold)

    @property
    def leaked(self) -> np.ndarray:
        """(n_test,) bool: exact or near."""
        return self.distance <= self.threshold

    def summary(self, n_pairs: int = 10) -> dict:
        """JSON-ready counts, the threshold and the closest ``n_pairs`` leaked pairs
        (test row, training row, distance), closest first."""
        leaked = np.flatnonzero(self.leaked)
        closest = leaked[np.argsort(self.distance[leaked], kind="stable")][:n_pairs]
        return {
            "exact_duplicates": int(self.exact.sum()),
            "near_duplicates": int(self.near.sum()),
            "near_duplicate_ratio": self.ratio,
            "near_duplicate_threshold": self.threshold,
            "median_nearest_distance": float(np.median(self.distance)),
            "smallest_nearest_distance": float(self.distance.min()),
            "closest_pairs": [
                {
                    "test_row": int(i),
                    "train_row": int(self.nearest[i]),
                    "distance": float(self.distance[i]),
                }
                for i in closest
            ],
        }


def _check_ratio(ratio: float) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not 0 <= ratio < 1:
        raise ValueError(f"ratio must be a number at least 0 and below 1, got {ratio!r}")
    return float(ratio)


def cross_split_duplicates(
    X_train: np.ndarray, X_test: np.ndarray, ratio: float = 0.1
) -> CrossSplitDuplicates:
    """Find each test row's nearest training row (X_train: (n_train, d), X_test:
    (n_test, d)); a test row within ``ratio`` of the median nearest distance is a near
    duplicate (``ratio`` 0: exact duplicates only).

    The threshold is relative because distances have the data's units: a fixed number
    would mean two pixels on one dataset and nothing on another."""
    ratio = _check_ratio(ratio)
    distances, indices = kneighbors(X_train, X_test, 1, p=2)
    distance = distances[:, 0]
    threshold = ratio * float(np.median(distance))
    return CrossSplitDuplicates(indices[:, 0], distance, threshold, ratio)


def rows_to_move(found: CrossSplitDuplicates, X_test: np.ndarray) -> np.ndarray:
    """(n_test,) bool: the test rows (X_test: (n_test, d)) to move to the training side so
    that no test row stays within ``found.threshold`` of a training row. It starts from the
    rows ``found`` already places within reach; moving a row can put the next one within
    reach (test rows that duplicate each other), so this repeats against the rows just
    moved until none is left."""
    X_test = np.asarray(X_test, dtype=np.float64)
    moving = found.leaked.copy()
    newly = moving.copy()
    while newly.any() and not moving.all():
        staying = np.flatnonzero(~moving)
        reach = kneighbors(X_test[newly], X_test[staying], 1, p=2)[0][:, 0]
        newly = np.zeros_like(moving)
        newly[staying[reach <= found.threshold]] = True
        moving |= newly
    return moving
