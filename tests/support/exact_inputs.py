"""Inputs on which scikit-learn's Euclidean brute force is exact, whatever the machine.

scikit-learn computes float64 squared Euclidean distances as ``|x|^2 - 2 x.y + |y|^2``, the
middle term by a BLAS matrix multiply. On arbitrary floats the expansion cancels: an exact
duplicate comes out at 4e-8 instead of 0, and a near pair loses most of its relative
accuracy, by amounts that depend on the BLAS kernel (FMA or not, blocking), that is on the
CPU and the wheel. knnlab computes distances from the differences and is exact, so a 1e-12
comparison with scikit-learn at p = 2 on such data passes on one machine and fails on
another. Against arbitrary floats, compare with the loop references instead.

On a fine dyadic grid the expansion has nothing to round. Let every coordinate be an
integer multiple of ``h = GRID_STEP`` with integer part ``|n| <= GRID_MAX_UNITS = 2^24``.
Each term ``n_x^2``, ``2 n_x n_y``, ``n_y^2`` of the expansion (in units of ``h^2``) is then
an integer of magnitude at most ``2^49``, and every partial sum, in any order, grouped any
way, with or without FMA, is an integer multiple of ``h^2`` of magnitude at most
``4 d 2^48 <= 2^53`` for ``d <= 8`` features: exactly representable in float64. The squared
distances are therefore exact, their square roots correctly rounded, and scikit-learn's
distances equal knnlab's bit for bit (a duplicate at exactly 0). At other p both libraries
compute from the differences, which are exact on the grid; they can differ only in the last
bit of a power (``x*x*x`` against ``pow``), far below the tolerances the tests use.

The grid is fine (``2^-20``): distinct squared distances are multiples of ``2^-40``, so
random data drawn onto it tie no more often than continuous data do.
"""

from __future__ import annotations

import numpy as np

GRID_STEP = 2.0**-20
GRID_MAX_UNITS = 2**24  # |value| <= 16
MAX_FEATURES = 8  # 4 * MAX_FEATURES * GRID_MAX_UNITS**2 == 2**53


def on_grid(X) -> np.ndarray:
    """X (n, d), d <= MAX_FEATURES, rounded to the nearest multiple of GRID_STEP and
    clipped to +-GRID_MAX_UNITS steps (a normal sample never reaches 16)."""
    X = np.asarray(X, dtype=np.float64)
    if X.shape[-1] > MAX_FEATURES:
        raise ValueError(f"exact on at most {MAX_FEATURES} features, got {X.shape[-1]}")
    units = np.clip(np.round(X / GRID_STEP), -GRID_MAX_UNITS, GRID_MAX_UNITS)
    return units * GRID_STEP
