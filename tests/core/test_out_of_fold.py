"""Out-of-fold neighbours and votes against a loop over the folds with scikit-learn's
estimator, and the suspicious-label score against its definition (knnlab.label_issues)."""

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier

from knnlab import label_issues
from knnlab.estimators import KNNClassifier
from knnlab.out_of_fold import fold_ids, out_of_fold


@pytest.mark.parametrize("weights", ["uniform", "distance"])
@pytest.mark.parametrize("p", [1, 2])
def test_votes_equal_a_loop_over_scikit_learn_folds(weights, p):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 4))
    y = rng.integers(0, 3, 120)
    oof = out_of_fold(KNNClassifier(5, p=p, weights=weights), X, y)
    for fold, (fit, held) in enumerate(StratifiedKFold(5).split(X, y)):
        reference = KNeighborsClassifier(5, p=p, weights=weights).fit(X[fit], y[fit])
        distance, index = reference.kneighbors(X[held])
        np.testing.assert_array_equal(oof.folds[held], fold)
        np.testing.assert_array_equal(oof.neighbors[held], fit[index])
        np.testing.assert_allclose(oof.distances[held], distance, rtol=1e-12)
        np.testing.assert_allclose(oof.proba[held], reference.predict_proba(X[held]), atol=1e-12)
    assert oof.accuracy() == np.mean(oof.classes[oof.proba.argmax(axis=1)] == y)


def test_rows_out_of_every_fold_are_never_fitted_on_nor_scored():
    rng = np.random.default_rng(1)
    X, y = rng.normal(size=(60, 3)), np.repeat([0, 1, 2], 20)
    folds = fold_ids(y)
    folds[[0, 7, 33]] = -1
    oof = out_of_fold(KNNClassifier(3), X, y, folds)
    assert np.isnan(oof.proba[[0, 7, 33]]).all() and (oof.neighbors[[0, 7, 33]] == -1).all()
    kept = folds >= 0
    assert not np.isin(oof.neighbors[kept], [0, 7, 33]).any()
    assert (oof.folds[oof.neighbors[kept]] != oof.folds[kept][:, None]).all()


def test_suspicion_is_the_vote_against_the_label_and_ranks_by_it():
    rng = np.random.default_rng(2)
    X, y = rng.normal(size=(90, 2)), rng.integers(0, 3, 90)
    oof = out_of_fold(KNNClassifier(4), X, y)
    suspicion = label_issues.suspicion(oof)
    margin = label_issues.margin(oof)
    for i in range(len(y)):  # the definitions, one row at a time
        own = oof.proba[i, oof.y_code[i]]
        assert suspicion[i] == 1 - own
        assert margin[i] == max(v for c, v in enumerate(oof.proba[i]) if c != oof.y_code[i]) - own
    order = label_issues.most_suspicious(oof)
    mean = [float(np.mean(oof.distances[i])) for i in range(len(y))]
    expected = sorted(range(len(y)), key=lambda i: (-suspicion[i], -margin[i], mean[i], i))
    assert list(order) == expected


def test_planted_label_flips_on_digits_are_found():
    """2 % of digits' labels flipped at random, five seeds: the top 5 % by suspicion (the
    configured model, k = 5) holds every flipped row in each (measured: 100 %; the issue
    asks for >= 80 %), and the first 36 rows are mostly flips (measured: 78 to 86 %)."""
    X, y = load_digits(return_X_y=True)
    n_flip, top = round(0.02 * len(y)), int(np.ceil(0.05 * len(y)))
    for seed in range(5):
        rng = np.random.default_rng(seed)
        flipped = rng.choice(len(y), n_flip, replace=False)
        noisy = y.copy()
        noisy[flipped] = (y[flipped] + rng.integers(1, 10, n_flip)) % 10  # another class
        oof = out_of_fold(KNNClassifier(5), X, noisy)
        order = label_issues.most_suspicious(oof)
        found = np.isin(flipped, order[:top]).mean()
        precision = np.isin(order[:n_flip], flipped).mean()
        assert found >= 0.8, (seed, found)
        assert precision >= 0.7, (seed, precision)
