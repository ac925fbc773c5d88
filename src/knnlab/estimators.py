"""scikit-learn-compatible k-nearest-neighbours estimators on knnlab's own search."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from knnlab import algorithms, search
from knnlab.options import (
    SCALINGS,
    WEIGHTS,
    check_choice,
    check_k_fits,
    check_n_neighbors,
    check_p,
    fit_scaling,
)
from knnlab.voting import class_probabilities, neighbor_weights


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
        index=None,
        random_state=0,
        n_jobs=None,
    ):
        self.n_neighbors = n_neighbors
        self.p = p
        self.weights = weights
        self.algorithm = algorithm
        self.scale = scale
        self.index = index
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _check_params(self) -> None:
        check_n_neighbors(self.n_neighbors)
        check_p(self.p)
        check_choice("weights", self.weights, WEIGHTS)
        check_choice("scale", self.scale, SCALINGS)
        check_choice("algorithm", self.algorithm, algorithms.ALGORITHMS)
        problems = algorithms.index_option_problems(self.algorithm, self.index or {}, self.p)
        if problems:
            key, message = problems[0]
            raise ValueError(f"{key} {message}")
        if algorithms.is_approximate(self.algorithm) and not algorithms.backend_available(
            self.algorithm
        ):
            raise algorithms.MissingBackendError(algorithms.missing_backend_message(self.algorithm))

    def _fit_X_only(self, X, index_state=None) -> None:
        # Scaling is fitted here, on the training rows only, and applied to every query.
        self._X_raw = X  # what a saved model stores: refitting reproduces the scaling
        self.scale_center_, self.scale_factor_ = fit_scaling(X, self.scale)
        X = self._transform(X)
        self._fit_X = X
        self.n_samples_fit_ = X.shape[0]
        self.algorithm_ = algorithms.resolve_algorithm(
            self.algorithm, X.shape[0], X.shape[1], self.n_neighbors
        )
        self._index = search.build_index(
            self.algorithm_,
            X,
            p=float(self.p),
            options=self.index,
            seed=self.random_state,
            n_jobs=self.n_jobs,
            state=index_state,
        )
        # The options as built (ivf's nlist: null resolved to the cell count).
        self.index_options_ = getattr(
            self._index, "options", algorithms.index_options(self.algorithm_, self.index)
        )

    @property
    def exact_(self) -> bool:
        """Whether the fitted algorithm returns the exact neighbours."""
        check_is_fitted(self)
        return not algorithms.is_approximate(self.algorithm_)

    def index_state(self) -> np.ndarray | None:
        """The fitted index's bytes, as a model file keeps them.

        Returns
        -------
        ndarray of uint8 of shape (n_bytes,) or None
            None for exact search, which keeps only the training set.
        """
        check_is_fitted(self)
        return self._index.state()

    def prepare(self):
        """Prepare the fitted search for single requests now, not at the first one: the
        index's per-training-set work and the compiled kernels' loading (a server's start).

        Returns
        -------
        self
        """
        check_is_fitted(self)
        if hasattr(self._index, "prepare"):
            self._index.prepare()
        # One query of a training row loads the kernels its path needs.
        self._index.kneighbors(self._fit_X[:1], min(self.n_neighbors, self.n_samples_fit_))
        return self

    def _transform(self, X: np.ndarray) -> np.ndarray:
        if self.scale == "none":
            return X
        return (X - self.scale_center_) / self.scale_factor_

    def kneighbors(self, X=None, n_neighbors=None, return_distance=True):
        """Nearest training points of each query.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features), optional
            Queries, scaled as the training set was; None for the training set itself
            (each point's own index excluded).
        n_neighbors : int, optional
            k; default the estimator's ``n_neighbors``.
        return_distance : bool, default True
            Whether to return the distances as well as the indices.

        Returns
        -------
        distances : ndarray of shape (n_queries, n_neighbors)
            Sorted ascending along each row; only when ``return_distance`` is True.
        indices : ndarray of shape (n_queries, n_neighbors)
            Training-row indices; among equal distances the lower index comes first.

        Raises
        ------
        ValueError
            If k is not in ``1 .. n_samples_fit_`` (``n_samples_fit_ - 1`` when X is None),
            or X does not have the training set's number of features.
        """
        check_is_fitted(self)
        # n_neighbors and p were checked by fit; an explicit k is checked here, once.
        k = self.n_neighbors if n_neighbors is None else check_n_neighbors(n_neighbors)
        if X is not None:
            X = self._transform(validate_data(self, X, dtype=np.float64, reset=False))
        check_k_fits(k, self._fit_X.shape[0], queries_are_training_rows=X is None)
        dist, ind = self._index.kneighbors(X, k)
        return (dist, ind) if return_distance else ind


class KNNClassifier(ClassifierMixin, _KNNBase):
    """k-nearest-neighbours classifier on knnlab's exact search.

    Parameters
    ----------
    n_neighbors : int, default 5
        k, the neighbours that vote.
    p : float, default 2
        Minkowski exponent, ``p >= 1``; ``float("inf")`` for Chebyshev.
    weights : {"uniform", "distance"}, default "uniform"
        ``distance`` weighs votes by ``1 / d``; exact matches (d = 0) take all the weight.
    algorithm : {"auto", "brute", "kd_tree", "ball_tree", "hnsw", "ivf"}, default "auto"
        ``brute`` is knnlab's own search; the trees are scikit-learn's, used only where
        their float64 p-th powers neither overflow nor underflow for the data at hand
        (:func:`knnlab.backends.trees.powers_fit_float64`; elsewhere the search is brute).
        These return the same neighbours (same tie rule), so the choice changes time, not
        predictions. ``hnsw`` and ``ivf`` are approximate indexes (faiss, the ``ann``
        extra; p = 2 only): faster, but a query may miss some of its true neighbours
        (:mod:`knnlab.search`). ``auto`` never picks them.
    scale : {"none", "standard", "minmax"}, default "none"
        Feature scaling, fitted on the training rows in ``fit`` (mean 0 and std 1, or
        0..1; constant columns are left unscaled) and applied to every query.
    index : dict, optional
        Options of an approximate index (``hnsw``: ``M``, ``ef_construction``,
        ``ef_search``; ``ivf``: ``nlist``, ``nprobe``); unset ones take the registry's
        defaults (:data:`knnlab.algorithms.BACKENDS`). Must be empty for the exact algorithms.
    random_state : int, default 0
        Seeds an approximate index's build (HNSW levels, IVF k-means); same seed, same data,
        same options: the same index.
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
    index_options_ : dict
        The approximate index's options, defaults filled in (empty for exact search).
    exact_ : bool
        Whether the fitted algorithm returns the exact neighbours.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # 2-D y: multilabel / multioutput
        return tags

    def fit(self, X, y, index_state=None):
        """Store the training set and build the index of the algorithm (a tree, an
        approximate index; none for brute force).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training points.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Class labels; 2-D for multilabel or multioutput classification (one vote per
            output, as in scikit-learn). A single column counts as 1-D.
        index_state : ndarray of uint8 of shape (n_bytes,), optional
            An approximate index as :meth:`index_state` returned it for the same X and
            params (a saved model): loaded instead of built.

        Returns
        -------
        self : KNNClassifier
            The fitted estimator.

        Raises
        ------
        TypeError
            If ``n_neighbors`` is not an integer or ``p`` not a real number.
        ValueError
            If a parameter's value is not allowed (``n_neighbors < 1``, ``p < 1``, an
            unknown ``weights``, ``scale`` or ``algorithm``, an index option the algorithm
            does not take or out of its range, p other than 2 for an approximate
            algorithm), or X or y fails scikit-learn's validation (y must be class labels).
        knnlab.algorithms.MissingBackendError
            If an approximate algorithm's library is not installed.
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
        self._fit_X_only(X, index_state)
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
        """Class probabilities: the (distance-weighted) share of each class among the
        neighbours.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Queries; None for the training set itself (each point's own index excluded).

        Returns
        -------
        ndarray of shape (n_queries, n_classes) or list of ndarray
            Columns in ``classes_`` order; for 2-D y, a list of one such array per output,
            output j of shape (n_queries, n_classes_j).

        Raises
        ------
        ValueError
            As :meth:`kneighbors`.
        """
        dist, ind = self.kneighbors(X)
        proba = self._output_probabilities(dist, ind)
        return proba[0] if self._y.ndim == 1 else proba

    def predict(self, X):
        """Most probable class of each query.

        Equal votes go to the smallest class label (``classes_`` is sorted and argmax takes
        the first).

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Queries; None for the training set itself (each point's own index excluded).

        Returns
        -------
        ndarray of shape (n_queries,) or (n_queries, n_outputs)
            The latter for 2-D y.

        Raises
        ------
        ValueError
            As :meth:`kneighbors`.
        """
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

    ``y`` may be 1-D (n_samples,) or 2-D (n_samples, n_outputs), e.g. clean pixels for a
    denoising model; ``predict`` returns the same number of dimensions.

    Parameters
    ----------
    n_neighbors : int, default 5
        k, the neighbours averaged.
    p : float, default 2
        As in :class:`KNNClassifier`.
    weights : {"uniform", "distance"}, default "uniform"
        ``distance`` weighs targets by ``1 / d``; a query's exact matches (d = 0) take all
        the weight.
    algorithm : {"auto", "brute", "kd_tree", "ball_tree", "hnsw", "ivf"}, default "auto"
        As in :class:`KNNClassifier`.
    scale : {"none", "standard", "minmax"}, default "none"
        As in :class:`KNNClassifier`.
    index : dict, optional
        As in :class:`KNNClassifier`.
    random_state : int, default 0
        As in :class:`KNNClassifier`.
    n_jobs : int, optional
        As in :class:`KNNClassifier`.

    Attributes
    ----------
    n_features_in_ : int
    algorithm_ : str
        The algorithm ``auto`` resolved to.
    index_options_ : dict
        The approximate index's options, defaults filled in (empty for exact search).
    exact_ : bool
        Whether the fitted algorithm returns the exact neighbours.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X, y):
        """Store the training set and build the index of the algorithm.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training points.
        y : array-like of shape (n_samples,) or (n_samples, n_outputs)
            Numeric targets.

        Returns
        -------
        self : KNNRegressor
            The fitted estimator.

        Raises
        ------
        TypeError
            If ``n_neighbors`` is not an integer or ``p`` not a real number.
        ValueError
            If a parameter's value is not allowed (as in :meth:`KNNClassifier.fit`), or X
            or y fails scikit-learn's validation (y must be numeric).
        knnlab.algorithms.MissingBackendError
            If an approximate algorithm's library is not installed.
        """
        self._check_params()
        X, y = validate_data(self, X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        self._y = np.asarray(y, dtype=np.float64)
        self._fit_X_only(X)
        return self

    def predict(self, X):
        """The (distance-weighted) mean of each query's neighbours' targets.

        Parameters
        ----------
        X : array-like of shape (n_queries, n_features)
            Queries; None for the training set itself (each point's own index excluded).

        Returns
        -------
        ndarray of shape (n_queries,) or (n_queries, n_outputs)
            As many dimensions as the fitted y.

        Raises
        ------
        ValueError
            As :meth:`kneighbors`.
        """
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
