"""grid_search_cv against scikit-learn's GridSearchCV, candidate by candidate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier

from knnlab.model_selection import grid_search_cv
from knnlab.options import SCORERS

from .. import exact_inputs


@pytest.fixture
def blobs(rng):
    """Continuous features (no distance ties), 3 overlapping classes, on the fine dyadic
    grid of tests/exact_inputs.py: there scikit-learn's p = 2 distances are exact on every
    BLAS, so its neighbours and distance weights are knnlab's."""
    y = rng.integers(0, 3, size=240)
    X = rng.normal(size=(240, 4)) + y[:, None] * 0.8
    return exact_inputs.on_grid(X), y


@pytest.mark.parametrize("seed", [None, 7])
def test_scores_equal_grid_search_cv_for_every_candidate(blobs, seed):
    X, y = blobs
    grid = {"n_neighbors": [1, 3, 6, 10], "p": [1, 2, 3], "weights": ["uniform", "distance"]}
    ours = grid_search_cv(X, y, {**grid, "algorithm": ["brute"]}, cv=4, seed=seed)
    folds = StratifiedKFold(4, shuffle=seed is not None, random_state=seed)
    theirs = GridSearchCV(
        KNeighborsClassifier(algorithm="brute"),
        grid,
        cv=folds,
        scoring=list(SCORERS),
        refit="accuracy",
    ).fit(X, y)
    sk_table = pd.DataFrame(theirs.cv_results_)
    assert len(ours.cv_results) == len(sk_table) == 24
    for scorer in SCORERS:
        columns = [c for c in sk_table.columns if c.endswith(f"test_{scorer}")]
        assert len(columns) == 4 + 3, "4 splits + mean, std, rank"
        for column in columns:
            np.testing.assert_allclose(
                ours.cv_results[column].to_numpy(float),
                sk_table[column].to_numpy(float),
                rtol=0,
                atol=1e-12,
                err_msg=column,
            )
    assert {k: ours.best_params[k] for k in grid} == theirs.best_params_
    assert ours.best_score == pytest.approx(theirs.best_score_, abs=1e-12)


def test_best_estimator_is_refit_on_all_data_only_when_asked(blobs):
    X, y = blobs
    assert grid_search_cv(X, y, {"n_neighbors": [3, 5]}, cv=3).best_estimator is None
    result = grid_search_cv(X, y, {"n_neighbors": [3, 5]}, cv=3, refit=True)
    assert result.best_estimator.n_neighbors == result.best_params["n_neighbors"]
    assert result.best_estimator._fit_X.shape[0] == len(X), "refit uses every sample"


def test_algorithms_score_the_same_and_are_timed_separately(blobs):
    X, y = blobs
    result = grid_search_cv(
        X, y, {"n_neighbors": [2, 5], "algorithm": ["brute", "kd_tree", "ball_tree"]}, cv=3
    )
    table = result.cv_results
    by_algorithm = {a: t.reset_index(drop=True) for a, t in table.groupby("param_algorithm")}
    for algorithm in ("kd_tree", "ball_tree"):
        np.testing.assert_array_equal(
            by_algorithm[algorithm]["mean_test_accuracy"],
            by_algorithm["brute"]["mean_test_accuracy"],
        )
    timings = result.search_timings
    assert len(timings) == 3 * 1 * 3, "one search per (fold, p, algorithm)"
    assert (timings["search_seconds"] > 0).all() and (table["mean_score_time"] > 0).all()


def test_cv_larger_than_smallest_class_is_refused(blobs):
    X, y = blobs
    y = y.copy()
    y[:2] = 5  # a class with 2 samples
    with pytest.raises(ValueError, match=r"smallest class has 2; lower tune\.cv"):
        grid_search_cv(X, y, {"n_neighbors": [3]}, cv=3)


def test_k_larger_than_a_training_fold_is_refused(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="exceeds the smallest training fold"):
        grid_search_cv(X[:30], y[:30], {"n_neighbors": [40]}, cv=3)


def test_empty_grid_list_is_refused(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="grid 'p' is an empty list"):
        grid_search_cv(X, y, {"p": []})


def test_results_do_not_depend_on_n_jobs(blobs):
    X, y = blobs
    grid = {"n_neighbors": [1, 4, 9], "p": [1, 2, 3], "weights": ["uniform", "distance"]}
    serial = grid_search_cv(X, y, grid, cv=3, seed=1, n_jobs=1)
    parallel = grid_search_cv(X, y, grid, cv=3, seed=1, n_jobs=2)
    score_columns = [c for c in serial.cv_results.columns if "test_" in c]
    # Bit for bit: the search is exact and every score is computed the same way in a worker.
    pd.testing.assert_frame_equal(
        serial.cv_results[score_columns], parallel.cv_results[score_columns], check_exact=True
    )
    assert serial.best_params == parallel.best_params
