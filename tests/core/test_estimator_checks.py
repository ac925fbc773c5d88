"""scikit-learn's own estimator checks, run on both estimators and on each exact search
(auto picks a kd-tree for the checks' few features; brute is knnlab's prepared search)."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from knnlab import KNNClassifier, KNNRegressor


@parametrize_with_checks(
    [
        KNNClassifier(),
        KNNRegressor(),
        KNNClassifier(algorithm="kd_tree"),
        KNNClassifier(algorithm="brute"),
        KNNRegressor(algorithm="brute"),
    ]
)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
