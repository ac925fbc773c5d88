"""Slow, obviously-correct references: Python loops over samples, no vectorization.

The vectorized code in knnlab is tested against these (and against scikit-learn).
"""

from __future__ import annotations

import math
import sys
from decimal import MAX_EMAX, MIN_EMIN, Decimal, localcontext
from functools import lru_cache

import numpy as np


def minkowski(a, b, p: float) -> float:
    diffs = [abs(float(x) - float(y)) for x, y in zip(a, b, strict=True)]
    if math.isinf(p):
        return max(diffs, default=0.0)
    try:
        terms = [d**p for d in diffs]
    except OverflowError:  # Python floats raise rather than return inf
        terms = None
    largest = max(terms, default=0.0) if terms is not None else math.inf
    if (
        terms is None
        or not len(diffs) * 2.0**-1000 <= largest <= sys.float_info.max / (2 * len(diffs))
        or math.isinf(_plain_sum(terms))
    ):
        # The largest power left float64's normal range (large p, or only tiny differences
        # such as 1e-196 squared): the float sum would be inf or lose the differences;
        # decimal is exact. Smaller powers that underflow beside a normal largest one are
        # below the float sum's own rounding (2^-1000 of it at most, per feature): the
        # definition's float sum is the distance, as in knnlab's contract.
        return float(minkowski_exact(a, b, p))
    return _plain_sum(terms) ** (1.0 / p)


def _plain_sum(terms) -> float:
    """Left to right, plain float additions, as knnlab adds its p-th powers (the built-in
    sum() compensates its rounding since Python 3.12, which reorders near-ties)."""
    total = 0.0
    for term in terms:
        total += term
    return total


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


@lru_cache(maxsize=4096)
def _int_power(v: int, p: int) -> int:
    return v**p


def powered_sum_int(a, b, p: int) -> int:
    """``sum_f |a_f - b_f| ** p`` exactly, as a Python integer: integer-valued a, b and an
    integer p (no rounding at any p; 16 ** 1000 has 1205 digits)."""
    return sum(_int_power(abs(int(x) - int(y)), p) for x, y in zip(a, b, strict=True))


def root_exact(s: int, p: int, digits: int = 50) -> Decimal:
    """``s ** (1/p)`` to about ``digits`` significant digits (decimal arithmetic; s is rounded
    to ``digits + 10`` digits first, which moves the root by far less than 10**-digits)."""
    with localcontext() as ctx:
        ctx.prec, ctx.Emax, ctx.Emin = digits + 10, MAX_EMAX, MIN_EMIN
        return ctx.create_decimal(s) ** (1 / Decimal(p)) if s else Decimal(0)


@lru_cache(maxsize=65536)
def _scaled_power(d: Decimal, m: Decimal, p: float, prec: int) -> Decimal:
    """(d / m) ** p at ``prec`` digits (cached: integer data repeat a few (d, m) pairs)."""
    with localcontext() as ctx:
        ctx.prec, ctx.Emax, ctx.Emin = prec, MAX_EMAX, MIN_EMIN
        return (d / m) ** Decimal(p)


def minkowski_exact(a, b, p: float, digits: int = 40) -> Decimal:
    """The Minkowski distance to about ``digits`` significant digits at any p >= 1 or inf,
    from the exact binary values of a and b, in decimal arithmetic (no float rounding).

    Computed as ``m * (sum_f (|a_f - b_f| / m) ** p) ** (1/p)`` with ``m = max_f |a_f - b_f|``:
    the same number as the definition, but no power leaves decimal's exponent range even at
    p = 1e300 (terms below it underflow to 0, far under the precision kept).
    """
    prec = digits + 10
    with localcontext() as ctx:
        ctx.prec, ctx.Emax, ctx.Emin = prec, MAX_EMAX, MIN_EMIN
        diffs = [abs(Decimal(float(x)) - Decimal(float(y))) for x, y in zip(a, b, strict=True)]
        m = max(diffs, default=Decimal(0))
        if m == 0 or math.isinf(p):
            return m
        s = sum((_scaled_power(d, m, float(p), prec) for d in diffs), Decimal(0))
        return m * s ** (1 / Decimal(p))


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
