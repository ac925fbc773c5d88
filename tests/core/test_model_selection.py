"""grid_search_cv against scikit-learn's GridSearchCV, candidate by candidate."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier

from knnlab.model_selection import grid_search_cv
from knnlab.options import SCORERS

from ..support import exact_inputs


@pytest.fixture
def blobs(rng):
    """Continuous features (no distance ties), 3 overlapping classes, on the fine dyadic
    grid of tests/support/exact_inputs.py: there scikit-learn's p = 2 distances are exact on
    every BLAS, so its neighbours and distance weights are knnlab's."""
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


# --- approximate algorithms in the grid ---------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X[:600], y[:600]


APPROXIMATE_GRID = {
    "n_neighbors": [1, 4, 40],  # 40 > ef_search: its own faiss call
    "p": [1, 2],
    "weights": ["uniform", "distance"],
    "algorithm": ["brute", "hnsw", "ivf"],
    "index": {"ef_search": [4, 16], "nprobe": [1, 3]},
}


def test_an_approximate_candidate_scores_what_its_estimator_scores(digits):
    """Each approximate candidate's CV scores equal its own KNNClassifier fitted and scored
    fold by fold: the grid's shared searches (one build per fold, one faiss call for every
    k up to ef_search) change nothing."""
    from knnlab import KNNClassifier

    X, y = digits
    result = grid_search_cv(X, y, APPROXIMATE_GRID, cv=3, seed=0, index_seed=5)
    folds = list(StratifiedKFold(3, shuffle=True, random_state=0).split(X, y))
    table = result.cv_results
    for row in table[table["param_algorithm"] != "brute"].itertuples():
        model = KNNClassifier(**row.params, random_state=5)
        for f, (train, valid) in enumerate(folds):
            accuracy = np.mean(model.fit(X[train], y[train]).predict(X[valid]) == y[valid])
            assert accuracy == getattr(row, f"split{f}_test_accuracy"), (row.params, f)


def test_the_grid_holds_approximate_candidates_at_p_2_with_recall_and_work(digits):
    X, y = digits
    table = grid_search_cv(X, y, APPROXIMATE_GRID, cv=3, seed=0).cv_results
    exact = table[table["param_algorithm"] == "brute"]
    approximate = table[table["param_algorithm"] != "brute"]
    assert len(exact) == 3 * 2 * 2 and len(approximate) == 2 * (2 * 3 * 2), "p = 2 only"
    assert set(approximate["param_p"]) == {2}
    assert (exact["param_index"] == "").all() and (exact["mean_recall"] == 1.0).all()
    n_train = len(X) * 2 / 3
    assert np.allclose(exact["mean_distances_per_query"], n_train, rtol=0.01)
    assert (approximate["mean_distances_per_query"] < n_train).all(), "an index does less work"
    weak = approximate[approximate["param_index"] == '{"nprobe": 1}']["mean_recall"]
    strong = approximate[approximate["param_index"] == '{"nprobe": 3}']["mean_recall"]
    assert (weak.to_numpy() <= strong.to_numpy()).all(), "more cells scanned, more recall"
    assert weak.min() > 0.5 and strong.max() <= 1.0


def test_recall_columns_match_a_loop_reference(digits):
    """mean_recall of one candidate, recomputed with Python sets fold by fold."""
    from knnlab import KNNClassifier

    X, y = digits
    grid = {**APPROXIMATE_GRID, "algorithm": ["hnsw"], "index": {"ef_search": [4]}, "p": [2]}
    table = grid_search_cv(X, y, grid, cv=3, seed=0).cv_results
    row = table[table["param_n_neighbors"] == 4].iloc[0]
    recalls = []
    for train, valid in StratifiedKFold(3, shuffle=True, random_state=0).split(X, y):
        found = KNNClassifier(4, algorithm="hnsw", index={"ef_search": 4}).fit(X[train], y[train])
        exact = KNNClassifier(4, algorithm="brute").fit(X[train], y[train])
        a, b = found.kneighbors(X[valid])[1], exact.kneighbors(X[valid])[1]
        recalls.append(np.mean([len(set(r) & set(s)) / 4 for r, s in zip(a, b, strict=True)]))
    assert row["mean_recall"] == pytest.approx(np.mean(recalls), abs=1e-12)


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"algorithm": ["brute"], "index": {"ef_search": [4]}}, "grid index option 'ef_search'"),
        ({"algorithm": ["hnsw"], "p": [1, 3]}, "p = 2 only"),
        ({"algorithm": ["hnsw"], "p": [2], "index": {"ef_search": [0]}}, "index.ef_search = 0"),
        ({"algorithm": ["ivf"], "p": [2], "index": {"nprobe": []}}, "non-empty list"),
    ],
)
def test_bad_approximate_grids_say_what_is_wrong(digits, grid, message):
    X, y = digits
    with pytest.raises(ValueError, match=message):
        grid_search_cv(X, y, {"n_neighbors": [3], **grid}, cv=3)
