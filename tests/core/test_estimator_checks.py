"""scikit-learn's own estimator checks, run on both estimators."""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from knnlab import KNNClassifier, KNNRegressor


@parametrize_with_checks([KNNClassifier(), KNNRegressor(), KNNClassifier(algorithm="kd_tree")])
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)
