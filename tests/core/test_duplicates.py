"""Leaks across a split (knnlab.duplicates) against a loop over every pair, with planted
exact and near duplicates."""

import numpy as np
import pytest

from knnlab.duplicates import cross_split_duplicates, rows_to_move


def _nearest_by_loop(X_train, X_test):
    nearest, distance = [], []
    for q in X_test:
        d = [float(np.sqrt(((q - t) ** 2).sum())) for t in X_train]
        j = min(range(len(d)), key=lambda i: (d[i], i))
        nearest.append(j)
        distance.append(d[j])
    return np.array(nearest), np.array(distance)


def _planted(seed=0):
    rng = np.random.default_rng(seed)
    X_train = rng.integers(0, 17, size=(200, 16)).astype(float)
    X_test = rng.integers(0, 17, size=(60, 16)).astype(float)
    X_test[[3, 17, 40]] = X_train[[5, 100, 150]]  # exact copies
    X_test[[8, 22]] = X_train[[9, 10]]
    X_test[8, 0] += 1  # one grey level off in one pixel: a near duplicate
    X_test[22, :2] += 1
    return X_train, X_test


def test_planted_duplicates_are_found_and_counted():
    X_train, X_test = _planted()
    found = cross_split_duplicates(X_train, X_test, ratio=0.1)
    nearest, distance = _nearest_by_loop(X_train, X_test)
    np.testing.assert_array_equal(found.nearest, nearest)
    np.testing.assert_allclose(found.distance, distance, rtol=1e-12)
    assert found.threshold == pytest.approx(0.1 * np.median(distance), rel=1e-12)
    assert list(np.flatnonzero(found.exact)) == [3, 17, 40]
    assert list(found.nearest[[3, 17, 40]]) == [5, 100, 150]
    assert list(np.flatnonzero(found.near)) == [8, 22]
    summary = found.summary()
    assert (summary["exact_duplicates"], summary["near_duplicates"]) == (3, 2)
    assert [p["test_row"] for p in summary["closest_pairs"]] == [3, 17, 40, 8, 22]
    assert summary["smallest_nearest_distance"] == 0.0
    only_exact = cross_split_duplicates(X_train, X_test, ratio=0)
    assert only_exact.exact.sum() == 3 and only_exact.near.sum() == 0


def test_moving_repeats_until_no_test_row_is_within_reach():
    X_train, X_test = _planted()
    X_test[50] = X_test[3]  # duplicates a test row that duplicates a training row
    X_test[51] = X_test[50] + np.eye(16)[0]  # near the one before: a chain
    found = cross_split_duplicates(X_train, X_test, 0.1)
    threshold = found.threshold
    moving = rows_to_move(found, X_test)
    assert list(np.flatnonzero(moving)) == [3, 8, 17, 22, 40, 50, 51]
    # Afterwards no test row lies within the threshold of the (enlarged) training side.
    left = X_test[~moving]
    side = np.vstack([X_train, X_test[moving]])
    assert _nearest_by_loop(side, left)[1].min() > threshold


def test_a_bad_ratio_is_refused_by_name():
    with pytest.raises(ValueError, match="ratio must be a number at least 0 and below 1"):
        cross_split_duplicates(np.zeros((3, 2)), np.ones((2, 2)), ratio=1.5)
