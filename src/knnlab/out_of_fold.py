"""Out-of-fold neighbours: each training row's neighbours and class votes from a model that
never saw it, the one search that prediction sets (:mod:`knnlab.conformal`) and suspicious
labels (:mod:`knnlab.label_issues`) both read.

The folds are stratified and unshuffled (rows in their stored order, no random choice): the
train split is already in a seeded random order, so the same split gives the same folds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold

from knnlab.estimators import KNNClassifier
from knnlab.progress import Progress

N_FOLDS = 5


@dataclass(frozen=True)
class OutOfFold:
    """What the fold models said about the rows they did not see.

    proba : ndarray of shape (n, n_classes)
        Class votes of each row, columns in ``classes`` order.
    neighbors : ndarray of shape (n, k), int64
        The rows (indices into the whole X) that voted, nearest first.
    distances : ndarray of shape (n, k)
        Their distances.
    folds : ndarray of shape (n,), int64
        The fold that held each row out.
    classes : ndarray of shape (n_classes,)
    y_code : ndarray of shape (n,), int64
        Each row's label as a column of ``proba``.
    """

    proba: np.ndarray
    neighbors: np.ndarray
    distances: np.ndarray
    folds: np.ndarray
    classes: np.ndarray
    y_code: np.ndarray

    def predicted_code(self) -> np.ndarray:
        """(n,) the fold models' predictions as columns of ``proba``: equal votes go to the
        smallest class, as :meth:`KNNClassifier.predict` does."""
        return self.proba.argmax(axis=1)

    def accuracy(self, rows: np.ndarray | None = None) -> float:
        """Out-of-fold accuracy, of every row or of ``rows`` (a boolean mask or indices)."""
        right = self.predicted_code() == self.y_code
        return float(right.mean() if rows is None else right[rows].mean())


def fold_ids(y: np.ndarray, n_folds: int = N_FOLDS) -> np.ndarray:
    """(n,) the stratified, unshuffled fold of each row of labels ``y`` (n,)."""
    folds = np.empty(len(y), dtype=np.int64)
    for fold, (_, held_out) in enumerate(StratifiedKFold(n_folds).split(np.zeros(len(y)), y)):
        folds[held_out] = fold
    return folds


def out_of_fold(
    model: KNNClassifier, X: np.ndarray, y: np.ndarray, folds: np.ndarray | None = None
) -> OutOfFold:
    """Fit a clone of ``model`` on all folds but one and ask it about the held-out fold, for
    every fold.

    Parameters
    ----------
    model : KNNClassifier
        Unfitted (its parameters are used); k must not exceed the rows outside any fold.
    X : ndarray of shape (n, n_features)
    y : ndarray of shape (n,)
    folds : ndarray of shape (n,), optional
        Fold id of each row (0..n_folds-1); default :func:`fold_ids`. A row whose fold is
        negative is left out: never fitted on, never asked about (its outputs stay NaN / -1).

    Returns
    -------
    OutOfFold
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    folds = fold_ids(y) if folds is None else np.asarray(folds)
    classes, y_code = np.unique(y, return_inverse=True)
    k = model.n_neighbors
    proba = np.full((len(y), len(classes)), np.nan)
    neighbors = np.full((len(y), k), -1, dtype=np.int64)
    distances = np.full((len(y), k), np.nan)
    fold_list = [f for f in np.unique(folds) if f >= 0]
    description = f"out-of-fold neighbours of {int((folds >= 0).sum()):,} training rows"
    with Progress(len(fold_list), description, "fold") as progress:
        for fold in fold_list:
            fit_rows = np.flatnonzero((folds >= 0) & (folds != fold))
            held_out = np.flatnonzero(folds == fold)
            fitted = clone(model).fit(X[fit_rows], y[fit_rows])
            dist, ind = fitted.kneighbors(X[held_out])
            # A fold that lacks a class votes 0 for it: put its columns where they belong.
            columns = np.searchsorted(classes, fitted.classes_)
            fold_proba = np.zeros((len(held_out), len(classes)))
            fold_proba[:, columns] = fitted._output_probabilities(dist, ind)[0]
            proba[held_out] = fold_proba
            neighbors[held_out] = fit_rows[ind]
            distances[held_out] = dist
            progress.update()
    return OutOfFold(proba, neighbors, distances, folds, classes, y_code.astype(np.int64))
