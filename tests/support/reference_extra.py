"""Slow references that :mod:`tests.support.reference` lacks, built on its loop search."""

from __future__ import annotations

import numpy as np

from . import reference


def knn_regression(X_train, y_train, X_query, k: int, p: float, weights: str):
    """Mean of the k nearest targets, one query at a time: (n_queries,) for 1-D y_train,
    (n_queries, n_outputs) for 2-D. Under "distance" each neighbour weighs 1 / d, and a query
    with exact matches (d = 0) averages those alone."""
    y_train = np.asarray(y_train, dtype=np.float64)
    targets = y_train.reshape(len(y_train), -1)  # (n_train, n_outputs)
    dist, ind = reference.kneighbors(X_train, X_query, k, p)
    out = []
    for d_row, i_row in zip(dist, ind, strict=True):
        exact = [i for d, i in zip(d_row, i_row, strict=True) if d == 0]
        if weights == "uniform":
            pairs = [(1.0, i) for i in i_row]
        elif exact:
            pairs = [(1.0, i) for i in exact]
        else:
            pairs = [(1.0 / d, i) for d, i in zip(d_row, i_row, strict=True)]
        total = sum(w for w, _ in pairs)
        n_outputs = targets.shape[1]
        out.append([sum(w * targets[i, o] for w, i in pairs) / total for o in range(n_outputs)])
    result = np.array(out)
    return result if y_train.ndim == 2 else result[:, 0]
