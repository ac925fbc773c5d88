"""From sorted neighbours to class probabilities, for one k or for many k at once.

The estimator and the grid search share this code, so a tuned score is exactly the score the
refitted estimator would get.
"""

from __future__ import annotations

import numpy as np

from knnlab.options import WEIGHTS, check_choice


def neighbor_weights(distances: np.ndarray, weights: str) -> np.ndarray:
    """Vote weight of each neighbour.

    Parameters
    ----------
    distances : ndarray of shape (n_queries, k)
        Sorted ascending along each row.
    weights : {"uniform", "distance"}
        ``distance`` weighs a neighbour by ``1 / d``; as in scikit-learn, a query with an
        exact match (d = 0) gives all the weight to its exact matches.

    Returns
    -------
    ndarray of shape (n_queries, k)
        Valid for every prefix ``[:, :j]``: rows are sorted, so "some distance in the first
        j is 0" is the same as "the first distance is 0" for every j.
    """
    if check_choice("weights", weights, WEIGHTS) == "uniform":
        return np.ones_like(distances)
    has_exact_match = distances[:, 0] == 0
    with np.errstate(divide="ignore"):
        inverse = 1.0 / distances
    inverse[has_exact_match] = distances[has_exact_match] == 0
    return inverse


def class_probabilities(
    distances: np.ndarray,
    neighbor_labels: np.ndarray,
    n_classes: int,
    weights: str,
    ks: np.ndarray | list[int],
) -> np.ndarray:
    """Weighted class votes of the first k neighbours, normalised, for every k in ``ks``.

    Parameters
    ----------
    distances : ndarray of shape (n_queries, k_max)
        Sorted ascending along each row.
    neighbor_labels : ndarray of shape (n_queries, k_max)
        Encoded class (0..n_classes-1) of each neighbour.
    n_classes : int
    weights : {"uniform", "distance"}
    ks : sequence of int
        Each ``1 <= k <= k_max``.

    Returns
    -------
    ndarray of shape (len(ks), n_queries, n_classes)
        Rows sum to 1.
    """
    ks = np.asarray(ks, dtype=np.intp)
    n_queries, k_max = distances.shape
    if ks.size == 0 or ks.min() < 1 or ks.max() > k_max:
        raise ValueError(f"every k must lie in 1..{k_max}, got {ks.tolist()}")
    w = neighbor_weights(distances, weights)  # (n_queries, k_max)
    votes = np.zeros((n_queries, k_max, n_classes))
    rows = np.arange(n_queries)[:, None]
    votes[rows, np.arange(k_max)[None, :], neighbor_labels] = w
    # Running sum over neighbours: cumulative[:, j] holds the votes of the first j + 1,
    # added in neighbour order (as scikit-learn adds them), so every k costs one slice.
    cumulative = np.cumsum(votes, axis=1)[:, ks - 1, :]  # (n_queries, len(ks), n_classes)
    cumulative /= cumulative.sum(axis=2, keepdims=True)
    return cumulative.transpose(1, 0, 2)
