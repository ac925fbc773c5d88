"""Suspicious labels: training rows whose out-of-fold neighbours vote against their label.

The score of a row is the share of its neighbours' vote that goes to other classes,
``1 - p(label)``, where ``p`` is the vote of the k nearest rows of the other folds
(:mod:`knnlab.out_of_fold`), weighted as the configured model weighs them. A row the model
never saw, surrounded by another class, is either mislabelled or lies where the classes
overlap; either way a person should look at it. This is cleanlab's "self-confidence" score
with kNN votes as the probabilities.

A vote of k uniform neighbours takes k + 1 values, so many rows tie; among equal scores a
row whose leading other class is stronger (a larger margin ``max other p - p(label)``)
comes first, then the row whose voters lie nearer (mean distance: a row deep inside another
class's rows before one at its edge), then the lower row index.
"""

from __future__ import annotations

import numpy as np

from knnlab.out_of_fold import OutOfFold


def suspicion(oof: OutOfFold) -> np.ndarray:
    """(n,) the share of each row's out-of-fold vote against its label, in [0, 1]."""
    return 1.0 - oof.proba[np.arange(len(oof.y_code)), oof.y_code]


def _other_votes(oof: OutOfFold) -> np.ndarray:
    """(n, n_classes) the votes with each row's own label's set to -inf."""
    others = oof.proba.copy()
    others[np.arange(len(oof.y_code)), oof.y_code] = -np.inf
    return others


def margin(oof: OutOfFold) -> np.ndarray:
    """(n,) the strongest other class's vote minus the label's, in [-1, 1]."""
    own = oof.proba[np.arange(len(oof.y_code)), oof.y_code]
    return _other_votes(oof).max(axis=1) - own


def suggested_code(oof: OutOfFold) -> np.ndarray:
    """(n,) the class (column of ``proba``) with the largest vote other than the label;
    equal votes go to the smaller class."""
    return _other_votes(oof).argmax(axis=1)


def most_suspicious(oof: OutOfFold) -> np.ndarray:
    """(n,) row indices, most suspicious first: by :func:`suspicion`, then
    :func:`margin`, both descending, then the voters' mean distance, then row index."""
    rows = np.arange(len(oof.y_code))
    nearness = oof.distances.mean(axis=1)
    return np.lexsort((rows, nearness, -margin(oof), -suspicion(oof)))
