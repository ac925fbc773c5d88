"""Explain a prediction by its neighbours: the most confident errors of the test split and
the training rows that voted for them (drawn by :mod:`knnlab.pipeline.presentation.explanations`).

Pure functions: arrays and a fitted :class:`knnlab.estimators.KNNClassifier` in, an
:class:`Explanation` out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _predicted_confidence(y_pred: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Probability of the predicted class of each row: (n,) from y_pred (n,) and proba
    (n, n_classes) with columns in ``classes`` order."""
    y_pred, proba, classes = np.asarray(y_pred), np.asarray(proba), np.asarray(classes)
    if y_pred.ndim != 1 or proba.shape != (len(y_pred), len(classes)):
        raise ValueError(
            f"Expected y_pred of shape (n,) and proba of shape (n, n_classes) = "
            f"({len(y_pred)}, {len(classes)}), but got y_pred {y_pred.shape} and proba "
            f"{proba.shape}; pass predict_proba's output with its classes_"
        )
    is_class = y_pred[:, None] == classes[None, :]  # (n, n_classes)
    missing = ~is_class.any(axis=1)
    if missing.any():
        raise ValueError(
            f"Expected every predicted label among classes {classes.tolist()}, but "
            f"{y_pred[missing][:5].tolist()} are not; pass the model's classes_"
        )
    return proba[np.arange(len(y_pred)), is_class.argmax(axis=1)]


def worst_errors(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    limit: int = 6,
) -> np.ndarray:
    """Row indices of the most confident wrong predictions.

    Parameters
    ----------
    y_true, y_pred : ndarray of shape (n,)
    proba : ndarray of shape (n, n_classes)
        Class probabilities, columns in ``classes`` order; the confidence of a row is the
        probability of its predicted class.
    classes : ndarray of shape (n_classes,)
    limit : int, default 6
        At most this many rows.

    Returns
    -------
    ndarray of shape (min(limit, n_errors),), int64
        Rows where ``y_pred != y_true``, by confidence descending; equal confidences in
        ascending row order. Empty when there are no errors.
    """
    if isinstance(limit, bool) or not isinstance(limit, int | np.integer) or limit < 0:
        raise ValueError(f"Expected limit to be an integer >= 0, got {limit!r}")
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"Expected y_true and y_pred of the same shape (n,), got {y_true.shape} and "
            f"{y_pred.shape}"
        )
    confidence = _predicted_confidence(y_pred, proba, classes)
    wrong = np.flatnonzero(y_true != y_pred)  # ascending rows
    # A stable sort of the negated confidences keeps equal ones in ascending row order.
    order = np.argsort(-confidence[wrong], kind="stable")
    return wrong[order[:limit]].astype(np.int64)


@dataclass(frozen=True)
class Explanation:
    """Explained test rows and their k nearest training rows (m rows, k neighbours).

    rows : (m,) test-split row indices. y_true, y_pred : (m,) labels. confidence : (m,) the
    probability of the predicted class. neighbor_index : (m, k) training-row indices, nearest
    first (equal distances: lower index first). neighbor_label : (m, k) their labels.
    neighbor_distance : (m, k) their distances in the model's feature space (after its
    scaling, if any). predicted_votes : (m,) how many of the k neighbours have the predicted
    label. With uniform weights ``predicted_votes / k`` is the confidence; with distance
    weights the confidence is the distance-weighted share and may differ.
    """

    rows: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    confidence: np.ndarray
    neighbor_index: np.ndarray
    neighbor_label: np.ndarray
    neighbor_distance: np.ndarray
    predicted_votes: np.ndarray

    @property
    def k(self) -> int:
        return self.neighbor_index.shape[1]

    @property
    def vote_share(self) -> np.ndarray:
        """(m,) share of the k neighbours that have the predicted label."""
        return self.predicted_votes / self.k

    def __len__(self) -> int:
        return len(self.rows)


def explain_rows(
    model,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    rows: np.ndarray,
) -> Explanation:
    """The k nearest training rows of some test rows (k = ``model.n_neighbors``).

    Parameters
    ----------
    model : fitted :class:`knnlab.estimators.KNNClassifier` (one output)
        Fitted on ``X_train, y_train``; its ``kneighbors`` applies its scaling.
    X_train : ndarray of shape (n_train, n_features)
    y_train : ndarray of shape (n_train,)
    X_test : ndarray of shape (n_test, n_features)
    y_true, y_pred : ndarray of shape (n_test,)
    proba : ndarray of shape (n_test, n_classes), columns in ``classes`` order
    classes : ndarray of shape (n_classes,)
    rows : array-like of shape (m,)
        Test rows to explain, e.g. from :func:`worst_errors`.

    Returns
    -------
    Explanation
        With m rows and k neighbours each.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    X_test, y_train = np.asarray(X_test), np.asarray(y_train)
    n_test = len(X_test)
    if rows.size and (rows.min() < 0 or rows.max() >= n_test):
        raise ValueError(
            f"Expected test rows in 0..{n_test - 1}, got {rows[(rows < 0) | (rows >= n_test)]}"
        )
    if len(X_train) != model.n_samples_fit_ or len(y_train) != len(X_train):
        raise ValueError(
            f"Expected the {model.n_samples_fit_} training rows the model was fitted on, got "
            f"X_train with {len(X_train)} and y_train with {len(y_train)} rows; pass the "
            f"train split the model was fitted on"
        )
    if not len(y_true) == len(y_pred) == n_test:
        raise ValueError(
            f"Expected y_true and y_pred with one label per test row ({n_test}), got "
            f"{len(y_true)} and {len(y_pred)}"
        )
    y_true, y_pred = np.asarray(y_true)[rows], np.asarray(y_pred)[rows]
    confidence = _predicted_confidence(y_pred, np.asarray(proba)[rows], classes)
    k = model.n_neighbors
    if rows.size:
        distance, index = model.kneighbors(X_test[rows])  # (m, k) each
    else:  # kneighbors refuses zero queries
        distance, index = np.empty((0, k)), np.empty((0, k), dtype=np.int64)
    label = y_train[index]  # (m, k)
    return Explanation(
        rows=rows,
        y_true=y_true,
        y_pred=y_pred,
        confidence=confidence,
        neighbor_index=index,
        neighbor_label=label,
        neighbor_distance=distance,
        predicted_votes=(label == y_pred[:, None]).sum(axis=1),
    )


def explain_worst_errors(
    model,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    limit: int = 6,
) -> Explanation:
    """:func:`explain_rows` of the :func:`worst_errors` (at most ``limit``): why the model
    was most confidently wrong. Arguments as those two functions take them."""
    rows = worst_errors(y_true, y_pred, proba, classes, limit)
    return explain_rows(model, X_train, y_train, X_test, y_true, y_pred, proba, classes, rows)
