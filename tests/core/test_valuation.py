"""knnlab.valuation.knn_shapley: exact kNN-Shapley values.

Checked against the definition itself (marginal contributions averaged over every order of
tiny training sets), against the efficiency axiom, and against a plain loop over Theorem 1's
recursion; its order of the training rows against kneighbors' at every position.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from knnlab.neighbors import kneighbors
from knnlab.valuation import _Ranking, knn_shapley

P_VALUES = (1.0, 2.0, 3.0, math.inf)
EXACT = {"rtol": 0, "atol": 1e-12}


def integer_key(a, b, p: float) -> int:
    """A key that orders integer points exactly as their Minkowski distance does: the sum of
    p-th powers as a Python integer (p = 1, 2, 3), the largest difference at p = inf."""
    differences = [abs(int(u) - int(v)) for u, v in zip(a, b, strict=True)]
    return max(differences) if math.isinf(p) else sum(x ** int(p) for x in differences)


def float_distance(a, b, p: float) -> float:
    """kneighbors' distance at p = 1, 2 or inf, in Python floats, feature by feature."""
    differences = [abs(float(u) - float(v)) for u, v in zip(a, b, strict=True)]
    if math.isinf(p):
        return max(differences)
    if p == 1:
        return sum(differences)
    total = 0.0
    for x in differences:
        total += x * x
    return math.sqrt(total)


def nearest_first(keys) -> list[int]:
    """Training rows by (distance key, index)."""
    return sorted(range(len(keys)), key=lambda j: (keys[j], j))


def utility(members, keys, labels, label, k: int) -> float:
    """U(S) for one test row: the share of its K votes that the min(K, |S|) nearest members
    of S give to its label."""
    nearest = sorted(members, key=lambda j: (keys[j], j))[:k]
    return sum(1 for j in nearest if labels[j] == label) / k


def brute_force_shapley(keys, labels, label, k: int) -> np.ndarray:
    """Each training row's marginal contribution to U, averaged over all N! orders in
    which the rows could join."""
    n = len(keys)
    subset_utility = [
        utility([j for j in range(n) if mask >> j & 1], keys, labels, label, k)
        for mask in range(2**n)
    ]
    totals = np.zeros(n)
    for order in itertools.permutations(range(n)):
        mask = 0
        for j in order:
            before = subset_utility[mask]
            mask |= 1 << j
            totals[j] += subset_utility[mask] - before
    return totals / math.factorial(n)


def loop_shapley(keys, labels, label, k: int) -> np.ndarray:
    """Theorem 1's recursion for one test row, one training row at a time."""
    n = len(keys)
    alpha = nearest_first(keys)
    match = [1.0 if labels[j] == label else 0.0 for j in alpha]
    values = np.zeros(n)
    values[alpha[n - 1]] = match[n - 1] * min(k, n) / (k * n)
    for i in range(n - 2, -1, -1):  # i is 0-based: the paper's position i + 1
        step = (match[i] - match[i + 1]) / k * min(k, i + 1) / (i + 1)
        values[alpha[i]] = values[alpha[i + 1]] + step
    return values


@pytest.mark.parametrize("p", P_VALUES)
@pytest.mark.parametrize("n_train", range(1, 8))
def test_values_are_the_average_marginal_contribution_over_every_order(n_train, p):
    rng = np.random.default_rng(100 * n_train + int(min(p, 9)))
    # Coordinates 0..2 in two dimensions: exact ties in distance and duplicate rows.
    X_train = rng.integers(0, 3, size=(n_train, 2))
    if n_train >= 3:
        X_train[2] = X_train[0]
    X_test = np.vstack([rng.integers(0, 3, size=(2, 2)), X_train[:1]])
    for n_classes in (2, 3):
        y_train = rng.integers(0, n_classes, n_train)
        y_test = rng.integers(0, n_classes, len(X_test))
        for k in (1, 2, 3, n_train + 2):
            expected = np.mean(
                [
                    brute_force_shapley([integer_key(x, t, p) for t in X_train], y_train, label, k)
                    for x, label in zip(X_test, y_test, strict=True)
                ],
                axis=0,
            )
            values = knn_shapley(X_train, y_train, X_test, y_test, k, p=p)
            assert values.shape == (n_train,) and values.dtype == np.float64
            np.testing.assert_allclose(values, expected, **EXACT, err_msg=f"k={k}")


@pytest.mark.parametrize("p", [*P_VALUES, 1.5])
@pytest.mark.parametrize("k", [1, 5, 400])
def test_values_sum_to_the_mean_utility_of_the_whole_training_set(k, p):
    rng = np.random.default_rng(7)
    X_train, X_test = rng.normal(size=(300, 6)), rng.normal(size=(40, 6))
    y_train, y_test = rng.integers(0, 3, 300), rng.integers(0, 3, 40)
    values = knn_shapley(X_train, y_train, X_test, y_test, k, p=p)
    _, nearest = kneighbors(X_train, X_test, min(k, 300), p=p)
    full = np.mean((y_train[nearest] == y_test[:, None]).sum(axis=1) / k)
    assert math.isclose(values.sum(), full, rel_tol=0, abs_tol=1e-12)


def tied_data(seed: int = 3):
    """Integer features 0..3 in 4 columns (256 points for 200 rows: many duplicates and
    many equal distances), 3 classes."""
    rng = np.random.default_rng(seed)
    X_train = rng.integers(0, 4, size=(200, 4))
    X_test = np.vstack([rng.integers(0, 4, size=(11, 4)), X_train[:4]])
    return X_train, rng.integers(0, 3, 200), X_test, rng.integers(0, 3, len(X_test))


@pytest.mark.parametrize("p", P_VALUES)
@pytest.mark.parametrize("k", [1, 5, 250])
def test_values_equal_a_loop_over_the_recursion_on_tied_integer_data(k, p):
    X_train, y_train, X_test, y_test = tied_data()
    expected = np.mean(
        [
            loop_shapley([integer_key(x, t, p) for t in X_train], y_train, label, k)
            for x, label in zip(X_test, y_test, strict=True)
        ],
        axis=0,
    )
    values = knn_shapley(X_train, y_train, X_test, y_test, k, p=p, block_rows=7)
    np.testing.assert_allclose(values, expected, **EXACT)


@pytest.mark.parametrize("p", [1.0, 2.0, math.inf])
def test_values_equal_a_loop_over_the_recursion_on_tied_scaled_data(p):
    """Scaled, the data are no longer integers: the exact ties (duplicate rows) must be
    found again among float64 near-ties and ranked by index."""
    X_train, y_train, X_test, y_test = tied_data(seed=4)
    X_train, X_test = X_train / 3.7 - 0.45, X_test / 3.7 - 0.45
    expected = np.mean(
        [
            loop_shapley([float_distance(x, t, p) for t in X_train], y_train, label, 5)
            for x, label in zip(X_test, y_test, strict=True)
        ],
        axis=0,
    )
    values = knn_shapley(X_train, y_train, X_test, y_test, 5, p=p, block_rows=7)
    np.testing.assert_allclose(values, expected, **EXACT)


def near_ties(rng):
    """Training rows on a grid 3e-12 apart, queries 1000 away: their distances tie or differ
    by a few float64 steps, finer than the matrix multiply's rounding (of |x|^2 = 3e6)."""
    X_train = rng.integers(0, 5, size=(120, 3)) * 3e-12
    X_test = 1000.0 + rng.normal(size=(9, 3))
    return X_train, X_test


@pytest.mark.parametrize("p", [*P_VALUES, 1.5])
@pytest.mark.parametrize(
    "data",
    ["integers", "scaled integers", "normal", "offset", "near ties"],
)
def test_the_order_is_kneighbors_order_at_every_position(data, p):
    rng = np.random.default_rng(11)
    X_train = rng.integers(0, 6, size=(150, 5)).astype(float)
    X_test = np.vstack([rng.integers(0, 6, size=(20, 5)), X_train[:3]])
    if data == "scaled integers":
        X_train, X_test = X_train / 2.3, X_test / 2.3
    elif data == "normal":
        X_train, X_test = rng.normal(size=(150, 5)), rng.normal(size=(20, 5))
    elif data == "offset":
        X_train, X_test = X_train * 1e-3 + 1e6, X_test * 1e-3 + 1e6
    elif data == "near ties":
        X_train, X_test = near_ties(rng)
    ranking = _Ranking.prepare(X_train, X_test, p)
    order = np.vstack([ranking.order(X_test[i : i + 4]) for i in range(0, len(X_test), 4)])
    _, expected = kneighbors(X_train, X_test, len(X_train), p=p)
    np.testing.assert_array_equal(order, expected)


def test_near_ties_the_multiply_cannot_order_are_repaired():
    X_train, X_test = near_ties(np.random.default_rng(5))
    ranking = _Ranking.prepare(X_train, X_test, 2.0)
    assert not ranking.exact
    values, _ = ranking._values(X_test)
    order = ranking.order(X_test)
    _, expected = kneighbors(X_train, X_test, len(X_train))
    assert not np.array_equal(np.argsort(values, axis=1, kind="stable"), expected)
    np.testing.assert_array_equal(order, expected)


def test_values_do_not_depend_on_the_block_size_or_the_label_type():
    X_train, y_train, X_test, y_test = tied_data(seed=5)
    values = knn_shapley(X_train, y_train, X_test, y_test, 3)
    for block_rows in (1, 4, 1000):
        blocked = knn_shapley(X_train, y_train, X_test, y_test, 3, block_rows=block_rows)
        np.testing.assert_allclose(blocked, values, **EXACT)
    names = np.array(["cat", "dog", "eel"])
    named = knn_shapley(X_train, names[y_train], X_test, names[y_test], 3)
    np.testing.assert_allclose(named, values, **EXACT)


def test_a_test_label_no_training_row_has_is_never_matched():
    X_train, y_train, X_test, _ = tied_data(seed=6)
    values = knn_shapley(X_train, y_train, X_test, np.full(len(X_test), 9), 3)
    np.testing.assert_array_equal(values, np.zeros(len(X_train)))


def test_distances_beyond_float64_are_refused_as_kneighbors_refuses_them():
    X_train, X_test = np.array([[1.5e308], [-1.5e308]]), np.array([[-1.5e308]])
    with pytest.raises(ValueError, match="float64"):
        kneighbors(X_train, X_test, 2)
    with pytest.raises(ValueError, match="float64"):
        knn_shapley(X_train, [0, 1], X_test, [0], 1)


GOOD = {
    "X_train": [[0.0, 1.0], [1.0, 0.0], [2.0, 2.0]],
    "y_train": [0, 1, 0],
    "X_test": [[0.5, 0.5]],
    "y_test": [1],
    "n_neighbors": 2,
}


@pytest.mark.parametrize(
    ("change", "name"),
    [
        ({"n_neighbors": 0}, "n_neighbors"),
        ({"n_neighbors": 2.5}, "n_neighbors"),
        ({"n_neighbors": True}, "n_neighbors"),
        ({"p": 0.5}, "p"),
        ({"p": float("nan")}, "p"),
        ({"p": "2"}, "p"),
        ({"block_rows": 0}, "block_rows"),
        ({"X_train": [0.0, 1.0, 2.0]}, "X_train"),
        ({"X_train": np.zeros((0, 2)), "y_train": []}, "X_train"),
        ({"X_train": [[0.0, np.nan], [1.0, 0.0], [2.0, 2.0]]}, "X_train"),
        ({"X_train": [["a", "b"], ["c", "d"], ["e", "f"]]}, "X_train"),
        ({"X_test": [[0.5, 0.5, 0.5]]}, "X_test"),
        ({"X_test": [[0.5, np.inf]]}, "X_test"),
        ({"X_test": np.zeros((0, 2)), "y_test": []}, "X_test"),
        ({"y_train": [0, 1]}, "y_train"),
        ({"y_test": [1, 0]}, "y_test"),
        ({"y_test": [[1]]}, "y_test"),
    ],
)
def test_bad_arguments_are_refused_by_name(change, name):
    arguments = {**GOOD, **change}
    n_neighbors = arguments.pop("n_neighbors")
    with pytest.raises(ValueError, match=rf"^{name} "):
        knn_shapley(
            arguments.pop("X_train"),
            arguments.pop("y_train"),
            arguments.pop("X_test"),
            arguments.pop("y_test"),
            n_neighbors,
            **arguments,
        )
