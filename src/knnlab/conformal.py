"""Prediction sets that hold the true class on a promised share of rows: split-conformal
prediction with the LAC score (least ambiguous set-valued classifier; Sadinle, Lei &
Wasserman 2019).

A row's score is one minus the vote of its true class, ``1 - proba[i, y]``: 0 when all
neighbours agree with the label, 1 when none does. Calibration sorts the scores of n rows the
model did not see and keeps the threshold q̂, the ⌈(n + 1) · coverage⌉-th smallest. A new
row's set holds every class c with ``1 - proba[c] <= q̂``. If the calibration rows and the new
row are exchangeable (drawn alike, scored by one fixed model), the new row's score is as
likely to fall at any rank among the n + 1, so it is at most q̂ with probability at least
⌈(n + 1) · coverage⌉ / (n + 1) >= coverage: its set holds its class that often, whatever the
model and the data (split conformal prediction; Vovk, Gammerman & Shafer 2005; Angelopoulos &
Bates 2023). Uniform kNN votes are multiples of 1/k, so scores tie often; ties only make
sets larger (the class of a score equal to q̂ is in), never the coverage smaller.

The guarantee is about the share over rows, not about any one row, and it is a floor, not a
target. Were the votes the true class probabilities, LAC's sets would be the smallest on
average among all with that coverage (Sadinle et al.); with kNN votes they are small where
the neighbours agree and large where the classes overlap. A set may even be empty, where no
class gets a vote of at least 1 - q̂ (LAC's known behaviour: such a row counts as not covered, and
the others make up for it); :func:`coverage_summary` reports how often.

How knnlab calibrates, and what it changes: the pipeline does not set rows aside. It scores
the train split's out-of-fold votes (:func:`knnlab.out_of_fold.out_of_fold`: each row voted
on by a model fitted on the other 4 of 5 folds) and forms the test rows' sets with the model
fitted on all training rows. That is not strict split conformal but its cross-validated
cousin, the K-fold form of what Barber, Candès, Ramdas & Tibshirani (2021) call the
jackknife: the calibration scores come from five models, none of them the one that votes at
test time, so they are not exchangeable with a test row's score and the finite-sample
guarantee above does not hold. No guarantee does in the worst case (their examples make the
jackknife's coverage vanish for an unstable model; their CV+, which would vote a test row
with each fold's model in turn, is guaranteed only 1 - 2 · (1 - coverage)); for a stable
model, one that changes little when a fifth of its rows go, they show the coverage close
to the level. Whether kNN is stable enough is what a simulation checks
(tests/core/test_conformal.py): 200 fresh datasets of 3 or 4 overlapping Gaussian classes,
300 training and 200 test rows, k of 5 to 20 with uniform votes, calibrated and tested as
the pipeline does, covered 0.926 of the test rows on average at 0.9 (mean set size 1.71)
and 0.829 at 0.8 (1.18). Uniform votes are multiples of 1/k, and their ties keep the sets on
the safe side. Distance-weighted votes do not tie, and with them the scheme falls slightly
short where k is large against the training rows: 0.899 ± 0.001 at 0.9 with k = 15 and 300
training rows, 0.895 ± 0.001 with 60 (2000 and 3000 datasets), while k = 5 gave 0.910.

The coverage level is read as the decimal it prints as (0.9 is 9/10), and the rank is
computed exactly (:func:`quantile_rank`): neither the binary value of 0.9 (a little above
9/10) nor float arithmetic (1500 * 0.67 rounds up past 1005) moves it to the next rank.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from fractions import Fraction

import numpy as np

from knnlab.stats import wilson_interval


def _lac(votes: np.ndarray) -> np.ndarray:
    """``1 - votes``: the LAC score of a class with these votes, elementwise.

    The one expression of the score: :func:`conformity_scores` applies it to the true
    classes' votes, :func:`prediction_sets` to every class's. IEEE subtraction is correctly
    rounded, so a vote gives the same score bit for bit wherever it is scored, and a class
    whose vote equals a calibration row's is compared with that row's very score: no float
    tolerance is needed to include it.
    """
    return 1.0 - votes


def _check_level(value: object, name: str) -> float:
    """``value`` as a float, if it is a real number strictly between 0 and 1."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not 0.0 < float(value) < 1.0  # False for NaN too
    ):
        raise ValueError(
            f"{name} must be a number strictly between 0 and 1 (e.g. 0.9), got {value!r}"
        )
    return float(value)


def _check_proba(proba: object, min_rows: int) -> np.ndarray:
    """``proba`` as a float64 (n, n_classes) array of votes in [0, 1], n >= ``min_rows``."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] == 0:
        raise ValueError(
            f"proba must be a 2-D array (n, n_classes) with at least one class, "
            f"got shape {proba.shape}"
        )
    if proba.shape[0] < min_rows:
        raise ValueError(f"proba must have at least {min_rows} row, got none")
    valid = (proba >= 0.0) & (proba <= 1.0)  # False for NaN
    if not valid.all():
        row = int(np.flatnonzero(~valid.all(axis=1))[0])
        raise ValueError(
            f"proba must hold class votes in [0, 1]; row {row} is {proba[row].tolist()} "
            "(NaN: a row out_of_fold left out, whose fold is negative?)"
        )
    return proba


def _check_codes(y_code: object, n: int, n_classes: int) -> np.ndarray:
    """``y_code`` as an int64 (n,) array of columns 0 .. n_classes - 1."""
    y_code = np.asarray(y_code)
    if y_code.ndim != 1 or y_code.shape[0] != n:
        raise ValueError(f"y_code must have shape ({n},), one code per row, got {y_code.shape}")
    if y_code.dtype.kind not in "iu":
        raise ValueError(
            f"y_code must hold integer class codes (columns of proba), got dtype {y_code.dtype}"
        )
    if n and (y_code.min() < 0 or y_code.max() >= n_classes):
        raise ValueError(
            f"y_code must lie in 0..{n_classes - 1} (one per class), got values "
            f"{int(y_code.min())}..{int(y_code.max())}"
        )
    return y_code.astype(np.int64)


def quantile_rank(n: int, coverage: float) -> int:
    """The rank of the conformal threshold among n calibration scores, ⌈(n + 1) · coverage⌉.

    Computed exactly, with ``coverage`` read as the shortest decimal that prints it (``0.9``
    is 9/10): float arithmetic could round the product up past an integer and ask for one
    row more than the guarantee needs.

    Parameters
    ----------
    n : int
        Calibration rows, at least 0.
    coverage : float
        In (0, 1).

    Returns
    -------
    int
        In ``1 .. n + 1``; above ``n`` when there are too few rows for that coverage.

    Raises
    ------
    ValueError
        If ``coverage`` is not in (0, 1) or ``n`` is negative.
    """
    coverage = _check_level(coverage, "coverage")
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    return math.ceil((int(n) + 1) * Fraction(str(coverage)))


def conformity_scores(proba: np.ndarray, y_code: np.ndarray) -> np.ndarray:
    """LAC scores: one minus each row's vote for its true class.

    Parameters
    ----------
    proba : ndarray of shape (n, n_classes)
        Class votes in [0, 1], e.g. :attr:`knnlab.out_of_fold.OutOfFold.proba`.
    y_code : ndarray of shape (n,), int
        Each row's true class as a column of ``proba``.

    Returns
    -------
    ndarray of shape (n,)
        In [0, 1]; low where the votes agree with the label.

    Raises
    ------
    ValueError
        If ``proba`` is not 2-D with votes in [0, 1] (no NaN), or ``y_code`` is not one
        integer code in ``0 .. n_classes - 1`` per row.
    """
    proba = _check_proba(proba, min_rows=0)
    y_code = _check_codes(y_code, *proba.shape)
    return _lac(proba[np.arange(proba.shape[0]), y_code])


def calibrate(proba: np.ndarray, y_code: np.ndarray, coverage: float) -> float:
    """The split-conformal threshold q̂: the ⌈(n + 1) · coverage⌉-th smallest score.

    Parameters
    ----------
    proba : ndarray of shape (n, n_classes)
        Votes of rows the voting model did not see (the calibration rows), in [0, 1].
    y_code : ndarray of shape (n,), int
        Their true classes as columns of ``proba``.
    coverage : float
        The share of new rows whose set should hold their class, in (0, 1), e.g. 0.9.

    Returns
    -------
    float
        q̂, one of the scores; 1.0 when ⌈(n + 1) · coverage⌉ > n: there are too few
        calibration rows to promise that coverage (fewer than coverage / (1 - coverage):
        9 at 0.9), and every class goes into every set.

    Raises
    ------
    ValueError
        If ``coverage`` is not a number in (0, 1), ``proba`` has no row, is not 2-D or
        holds a vote outside [0, 1] (NaN included), or ``y_code`` does not fit it.
    """
    coverage = _check_level(coverage, "coverage")
    proba = _check_proba(proba, min_rows=1)
    scores = conformity_scores(proba, y_code)
    rank = quantile_rank(scores.shape[0], coverage)
    if rank > scores.shape[0]:
        return 1.0
    return float(np.sort(scores)[rank - 1])


def prediction_sets(proba: np.ndarray, threshold: float) -> np.ndarray:
    """Each row's set: the classes whose score ``1 - proba[i, c]`` is at most ``threshold``.

    Parameters
    ----------
    proba : ndarray of shape (n, n_classes)
        Class votes of the rows to predict, in [0, 1], from the model the pipeline keeps.
    threshold : float
        q̂ from :func:`calibrate`, in [0, 1].

    Returns
    -------
    ndarray of bool of shape (n, n_classes)
        ``[i, c]`` is True if class c is in row i's set. A row may have an empty set (no
        class has a vote of at least 1 - q̂: LAC's known behaviour) or every class.

    Raises
    ------
    ValueError
        If ``proba`` is not 2-D with votes in [0, 1], or ``threshold`` is not a number in
        [0, 1].
    """
    proba = _check_proba(proba, min_rows=0)
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, numbers.Real)
        or not 0.0 <= float(threshold) <= 1.0  # False for NaN too
    ):
        raise ValueError(
            f"threshold must be a number in [0, 1] (a score from calibrate), got {threshold!r}"
        )
    # The very expression the calibration scores came from (see _lac): a vote equal to a
    # calibration row's gives its score exactly, so `<=` includes it without a tolerance.
    return _lac(proba) <= float(threshold)


def set_text(labels: Iterable[object]) -> str:
    """A set as people write it: ``{4, 9}``; ``{}`` when empty.

    Parameters
    ----------
    labels : iterable
        The set's class labels, in class order (e.g. ``classes[sets[i]]``); each is written
        with ``str``.

    Returns
    -------
    str
    """
    return "{" + ", ".join(str(label) for label in labels) + "}"


def coverage_summary(
    sets: np.ndarray, y_code: np.ndarray, classes: np.ndarray, confidence: float = 0.95
) -> dict:
    """How often the sets held the true class, how large they were, overall and per class.

    Parameters
    ----------
    sets : ndarray of bool of shape (n, n_classes)
        From :func:`prediction_sets`, n >= 1.
    y_code : ndarray of shape (n,), int
        The rows' true classes as columns of ``sets``.
    classes : ndarray of shape (n_classes,)
        The class labels, in column order.
    confidence : float, default 0.95
        Of the Wilson interval of the coverage, in (0, 1).

    Returns
    -------
    dict
        Plain Python types, ready for JSON: ``coverage`` (share of rows whose set holds
        their class), ``coverage_low`` and ``coverage_high`` (its Wilson interval),
        ``mean_set_size``, ``empty_share``, ``singleton_share``, ``n``, and ``per_class``:
        one ``{"class": str, "n": int, "coverage": float, "mean_set_size": float}`` per
        class in class order, with None for both shares of a class that has no row.

    Raises
    ------
    ValueError
        If ``sets`` is not a boolean (n, n_classes) array with n >= 1, ``y_code`` does not
        fit it, or ``confidence`` is not in (0, 1).
    """
    confidence = _check_level(confidence, "confidence")
    sets = np.asarray(sets)
    classes = np.asarray(classes)
    if sets.dtype != np.bool_ or sets.ndim != 2 or sets.shape[1] != classes.shape[0]:
        raise ValueError(
            f"sets must be a boolean array (n, n_classes={classes.shape[0]}), one column per "
            f"class, got dtype {sets.dtype} and shape {sets.shape}"
        )
    n = sets.shape[0]
    if n == 0:
        raise ValueError("sets must have at least one row, got none")
    y_code = _check_codes(y_code, n, sets.shape[1])
    covered = sets[np.arange(n), y_code]
    size = sets.sum(axis=1)
    low, high = wilson_interval(int(covered.sum()), n, confidence)
    per_class = []
    for code, label in enumerate(classes):
        rows = y_code == code
        count = int(rows.sum())
        per_class.append(
            {
                "class": str(label),
                "n": count,
                "coverage": float(covered[rows].mean()) if count else None,
                "mean_set_size": float(size[rows].mean()) if count else None,
            }
        )
    return {
        "coverage": float(covered.mean()),
        "coverage_low": float(low),
        "coverage_high": float(high),
        "mean_set_size": float(size.mean()),
        "empty_share": float((size == 0).mean()),
        "singleton_share": float((size == 1).mean()),
        "n": int(n),
        "per_class": per_class,
    }
