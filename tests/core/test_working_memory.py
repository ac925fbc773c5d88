"""working_memory bounds what a search allocates beyond its float32 copy of the training set,
on every path: measured as the growth of a fresh process's peak resident memory."""

from __future__ import annotations

import pytest

from ..support.memory import peak_growth

MIB = 2**20
N_TRAIN, N_QUERIES, N_FEATURES = 20_000, 3_000, 256
WORKING_MEMORY = 4 * MIB
# What a search keeps besides its work arrays: the float32 copy of the training set (and,
# pre-filtered, its 128 projected coordinates, float32), its norms, the outputs.
FLOAT32_COPY = N_TRAIN * N_FEATURES * 4
PROJECTIONS = N_TRAIN * 128 * 4
# The (queries, training points) product a search without chunks would hold, in float32.
UNCHUNKED = N_QUERIES * N_TRAIN * 4

SETUP = f"""
import numpy as np
from knnlab import neighbors
rng = np.random.default_rng(0)
basis = rng.normal(size=(8, {N_FEATURES}))
X = rng.normal(size=({N_TRAIN}, 8)) @ basis + 0.05 * rng.normal(size=({N_TRAIN}, {N_FEATURES}))
Q = rng.normal(size=({N_QUERIES}, 8)) @ basis + 0.05 * rng.normal(size=({N_QUERIES}, {N_FEATURES}))
"""


FOLD_ROWS = N_TRAIN * 3 // 4 * N_FEATURES * 8  # a fold's float64 training rows, re-ranked

CASES = {
    # id: (call, what it holds beyond the float32 copy and its projections)
    "p2-plain": ("neighbors.kneighbors(X, Q, 5, working_memory={wm}, prefilter=False)", 0),
    "p2-prefilter": ("neighbors.kneighbors(X, Q, 5, working_memory={wm}, prefilter=True)", 0),
    "p2-self": ("neighbors.kneighbors(X, None, 5, working_memory={wm}, prefilter=True)", 0),
    "p1": ("neighbors.kneighbors(X, Q, 5, p=1, working_memory={wm})", 0),
    "p3": ("neighbors.kneighbors(X, Q[:500], 5, p=3, working_memory={wm})", 0),
    "prepared": ("neighbors.PreparedSearch(X, working_memory={wm}).kneighbors(Q, 5)", 0),
    # A float32 copy of one fold's columns, and a fold's float64 rows for the re-rank.
    "cross-fold": (
        "neighbors.cross_fold_kneighbors(X, folds, 5, working_memory={wm})",
        FLOAT32_COPY // 4 + FOLD_ROWS,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_search_allocates_its_data_copies_and_at_most_working_memory_more(case):
    call, extra = CASES[case]
    p = 1 if "p=1" in call else 3 if "p=3" in call else 2
    setup = SETUP + f"\nneighbors.warm_up({p}, {N_FEATURES})  # compiled or loaded first"
    if "cross" in case:
        setup += (
            "\nfrom sklearn.model_selection import KFold"
            "\nfolds = [(t, v) for t, v in KFold(4).split(X)]"
            "\nneighbors.cross_fold_kneighbors(X[:40], list(KFold(4).split(X[:40])), 5)"
        )
    [result] = peak_growth(setup, [call.format(wm=WORKING_MEMORY)])
    assert result["error"] is None, result["error"]
    # One work array per thread (2 here), and slack for the outputs, numpy's temporaries
    # and the allocator.
    allowed = FLOAT32_COPY + PROJECTIONS + extra + 2 * WORKING_MEMORY + 24 * MIB
    growth = result["growth_mib"] * MIB
    assert growth <= allowed, (
        f"{call}: peak grew {growth / MIB:.0f} MiB, allowed {allowed / MIB:.0f} MiB "
        f"(a search without chunks would hold {UNCHUNKED / MIB:.0f} MiB)"
    )
    assert allowed < UNCHUNKED, "the bound must tell a chunked search from an unchunked one"
