"""KNNClassifier against the loop reference and scikit-learn, and inside scikit-learn tools."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from knnlab import KNNClassifier, KNNRegressor

from ..support import exact_inputs, reference, reference_extra


@pytest.fixture
def continuous(rng):
    """Continuous features: no distance ties, so every implementation must agree exactly.
    Two queries coincide with training points to exercise the d = 0 rule."""
    X = rng.normal(size=(150, 4))
    y = rng.integers(0, 3, size=150)
    Q = rng.normal(size=(40, 4))
    Q[:2] = X[:2]
    return X, y, Q


@pytest.fixture
def on_grid(continuous):
    """The continuous problem rounded to a fine dyadic grid (tests/support/exact_inputs.py),
    on which scikit-learn's p = 2 arithmetic is exact on every BLAS: its two exact matches
    come out at d = 0, not at 4e-8, and its other distances equal knnlab's bit for bit."""
    X, y, Q = continuous
    return exact_inputs.on_grid(X), y, exact_inputs.on_grid(Q)


@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize("p", [1, 2, 3])
def test_predict_proba_matches_scikit_learn(on_grid, weights, p):
    # On the grid both libraries' distances agree to the last bit (exactly at p = 2), so
    # the probabilities differ at most by the rounding of adding 7 votes (a few eps). On
    # arbitrary floats scikit-learn's p = 2 rounding alone (an exact match at 4e-8 on some
    # BLAS builds) would exceed 1e-12.
    X, y, Q = on_grid
    ours = KNNClassifier(7, p=p, weights=weights, algorithm="brute").fit(X, y)
    theirs = KNeighborsClassifier(7, p=p, weights=weights, algorithm="brute").fit(X, y)
    np.testing.assert_allclose(ours.predict_proba(Q), theirs.predict_proba(Q), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(ours.predict(Q), theirs.predict(Q))


@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_predict_proba_matches_loop_reference(continuous, weights):
    X, y, Q = continuous
    got = KNNClassifier(5, p=2, weights=weights, algorithm="brute").fit(X, y).predict_proba(Q)
    np.testing.assert_allclose(got, reference.knn_proba(X, y, Q, 5, 2, weights), atol=1e-12)


def test_exact_match_takes_all_the_weight(continuous):
    X, y, _ = continuous
    proba = KNNClassifier(9, weights="distance").fit(X, y).predict_proba(X[:1])
    assert proba[0, np.searchsorted(np.unique(y), y[0])] == 1.0, "d = 0 neighbour decides"


@pytest.mark.parametrize("p", [1, 2, 3, np.inf])
def test_all_algorithms_return_the_same_neighbours(p):
    X, y = load_digits(return_X_y=True)  # integer pixels: plenty of exact ties
    X_train, X_query = X[:600], X[600:800]
    results = {
        algorithm: KNNClassifier(6, p=p, algorithm=algorithm)
        .fit(X_train, y[:600])
        .kneighbors(X_query)
        for algorithm in ("brute", "kd_tree", "ball_tree")
    }
    for algorithm in ("kd_tree", "ball_tree"):
        np.testing.assert_array_equal(
            results[algorithm][1], results["brute"][1], err_msg=f"{algorithm} vs brute"
        )
        np.testing.assert_allclose(results[algorithm][0], results["brute"][0], rtol=1e-12)


@pytest.mark.parametrize("algorithm", ["brute", "kd_tree", "ball_tree"])
def test_kneighbors_without_X_excludes_self(algorithm):
    X, y = load_digits(return_X_y=True)
    X = X[:300]
    model = KNNClassifier(4, algorithm=algorithm).fit(X, y[:300])
    dist, ind = model.kneighbors()
    ref_dist, ref_ind = reference.kneighbors(X, None, 4, 2)
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12)


def test_vote_ties_go_to_the_smallest_label():
    X = np.array([[0.0], [1.0], [-1.0], [2.0]])
    y = np.array([7, 3, 3, 7])
    # Query 0.5 with k=2: neighbours 0 (label 7, d=0.5) and 1 (label 3, d=0.5): one vote each.
    assert KNNClassifier(2).fit(X, y).predict([[0.5]])[0] == 3


def test_auto_picks_a_tree_for_low_dimensional_data(continuous):
    X, y, _ = continuous
    assert KNNClassifier().fit(X, y).algorithm_ == "kd_tree"
    assert KNNClassifier().fit(np.hstack([X] * 5), y).algorithm_ == "brute"


def test_works_in_cross_val_score_and_pipeline():
    X, y = load_digits(return_X_y=True)
    scores = cross_val_score(make_pipeline(StandardScaler(), KNNClassifier(3)), X, y, cv=3)
    reference_scores = cross_val_score(
        make_pipeline(StandardScaler(), KNeighborsClassifier(3)), X, y, cv=3
    )
    assert scores.shape == (3,)
    # Equal, not close: on these fixed folds every query's 3rd and 4th neighbour distances
    # differ by at least 3.5e-5 relative, far above the worst float64 rounding of
    # scikit-learn's |x|^2 - 2 x.y + |y|^2 (66 u (|x| + |y|)^2, at most 6e-12 of d^2
    # here), so every BLAS finds knnlab's neighbours; equal votes go to the smallest label.
    np.testing.assert_array_equal(scores, reference_scores)
    assert scores.mean() > 0.9, f"digits accuracy should be high, got {scores}"


def test_string_labels_round_trip(continuous):
    X, y, Q = continuous
    names = np.array(["cat", "dog", "emu"])[y]
    model = KNNClassifier(5).fit(X, names)
    assert model.classes_.tolist() == ["cat", "dog", "emu"]
    assert set(model.predict(Q)) <= {"cat", "dog", "emu"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n_neighbors": 0}, "n_neighbors >= 1"),
        ({"p": 0.5}, "p must be >= 1"),
        ({"weights": "inverse"}, "weights must be one of uniform, distance"),
        ({"algorithm": "lsh"}, "algorithm must be one of"),
    ],
)
def test_bad_params_fail_at_fit(continuous, params, message):
    X, y, _ = continuous
    with pytest.raises(ValueError, match=message):
        KNNClassifier(**params).fit(X, y)


def test_k_larger_than_training_set_fails_clearly(continuous):
    X, y, Q = continuous
    with pytest.raises(ValueError, match="n_samples_fit = 10, n_neighbors = 11"):
        KNNClassifier(11).fit(X[:10], y[:10]).predict(Q)


def test_each_rule_is_checked_once_per_boundary(continuous, monkeypatch):
    # Given a fitted brute-force model (fit checked k and p, validate_data the rows)
    from knnlab import neighbors

    X, y, Q = continuous
    model = KNNClassifier(5, p=3, algorithm="brute").fit(X, y)
    expected = neighbors.kneighbors(X, Q, 5, p=3)
    # When it searches, the public search's argument checks are not run again
    calls = []
    real = neighbors.check_search_inputs
    monkeypatch.setattr(
        neighbors, "check_search_inputs", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    distances, indices = model.kneighbors(Q)
    assert calls == [], "the fitted model's search re-checked what fit checked"
    # Then the answer is the public search's, bit for bit
    np.testing.assert_array_equal(distances, expected[0])
    np.testing.assert_array_equal(indices, expected[1])
    # And an explicit k is a public input: checked with the same rule as the constructor's
    with pytest.raises(TypeError, match="n_neighbors must be an integer, got True"):
        model.kneighbors(Q, n_neighbors=True)
    with pytest.raises(ValueError, match="Expected n_neighbors >= 1"):
        model.kneighbors(Q, n_neighbors=0)


def test_wrong_feature_count_fails_clearly(continuous):
    X, y, _ = continuous
    with pytest.raises(ValueError, match="4 features"):
        KNNClassifier().fit(X, y).predict(np.zeros((2, 3)))


def _regression_problem(rng, n_outputs):
    X = rng.normal(size=(120, 5))
    y = rng.normal(size=(120,) if n_outputs is None else (120, n_outputs))
    Q = rng.normal(size=(30, 5))
    Q[0] = X[3]  # an exact match takes all the weight under "distance"
    return X, y, Q


@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize("n_outputs", [None, 3])
@pytest.mark.parametrize("p", [1, 2, 3])
def test_regressor_matches_loop_reference(rng, weights, n_outputs, p):
    X, y, Q = _regression_problem(rng, n_outputs)
    ours = KNNRegressor(6, p=p, weights=weights, algorithm="brute").fit(X, y).predict(Q)
    expected = reference_extra.knn_regression(X, y, Q, 6, p, weights)
    assert ours.shape == expected.shape
    if weights == "distance":
        np.testing.assert_array_equal(ours[0], y[3], err_msg="d = 0 takes all the weight")
    # Both compute distances from the differences (equal to a few ulps) and add 6 weighted
    # standard-normal targets: they differ by a few eps times max |y|, below 1e-13.
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize("n_outputs", [None, 3])
def test_regressor_matches_scikit_learn(rng, weights, n_outputs):
    # On the dyadic grid scikit-learn's p = 2 distances are exact
    # (tests/support/exact_inputs.py): the exact match is at d = 0 for it too. On arbitrary
    # floats it can find 4e-8 there, depending on the BLAS, and weigh the match 2.5e7
    # instead of all.
    X, y, Q = _regression_problem(rng, n_outputs)
    X, Q = exact_inputs.on_grid(X), exact_inputs.on_grid(Q)
    ours = KNNRegressor(6, weights=weights, algorithm="brute").fit(X, y).predict(Q)
    theirs = KNeighborsRegressor(6, weights=weights, algorithm="brute").fit(X, y).predict(Q)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_thread_count_does_not_change_predictions(continuous, n_jobs):
    X, y, Q = continuous
    single = KNNClassifier(5, algorithm="brute", n_jobs=1).fit(X, y).predict_proba(Q)
    many = KNNClassifier(5, algorithm="brute", n_jobs=n_jobs).fit(X, y).predict_proba(Q)
    np.testing.assert_array_equal(single, many)
