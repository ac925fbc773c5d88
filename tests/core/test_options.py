"""One source for each rule: params.yaml, the estimators, the voting code and the grid search
accept exactly the values knnlab.options declares, and refuse the same others."""

from __future__ import annotations

import math

import numpy as np
import pytest

from knnlab import KNNClassifier
from knnlab.algorithms import ALGORITHMS, resolve_algorithm
from knnlab.model_selection import grid_search_cv
from knnlab.options import (
    SCALINGS,
    SCORERS,
    WEIGHTS,
    check_n_neighbors,
    check_p,
    fit_scaling,
    is_minkowski_p,
)
from knnlab.pipeline.io.params import ParamsError, parse_params
from knnlab.voting import neighbor_weights

X = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 2.0], [3.0, 2.0]])
Y = np.array([0, 0, 0, 1, 1, 1])


def model_params(**values):
    return parse_params({"model": values}).model


@pytest.mark.parametrize(
    ("key", "allowed"), [("weights", WEIGHTS), ("algorithm", ALGORITHMS), ("scale", SCALINGS)]
)
def test_params_and_estimator_accept_exactly_the_declared_choices(key, allowed):
    for value in allowed:
        assert getattr(model_params(**{key: value}), key) == value
        KNNClassifier(3, **{key: value}).fit(X, Y).predict(X)
    with pytest.raises(ParamsError, match=f"model.{key} = 'other'"):
        model_params(**{key: "other"})
    with pytest.raises(ValueError, match=f"{key} must be one of {', '.join(allowed)}"):
        KNNClassifier(3, **{key: "other"}).fit(X, Y)


def test_voting_and_grid_search_share_the_weights_and_scorers():
    distances = np.array([[0.5, 1.0]])
    for weights in WEIGHTS:
        assert neighbor_weights(distances, weights).shape == (1, 2)
    with pytest.raises(ValueError, match="weights must be one of uniform, distance"):
        neighbor_weights(distances, "inverse")
    assert parse_params({"tune": {"scoring": SCORERS[-1]}}).tune.scoring == SCORERS[-1]
    with np.errstate(all="ignore"), pytest.warns(UserWarning):  # 3 folds of 2 rows
        result = grid_search_cv(X, Y, {"n_neighbors": [1]}, cv=3, scoring=SCORERS)
    assert {f"mean_test_{s}" for s in SCORERS} <= set(result.cv_results.columns)


@pytest.mark.parametrize(
    ("p", "ok"),
    [
        *[(1, True), (1.5, True), (2, True), (math.inf, True), (np.float64(3), True)],
        *[(0.99, False), (0, False), (-1, False), (math.nan, False), (True, False), ("2", False)],
    ],
)
def test_minkowski_p_rule_is_the_same_everywhere(p, ok):
    assert is_minkowski_p(p) is ok
    if ok:
        assert check_p(p) == float(p)
        assert float(model_params(p=p).p) == float(p)
        return
    with pytest.raises((TypeError, ValueError), match="p"):
        check_p(p)
    with pytest.raises(ParamsError, match=r"model\.p"):
        model_params(p=p)
    with pytest.raises((TypeError, ValueError)):
        KNNClassifier(1, p=p).fit(X, Y)


@pytest.mark.parametrize(("k", "error"), [(0, ValueError), (True, TypeError), (2.0, TypeError)])
def test_n_neighbors_rule_is_the_same_everywhere(k, error):
    with pytest.raises(error, match="n_neighbors"):
        check_n_neighbors(k)
    with pytest.raises(ParamsError, match=r"model\.n_neighbors"):
        model_params(n_neighbors=k)
    with pytest.raises(error, match="n_neighbors"):
        KNNClassifier(k).fit(X, Y)


def test_auto_algorithm_and_scaling_by_hand():
    assert resolve_algorithm("auto", 100, 2, 5) == "kd_tree"
    assert resolve_algorithm("auto", 100, 16, 5) == "brute"
    assert resolve_algorithm("auto", 10, 2, 5) == "brute"  # k not below n // 2
    assert resolve_algorithm("ball_tree", 10, 64, 9) == "ball_tree"
    data = np.array([[1.0, 5.0], [3.0, 5.0]])
    centre, factor = fit_scaling(data, "standard")
    np.testing.assert_array_equal(centre, [2.0, 5.0])
    np.testing.assert_array_equal(factor, [1.0, 1.0])  # std 1 and a constant column
    centre, factor = fit_scaling(data, "minmax")
    np.testing.assert_array_equal(centre, [1.0, 5.0])
    np.testing.assert_array_equal(factor, [2.0, 1.0])
    with pytest.raises(ValueError, match="scale must be one of none, standard, minmax"):
        fit_scaling(data, "robust")
