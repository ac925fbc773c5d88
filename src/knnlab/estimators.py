"""scikit-learn-compatible k-nearest-neighbours estimators on knnlab's own search."""

from __future__ import annotations

import math

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.neighbors import BallTree, KDTree
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from knnlab.neighbors import kneighbors as brute_kneighbors
from knnlab.options import (
    SCALINGS,
    WEIGHTS,
    check_choice,
    check_n_neighbors,
    check_p,
    fit_scaling,
    resolve_algorithm,
)
from knnlab.voting import class_probabilities, neighbor_weights

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


class _KNNBase(BaseEstimator):
    """Fit storage, parameter checks and the neighbour search shared by the estimators."""

    def __init__(
        self,
        n_neighbors=5,
        *,
        p=2,
        weights="uniform",
        algorithm="auto",
        scale="none",
        n_jobs=None,
    ):
        self.n_neighbors = n_neighbors
        self.p = p
        self.weights = weights
        self.algorithm = algorithm
        self.scale = scale
        self.n_jobs = n_jobs

    def _check_params(self) -> None:
        check_n_neighbors(self.n_neighbors)
        check_p(self.p)
        check_choice("weights", self.weights, WEIGHTS)
        check_choice("scale", self.scale, SCALINGS)

    def _fit_X_only(self, X) -> None:
        # Scaling is fitted here, on the training rows only, and applied to every query.
        self._X_raw = X  # what a saved model stores: refitting reproduces the scaling
        self.scale_center_, self.scale_factor_ = fit_scaling(X, self.scale)
        X = self._transform(X)
        self._fit_X = X
        self.n_samples_fit_ = X.shape[0]
        self.algorithm_ = resolve_algorithm(
            self.algorithm, X.shape[0], X.shape[1], self.n_neighbors
        )
        self._tree = (
            _TREES[self.algorithm_](X, **_tree_metric(float(self.p)))
            if self.algorithm_ in _TREES
            else None
        )

    def _transform(self, X: np.ndarray) -> np.ndarray:
        if self.scale == "none":
            return X
        return (X - self.scale_center_) / self.scale_factor_

    def kneighbors(self, X=None, n_neighbors=None, return_distance=True):
        """Nearest training points of each query.

        X : array-like of shape (n_queries, n_features), or None for the training set itself
            (each point's own index excluded). Returns distances and indices, each of shape
            (n_queries, n_neighbors), or only indices when ``return_distance`` is False.
        """
        check_is_fitted(self)
        k = self.n_neighbors if n_neighbors is None else n_neighbors
        if X is not None:
            X = self._transform(validate_data(self, X, dtype=np.float64, reset=False))
        available = self._fit_X.shape[0] - (1 if X is None else 0)
        if not 1 <= k <= available:
            raise ValueError(
                f"Expected n_neighbors <= n_samples_fit, but n_samples_fit = "
                f"{self._fit_X.shape[0]}, n_neighbors = {k}"
                + (" (the query point itself is excluded)" if X is None else "")
            )
        if self._tree is not None and powers_fit_float64(self._fit_X, X, float(self.p)):
            dist, ind = tree_kneighbors(self._tree, X, k)
        else:
            dist, ind = brute_kneighbors(self._fit_X, X, k, p=float(self.p), n_jobs=self.n_jobs)
        return (dist, ind) if return_distance else ind


class KNNClassifier(ClassifierMixin, _KNNBase):
    """k-nearest-neighbours classifier on knnlab's exact search.

    Parameters
    ----------
    n_neighbors : int, default 5
    p : float, default 2
        Minkowski exponent, ``p >= 1``; ``float("inf")`` for Chebyshev.
    weights : {"uniform", "distance"}, default "uniform"
        ``distance`` weighs votes by ``1 / d``; exact matches (d = 0) take all the weight.
    algorithm : {"auto", "brute", "kd_tree", "ball_tree"}, default "auto"
        ``brute`` is knnlab's own search; the trees are scikit-learn's, used only where
        their float64 p-th powers neither overflow nor underflow for the data at hand
        (:func:`powers_fit_float64`; elsewhere the search is brute). All return the same
        neighbours (same tie rule), so the choice changes time, not predictions.
    n_jobs : int, optional
        Threads for the brute-force search; None uses every core. Inside
        :func:`knnlab.distributed.on_cluster`, the brute-force search runs on the Dask
        cluster instead, split across its workers (same results).

    Ties: equal distances put the lower training index first; equal votes go to the
    smallest class label.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int
    algorithm_ : str
        The algorithm ``auto`` resolved to.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # 2-D y: multilabel / multioutput
        return tags

    def fit(self, X, y):
        """Store the training set (and build the tree, for the tree algorithms).

        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), or (n_samples, n_outputs) for multilabel or
            multioutput classification (one vote per output, as in scikit-learn).
        """
        self._check_params()
        X, y = validate_data(self, X, y, dtype=np.float64, multi_output=True)
        check_classification_targets(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y.ravel()  # a column vector is one output
        if y.ndim == 1:
            self.classes_, self._y = np.unique(y, return_inverse=True)
        else:
            encoded = [np.unique(column, return_inverse=True) for column in y.T]
            self.classes_ = [classes for classes, _ in encoded]
            self._y = np.column_stack([codes for _, codes in encoded])
        self._fit_X_only(X)
        return self

    def _output_probabilities(self, dist, ind) -> list[np.ndarray]:
        """One (n_queries, n_classes_j) array per output j."""
        outputs = (
            [(self.classes_, self._y)]
            if self._y.ndim == 1
            else [(classes, self._y[:, j]) for j, classes in enumerate(self.classes_)]
        )
        return [
            class_probabilities(dist, codes[ind], len(classes), self.weights, [dist.shape[1]])[0]
            for classes, codes in outputs
        ]

    def predict_proba(self, X):
        """Class probabilities: ndarray of shape (n_queries, n_classes), columns in
        ``classes_`` order; for 2-D y, a list of one such array per output."""
        dist, ind = self.kneighbors(X)
        proba = self._output_probabilities(dist, ind)
        return proba[0] if self._y.ndim == 1 else proba

    def predict(self, X):
        """Most probable class of each query: ndarray of shape (n_queries,), or
        (n_queries, n_outputs) for 2-D y. Equal votes go to the smallest class label
        (``classes_`` is sorted and argmax takes the first)."""
        dist, ind = self.kneighbors(X)
        proba = self._output_probabilities(dist, ind)
        if self._y.ndim == 1:
            return self.classes_[np.argmax(proba[0], axis=1)]
        return np.column_stack(
            [classes[np.argmax(p, axis=1)] for classes, p in zip(self.classes_, proba, strict=True)]
        )


class KNNRegressor(RegressorMixin, _KNNBase):
    """k-nearest-neighbours regressor on the same search: the (distance-weighted) mean of
    the neighbours' targets.

    Parameters are those of :class:`KNNClassifier`. ``y`` may be 1-D (n_samples,) or 2-D
    (n_samples, n_outputs), e.g. clean pixels for a denoising model; ``predict`` returns the
    same number of dimensions.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X, y):
        """X : array-like of shape (n_samples, n_features); y : (n_samples,) or
        (n_samples, n_outputs)."""
        self._check_params()
        X, y = validate_data(self, X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        self._y = np.asarray(y, dtype=np.float64)
        self._fit_X_only(X)
        return self

    def predict(self, X):
        """ndarray of shape (n_queries,) or (n_queries, n_outputs)."""
        dist, ind = self.kneighbors(X)
        w = neighbor_weights(dist, self.weights)  # (n_queries, k)
        if self._y.ndim == 1:
            return (self._y[ind] * w).sum(axis=1) / w.sum(axis=1)
        # 2-D targets: a weighted sum over neighbours, as one (k,) x (k, n_outputs) product
        # per query, so no (n_queries, k, n_outputs) array is built.
        out = np.empty((ind.shape[0], self._y.shape[1]))
        for start in range(0, ind.shape[0], 1024):
            block = slice(start, start + 1024)
            out[block] = np.einsum("qk,qko->qo", w[block], self._y[ind[block]])
        return out / w.sum(axis=1, keepdims=True)
