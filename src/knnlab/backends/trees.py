"""The exact tree backends, ``kd_tree`` and ``ball_tree``: scikit-learn's trees with knnlab's
tie rule, and knnlab's own exact search wherever their float64 p-th powers would overflow or
underflow (:func:`powers_fit_float64`)."""

from __future__ import annotations

import math

import numpy as np
from sklearn.neighbors import BallTree, KDTree

from knnlab import neighbors

_TREES = {"kd_tree": KDTree, "ball_tree": BallTree}


def powers_fit_float64(X_fit: np.ndarray, X_query: np.ndarray | None, p: float) -> bool:
    """Whether scikit-learn's trees, which sum float64 p-th powers of coordinate differences,
    are exact for these points: the largest sum, d * span^p, must not overflow and the
    p-th power of the smallest non-zero difference must stay a normal float64 (else it
    rounds to 0 and distinct points look equal). knnlab's own search scales each pair by its
    largest difference instead, so it never needs this.

    X_fit : (n_samples, n_features); X_query : (n_queries, n_features) or None. ``span`` is
    the largest range of a feature over both, the smallest difference is at least the
    smallest gap between two sorted distinct values of a feature. O((n + m) d log(n + m)).
    """
    if p == 1 or math.isinf(p):
        return True  # no powers: sums of differences, or their maximum
    points = X_fit if X_query is None else np.vstack([X_fit, X_query])
    gaps = np.diff(np.sort(points, axis=0), axis=0)  # (n + m - 1, d)
    positive = gaps[gaps > 0]
    if not positive.size:
        return True  # every point equal: every distance 0
    span = float((points.max(axis=0) - points.min(axis=0)).max())
    # In log2, so the powers themselves are never formed. 2^+-1000 leaves room for the sum
    # of d terms and for rounding.
    fits_above = p * math.log2(span) + math.log2(points.shape[1]) < 1000
    fits_below = p * math.log2(float(positive.min())) > -1000
    return fits_above and fits_below


def _tree_metric(p: float) -> dict:
    return {"metric": "chebyshev"} if np.isinf(p) else {"metric": "minkowski", "p": p}


def tree_kneighbors(
    tree: KDTree | BallTree, X_query: np.ndarray | None, n_neighbors: int
) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours from a scikit-learn tree, with knnlab's tie rule.

    Trees return an arbitrary member of a tie at the k-th place. Rows whose k-th and
    (k+1)-th distances are equal are therefore re-queried by radius (every point within the
    k-th distance) and resolved like the brute-force search: by distance, then lower index.

    X_query : ndarray of shape (n_queries, n_features), or None for the training points
        themselves (own index excluded). Returns two (n_queries, n_neighbors) arrays.
    """
    is_self_query = X_query is None
    queries = np.asarray(tree.data) if is_self_query else X_query
    n_queries, n_fit = queries.shape[0], tree.data.shape[0]
    n_fetch = min(n_fit, n_neighbors + 1 + int(is_self_query))
    dist, ind = tree.query(queries, k=n_fetch)  # (n_queries, n_fetch)
    ambiguous = np.zeros(n_queries, dtype=bool)
    if is_self_query:
        is_own = ind == np.arange(n_queries)[:, None]
        own_found = is_own.any(axis=1)
        # Drop the own column; where the tree did not return it (more than n_fetch points
        # at distance 0), drop the last column and resolve the row by radius below.
        drop = np.where(own_found, is_own.argmax(axis=1), n_fetch - 1)
        keep = np.ones_like(ind, dtype=bool)
        keep[np.arange(n_queries), drop] = False
        dist = dist[keep].reshape(n_queries, n_fetch - 1)
        ind = ind[keep].reshape(n_queries, n_fetch - 1)
        ambiguous |= ~own_found
    order = np.lexsort((ind, dist), axis=-1)  # per row: distance, then lower index
    dist = np.take_along_axis(dist, order, axis=1)
    ind = np.take_along_axis(ind, order, axis=1)
    if dist.shape[1] > n_neighbors:
        ambiguous |= dist[:, n_neighbors] == dist[:, n_neighbors - 1]
    dist, ind = dist[:, :n_neighbors].copy(), ind[:, :n_neighbors].copy()
    rows = np.flatnonzero(ambiguous)
    if rows.size:
        radius = dist[rows, n_neighbors - 1]
        # The tree compares p-th powers, and (d ** (1/p)) ** p need not round back to the
        # same value: query a hair wider, then keep what is within the exact k-th distance.
        candidates, candidate_dist = tree.query_radius(
            queries[rows], r=radius * (1 + 1e-9) + 1e-300, return_distance=True
        )
        for row, cand_ind, cand_dist in zip(rows, candidates, candidate_dist, strict=True):
            # No filter on r: query_radius may round a distance differently from query
            # (3.0 against 2.9999999999999996); sorting the wider set is exact either way.
            if is_self_query:
                others = cand_ind != row
                cand_ind, cand_dist = cand_ind[others], cand_dist[others]
            best = np.lexsort((cand_ind, cand_dist))[:n_neighbors]
            dist[row], ind[row] = cand_dist[best], cand_ind[best]
    return dist, ind


class TreeIndex:
    """A scikit-learn tree over X (n_train, n_features) float64 at Minkowski p."""

    nbytes = 0  # the tree's arrays are index bookkeeping over X; not counted

    def __init__(self, X: np.ndarray, name: str, p: float, n_jobs: int | None):
        self.X, self.p, self.n_jobs = X, p, n_jobs
        self.tree = _TREES[name](X, **_tree_metric(p))

    def kneighbors(self, X_query: np.ndarray | None, n_neighbors: int):
        if powers_fit_float64(self.X, X_query, self.p):
            return tree_kneighbors(self.tree, X_query, n_neighbors)
        return neighbors.kneighbors(self.X, X_query, n_neighbors, p=self.p, n_jobs=self.n_jobs)

    def state(self):
        return None


def build(X, *, name: str, p: float, options, seed: int, n_jobs: int | None) -> TreeIndex:
    """A tree needs no options and makes no random choice (options, seed unused)."""
    return TreeIndex(X, name, p, n_jobs)
