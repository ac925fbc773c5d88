"""Minkowski distances at large p against exact arbitrary-precision references.

Integer data (sklearn digits, pixels 0..16) at integer p have exact integer sums
``sum_f |q_f - t_f| ** p`` (Python integers), so neighbours are ranked exactly, with no
float rounding anywhere in the reference; non-integer p and float data use decimal arithmetic
(:func:`tests.support.reference.minkowski_exact`). Distances must match the exact values to
1e-14.

Indices are compared exactly wherever float64 can tell the exact distances apart. At large p
it often cannot: at p = 1000 a query's distances to two digits with the same largest pixel
difference (and as many pixels at it) differ by less than (15/16)^1000 ~ 1e-28 relatively,
far below float64's 1e-16; the search sees a tie and takes the lower index, as documented,
while the exact order may go the other way. Where the exact distances of neighbouring ranks
lie within 1e-13 of each other, the search must return a point of that near-tie group.
"""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from knnlab import KNNClassifier, _kernels
from knnlab.neighbors import _float32_stage_fits, cross_fold_kneighbors, kneighbors

from ..support import reference

RTOL = 1e-14  # returned distances against the exact ones
TIE_RTOL = 1e-13  # exact distances this close are a near-tie float64 need not resolve


@pytest.fixture(scope="module")
def digits():
    """The digits split the pipeline uses: (X_train, X_test, y_train, y_test)."""
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=42, stratify=y)


def _spy_exact_scan(monkeypatch) -> list[int]:
    """Record the number of queries of every exact-scan call (the real kernel runs)."""
    calls = []
    real = _kernels.exact_scan

    def recording(Q, *args):
        calls.append(len(Q))
        return real(Q, *args)

    monkeypatch.setattr(_kernels, "exact_scan", recording)
    return calls


def assert_exact_neighbours(dist, ind, n_train, key, distance, *, self_query=False) -> float:
    """Check a search result (dist, ind), each (n_queries, k), against exact values.

    n_train : training points searched. key(i, j) : exact ranking key of point j for query
        i (an int powered sum or a Decimal distance); distance(i, j) : exact distance,
        Decimal. The reference order is by (key, j): distance, then the lower index, the
        module's tie rule.
    Returns the fraction of (query, rank) positions whose index was compared exactly (the
    rest are near-ties, checked for membership).
    """
    n_queries, k = ind.shape
    resolved = 0
    for i in range(n_queries):
        row = [(float(dist[i, r]), int(ind[i, r])) for r in range(k)]
        assert row == sorted(row), f"query {i}: not sorted by (distance, index): {row}"
        assert len(set(ind[i])) == k, f"query {i}: a training point returned twice"
        assert not (self_query and i in ind[i]), f"query {i} is its own neighbour"
        others = [j for j in range(n_train) if not (self_query and j == i)]
        ref = sorted(others, key=lambda j, i=i: (key(i, j), j))[: k + 1]
        exact = [distance(i, j) for j in ref]  # the exact r-th distances, r <= k

        def near(a: Decimal, b: Decimal) -> bool:
            return abs(a - b) <= Decimal(TIE_RTOL) * max(a, b)

        for r in range(k):
            j = int(ind[i, r])
            d_exact = distance(i, j)
            assert abs(Decimal(float(dist[i, r])) - d_exact) <= Decimal(RTOL) * d_exact, (
                f"query {i}, rank {r}: distance {dist[i, r]!r}, exact {d_exact:.20g}"
            )
            assert near(d_exact, exact[r]), (
                f"query {i}, rank {r}: returned point {j} at exact distance {d_exact:.20g}, "
                f"but the exact {r}-th nearest is {ref[r]} at {exact[r]:.20g}"
            )
            separated = (r == 0 or not near(exact[r - 1], exact[r])) and (
                r + 1 == len(exact) or not near(exact[r], exact[r + 1])
            )
            if separated:
                assert j == ref[r], f"query {i}, rank {r}: got point {j}, exact order {ref}"
                resolved += 1
    return resolved / ind.size


def _check_integer_p(T, Q, k, p, dist, ind) -> float:
    """Exact check of an integer-p search on integer data T (n, d), Q (m, d) or None."""
    self_query = Q is None
    queries = T if self_query else Q
    sums = [[reference.powered_sum_int(q, t, p) for t in T] for q in queries]
    roots: dict[int, Decimal] = {}

    def distance(i, j):
        s = sums[i][j]
        if s not in roots:
            roots[s] = reference.root_exact(s, p)
        return roots[s]

    return assert_exact_neighbours(
        dist, ind, len(T), lambda i, j: sums[i][j], distance, self_query=self_query
    )


# 25 and 40: past the float32 stage (digits: p <= 24); 254 / 256: either side of the first
# pair whose plain float64 sum overflows (64 * 16^p * 2 > 1.8e308 from p = 249 on; 16^256
# alone is inf); 300 and 1000 far beyond.
@pytest.mark.parametrize("p", [25, 40, 64, 254, 256, 300, 1000])
def test_integer_p_on_digits_matches_exact_integer_sums(digits, p):
    X_train, X_test, _, _ = digits
    T, Q = X_train[:160], X_test[:16]
    dist, ind = kneighbors(T, Q, 5, p=p)
    resolved = _check_integer_p(T, Q, 5, p, dist, ind)
    # Below p ~ 200 float64 resolves every rank here; above, the near-ties described in the
    # module docstring take about half of them.
    assert resolved >= (0.95 if p < 200 else 0.3), f"only {resolved:.0%} of ranks compared"


@pytest.mark.parametrize("p", [300, 1000])
def test_self_queries_at_large_p_match_exact_sums_and_keep_the_tie_rule(digits, p):
    X_train = digits[0]
    # Rows 3 and 7 appear twice more at the end: exact ties at distance 0 (and in between).
    T = np.vstack([X_train[:100], X_train[[3, 7, 3]]])
    dist, ind = kneighbors(T, None, 4, p=p)
    _check_integer_p(T, None, 4, p, dist, ind)
    assert ind[3, :2].tolist() == [100, 102] and (dist[3, :2] == 0).all(), (
        "row 3's copies are its nearest, at 0, lower index first"
    )
    assert ind[102, :2].tolist() == [3, 100] and (dist[102, :2] == 0).all()
    assert ind[7, 0] == 101 and ind[101, 0] == 7 and dist[7, 0] == dist[101, 0] == 0


def test_the_float32_threshold_is_where_the_rule_puts_it(digits, monkeypatch):
    """The largest p the float32 stage takes on these data, and the next: both exact, and
    only the second goes to the float64 scan."""
    X_train, X_test, _, _ = digits
    T, Q = X_train[:160], X_test[:16]
    centre = T.mean(axis=0)
    _, _, a_train = _kernels.centred_float32(T, centre, 1, 1.0)  # as the search measures it
    a_all = max(a_train, _kernels.largest_centred(Q, centre))
    edge = max(p for p in range(1, 200) if _float32_stage_fits(a_train, a_all, T.shape[1], p))
    # d (2A)^p <= 2^126 with d = 64 and 2A just under 32: p <= 120 / log2(2A) ~ 24
    assert edge == math.floor((126 - 6) / math.log2(2 * a_all))
    calls = _spy_exact_scan(monkeypatch)
    for p, routed in ((edge, False), (edge + 1, True)):
        calls.clear()
        dist, ind = kneighbors(T, Q, 5, p=p)
        assert bool(calls) is routed, f"p = {p}: exact scan used {bool(calls)}"
        _check_integer_p(T, Q, 5, p, dist, ind)


@pytest.mark.parametrize("p", [40.5, 299.75, 1000.5, 123456.7])
def test_non_integer_large_p_matches_decimal_reference(digits, p):
    X_train, X_test, _, _ = digits
    T, Q = X_train[:80], X_test[:8]
    exact = [[reference.minkowski_exact(q, t, p) for t in T] for q in Q]
    dist, ind = kneighbors(T, Q, 4, p=p)
    resolved = assert_exact_neighbours(
        dist, ind, len(T), lambda i, j: exact[i][j], lambda i, j: exact[i][j]
    )
    assert resolved >= 0.25, f"only {resolved:.0%} of ranks compared"


@pytest.mark.parametrize("p", [300, 1000, 10**6])
@pytest.mark.parametrize("self_query", [False, True])
def test_small_float_differences_at_large_p_do_not_underflow(rng, p, self_query):
    """Standardised data: differences below 1 whose p-th powers underflow float64 to 0
    (0.4 ** 1000 = 1e-398), where a plain sum reports 0 for every near pair."""
    T = rng.normal(size=(40, 5))
    Q = None if self_query else rng.normal(size=(6, 5))
    queries = T if self_query else Q
    exact = [[reference.minkowski_exact(q, t, p) for t in T] for q in queries]
    dist, ind = kneighbors(T, Q, 3, p=p)
    assert (dist > 0).all()
    resolved = assert_exact_neighbours(
        dist, ind, len(T), lambda i, j: exact[i][j], lambda i, j: exact[i][j], self_query=self_query
    )
    assert resolved > 0.9, "continuous data: no near-ties"


@pytest.mark.parametrize("self_query", [False, True])
def test_very_large_p_approaches_chebyshev(rng, self_query):
    T = rng.normal(size=(400, 8))
    Q = None if self_query else rng.normal(size=(60, 8))
    k = 5
    inf_dist, inf_ind = kneighbors(T, Q, k + 1, p=np.inf)
    # m <= d_p <= d^(1/p) m: at p = 1e6 the distances are Chebyshev's to 2.1e-6, and the
    # neighbours are Chebyshev's wherever consecutive Chebyshev distances differ by more.
    p = 1e6
    slack = 8 ** (1 / p) - 1
    dist, ind = kneighbors(T, Q, k, p=p)
    np.testing.assert_array_less(inf_dist[:, :k] * (1 - 1e-15), dist)
    np.testing.assert_array_less(dist, inf_dist[:, :k] * (1 + slack))
    gaps = np.diff(inf_dist, axis=1) / inf_dist[:, 1:]  # (n_queries, k)
    clear = (gaps > 2 * slack).all(axis=1)
    assert clear.mean() > 0.9, "continuous data: few near-ties"
    np.testing.assert_array_equal(ind[clear], inf_ind[clear, :k])
    # At p = 1e300 the root of the scaled sum (between 1 and 8) is 1 in float64: Chebyshev's
    # distances bit for bit, and so the same neighbours, ties included.
    dist, ind = kneighbors(T, Q, k, p=1e300)
    np.testing.assert_array_equal(dist, inf_dist[:, :k])
    np.testing.assert_array_equal(ind, inf_ind[:, :k])


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("scale", [2.0**130, 2.0**-60])
def test_magnitudes_beyond_float32_give_the_same_neighbours(rng, monkeypatch, p, scale):
    """Scaled by a power of two, float32 overflows (2^130) or, from p = 2, underflows past
    its rounding bound (squares of 2^-60); the float64 scan takes those data and finds the
    unscaled data's neighbours, at the unscaled distances times the scale (bit for bit at
    p = 1, 2; at p = 3 the root ``s ** (1/3)`` takes a rounded 1/3, so to a few eps)."""
    T, Q = rng.normal(size=(300, 6)), rng.normal(size=(40, 6))
    dist, ind = kneighbors(T, Q, 5, p=p)
    calls = _spy_exact_scan(monkeypatch)
    scaled_dist, scaled_ind = kneighbors(T * scale, Q * scale, 5, p=p)
    assert bool(calls) is (p != 1 or scale > 1), "only p = 1 at 2^-60 still fits float32"
    np.testing.assert_array_equal(scaled_ind, ind)
    np.testing.assert_allclose(scaled_dist, dist * scale, rtol=0 if p < 3 else RTOL)


def test_squares_below_float64_are_scaled_not_lost(rng):
    """At 2^-600 every square underflows float64 (2^-1200): the scaled form keeps them."""
    T, Q = rng.normal(size=(60, 4)) * 2.0**-600, rng.normal(size=(5, 4)) * 2.0**-600
    exact = [[reference.minkowski_exact(q, t, 2) for t in T] for q in Q]
    dist, ind = kneighbors(T, Q, 3, p=2)
    resolved = assert_exact_neighbours(
        dist, ind, len(T), lambda i, j: exact[i][j], lambda i, j: exact[i][j]
    )
    assert resolved == 1.0


@pytest.mark.parametrize("p", [2, 1000])
def test_distances_beyond_float64_are_refused(p):
    X = np.array([[1e308, 0.0], [-1e308, 0.0], [1e308, 1.0]])
    query = np.array([[1e308, 0.5]])
    dist, ind = kneighbors(X, query, 2, p=p)  # both near ones are in range: answered
    np.testing.assert_array_equal(ind, [[0, 2]])
    np.testing.assert_array_equal(dist, [[0.5, 0.5]])
    with pytest.raises(ValueError, match=r"below float64's maximum.*rescale the features"):
        kneighbors(X, query, 3, p=p)  # the third is 2e308 away


def test_exact_scan_does_not_depend_on_chunks_or_threads(digits):
    X_train, X_test, _, _ = digits
    expected = kneighbors(X_train, X_test, 5, p=1000)
    for working_memory, n_jobs in ((1, 1), (1, 2), (10**6, 1)):
        dist, ind = kneighbors(
            X_train, X_test, 5, p=1000, working_memory=working_memory, n_jobs=n_jobs
        )
        np.testing.assert_array_equal(ind, expected[1], err_msg=f"{working_memory=}, {n_jobs=}")
        np.testing.assert_array_equal(dist, expected[0])


def test_classifier_on_digits_at_p_1000_is_near_chebyshev(digits):
    """A behaviour check: p = 1000 used to give inf distances and chance accuracy."""
    X_train, X_test, y_train, y_test = digits
    accuracy = {
        p: (KNNClassifier(5, p=p).fit(X_train, y_train).predict(X_test) == y_test).mean()
        for p in (1000, np.inf)
    }
    assert abs(accuracy[1000] - accuracy[np.inf]) <= 0.02, accuracy


@pytest.mark.parametrize("scale", [1e20, 1e-25])
def test_cross_fold_search_declines_data_beyond_float32(rng, scale):
    from sklearn.model_selection import KFold

    X = rng.normal(size=(120, 4)) * scale
    folds = list(KFold(3).split(X))
    assert cross_fold_kneighbors(X, folds, 3) is None, "squares leave float32: decline"
    train, valid = folds[0]
    dist, ind = kneighbors(X[train], X[valid], 3)  # what the callers do instead: exact
    ref_dist, ref_ind = reference.kneighbors(X[train], X[valid], 3, 2)
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12)


# scikit-learn's trees sum float64 p-th powers: inf at p = 1000 on digits, 0 for differences
# whose powers underflow; knnlab answers such queries by brute force (powers_fit_float64).
@pytest.mark.parametrize("algorithm", ["kd_tree", "ball_tree"])
@pytest.mark.parametrize("case", ["digits at p = 1000", "differences of 1e-275 at p = 3"])
def test_trees_agree_with_brute_force_where_powers_leave_float64(digits, algorithm, case):
    if case.startswith("digits"):
        X_train, X_test, _, _ = digits
        columns = [10, 20, 28, 36, 42, 53]  # few features: where trees are used
        X, Q, p = X_train[:, columns], X_test[:50, columns], 1000
    else:
        X = np.array([[0.0, 1.0], [8e-275, 1.0], [5.0, 1.0], [-3.0, 2.0], [2e-275, 1.0]])
        Q, p = X[:2].copy(), 3  # queries equal to training rows: exact matches at 0
    brute = KNNClassifier(3, p=p, algorithm="brute").fit(X, np.arange(len(X)) % 2)
    tree = KNNClassifier(3, p=p, algorithm=algorithm).fit(X, np.arange(len(X)) % 2)
    np.testing.assert_allclose(tree.kneighbors(Q)[0], brute.kneighbors(Q)[0], rtol=1e-12)
