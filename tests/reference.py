"""Slow, obviously-correct references: Python loops over samples, no vectorization.

The vectorized code in knnlab is tested against these (and against scikit-learn).
"""

from __future__ import annotations

import math

import numpy as np


def minkowski(a, b, p: float) -> float:
    diffs = [abs(float(x) - float(y)) for x, y in zip(a, b, strict=True)]
    if math.isinf(p):
        return max(diffs, default=0.0)
    return sum(d**p for d in diffs) ** (1.0 / p)


def kneighbors(X_train, X_query, k: int, p: float):
    """Sort every training point by (distance, index), take the first k."""
    self_query = X_query is None
    queries = X_train if self_query else X_query
    dist_rows, ind_rows = [], []
    for q, query in enumerate(queries):
        pairs = [
            (minkowski(query, x, p), j)
            for j, x in enumerate(X_train)
            if not (self_query and j == q)
        ]
        pairs.sort()
        dist_rows.append([d for d, _ in pairs[:k]])
        ind_rows.append([j for _, j in pairs[:k]])
    return np.array(dist_rows), np.array(ind_rows)


def knn_proba(X_train, y_train, X_query, k: int, p: float, weights: str):
    """Class probabilities by weighted voting, one query at a time."""
    classes = sorted(set(y_train.tolist()))
    dist, ind = kneighbors(X_train, X_query, k, p)
    out = []
    for d_row, i_row in zip(dist, ind, strict=True):
        votes = dict.fromkeys(classes, 0.0)
        exact = [i for d, i in zip(d_row, i_row, strict=True) if d == 0]
        for d, i in zip(d_row, i_row, strict=True):
            if weights == "uniform":
                w = 1.0
            elif exact:
                w = 1.0 if d == 0 else 0.0
            else:
                w = 1.0 / d
            votes[y_train[i].item()] += w
        total = sum(votes.values())
        out.append([votes[c] / total for c in classes])
    return np.array(out)


def confusion(y_true, y_pred, labels):
    index = {label: i for i, label in enumerate(labels)}
    cm = [[0] * len(labels) for _ in labels]
    for t, p in zip(y_true, y_pred, strict=True):
        cm[index[t]][index[p]] += 1
    return np.array(cm)


def auc(y_true_binary, scores) -> float:
    """Probability that a random positive outscores a random negative (ties: one half)."""
    positives = [s for s, t in zip(scores, y_true_binary, strict=True) if t]
    negatives = [s for s, t in zip(scores, y_true_binary, strict=True) if not t]
    wins = 0.0
    for sp in positives:
        for sn in negatives:
            wins += 1.0 if sp > sn else 0.5 if sp == sn else 0.0
    return wins / (len(positives) * len(negatives))
