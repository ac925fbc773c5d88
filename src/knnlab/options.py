"""The options of a kNN model and their rules, declared once.

The estimators, the grid search, the voting code and ``params.yaml``'s validation all import
these, so an allowed value or a range cannot drift between them. The algorithms and their
index options are declared with their engines, in :mod:`knnlab.search`. Each check raises the error
an estimator raises (``TypeError`` for a wrong type, ``ValueError`` for a wrong value) and
names the parameter, the value and what is allowed; :mod:`knnlab.pipeline.io.params` turns the
same rules into messages about ``params.yaml`` keys.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

WEIGHTS = ("uniform", "distance")
SCALINGS = ("none", "standard", "minmax")
SCORERS = ("accuracy", "f1_macro", "roc_auc_ovr")
GRID_KEYS = ("n_neighbors", "p", "weights", "algorithm")
# How the grid search picks its candidate: the highest mean CV score, or the one-standard-
# error rule (the largest k within one SE of the best; knnlab.model_selection).
SELECTIONS = ("best", "one_se")

P_ALLOWED = "a number >= 1 (Minkowski p; inf for Chebyshev)"


# numpy's integer and float types register as Integral and Real; numpy's bool does not.
# No numpy import here: params.yaml's validation, and so the command line, use these.


def is_count(value) -> bool:
    """An integer (not a bool: ``n_neighbors: true`` is a typo, not 1)."""
    return isinstance(value, Integral) and not isinstance(value, bool)


def is_minkowski_p(value) -> bool:
    """A real number >= 1, infinity included (Chebyshev); not a bool, not NaN."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return False
    return bool(not math.isnan(value) and value >= 1)


def check_n_neighbors(value) -> int:
    if not is_count(value):
        raise TypeError(f"n_neighbors must be an integer, got {value!r}")
    if value < 1:
        raise ValueError(f"Expected n_neighbors >= 1, but n_neighbors = {value}")
    return int(value)


def check_k_fits(n_neighbors: int, n_samples_fit: int, queries_are_training_rows: bool) -> int:
    """The rule between k (already an integer >= 1) and the data: a query chooses among the
    ``n_samples_fit`` training rows, one fewer when the queries are the training rows
    themselves (each excludes itself). Returns ``n_neighbors``; ``ValueError`` otherwise."""
    available = n_samples_fit - (1 if queries_are_training_rows else 0)
    if n_neighbors > available:
        raise ValueError(
            f"Expected n_neighbors <= n_samples_fit, but n_samples_fit = {n_samples_fit}, "
            f"n_neighbors = {n_neighbors}"
            + (" (the query point itself is excluded)" if queries_are_training_rows else "")
        )
    return n_neighbors


def check_p(value) -> float:
    """The Minkowski exponent as a float (``inf`` for Chebyshev)."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"p must be {P_ALLOWED}, got {value!r}")
    if not is_minkowski_p(value):
        raise ValueError(f"Minkowski p must be >= 1 (or inf), got p = {value}")
    return float(value)


def check_choice(name: str, value, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def fit_scaling(X, scale: str):
    """Centre and factor (each of shape (n_features,)) so that ``(X - centre) / factor`` is
    standardised (mean 0, std 1) or min-max scaled (0..1); constant columns keep factor 1.
    X : ndarray (n_samples, n_features), the training rows only."""
    import numpy as np

    check_choice("scale", scale, SCALINGS)
    if scale == "none":
        return np.zeros(X.shape[1]), np.ones(X.shape[1])
    if scale == "standard":
        centre, spread = X.mean(axis=0), X.std(axis=0)
    else:
        centre, spread = X.min(axis=0), X.max(axis=0) - X.min(axis=0)
    return centre, np.where(spread > 0, spread, 1.0)


def masked_address(address: str) -> str:
    """``address`` with any user-info (``user:password@``) and any query or fragment replaced
    by ``***``, so that an error can name it without printing a secret (a Dask scheduler's
    address has neither, so one that has them is refused, and the refusal names it masked).
    Everything up to the last ``@`` counts as user-info, so a password holding ``/``, ``?`` or
    ``#`` is hidden too."""
    head, sep, rest = address.partition("://")
    if not sep:
        head, rest = "", address
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    cut = min((i for i in (rest.find("?"), rest.find("#")) if i >= 0), default=-1)
    if cut >= 0:
        rest = rest[: cut + 1] + "***"
    return head + sep + rest
