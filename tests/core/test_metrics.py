"""knnlab.metrics against scikit-learn and loop references."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as sk

from knnlab import metrics

from ..support import reference


@pytest.fixture
def predictions(rng):
    y_true = rng.integers(0, 5, size=400)
    noisy = rng.integers(0, 5, size=400)
    y_pred = np.where(rng.random(400) < 0.7, y_true, noisy)
    scores = rng.random((400, 5)) + np.eye(5)[y_true] * rng.random((400, 1))
    proba = scores / scores.sum(axis=1, keepdims=True)
    return y_true, y_pred, proba


def test_accuracy(predictions):
    y_true, y_pred, _ = predictions
    assert metrics.accuracy_score(y_true, y_pred) == pytest.approx(
        sk.accuracy_score(y_true, y_pred), abs=1e-12
    )


def test_confusion_matrix_matches_loop_and_scikit_learn(predictions):
    y_true, y_pred, _ = predictions
    cm = metrics.confusion_matrix(y_true, y_pred)
    np.testing.assert_array_equal(cm, reference.confusion(y_true, y_pred, list(range(5))))
    np.testing.assert_array_equal(cm, sk.confusion_matrix(y_true, y_pred))


def test_confusion_matrix_respects_label_order():
    cm = metrics.confusion_matrix(["b", "a", "b"], ["b", "b", "a"], labels=["b", "a"])
    np.testing.assert_array_equal(cm, [[1, 1], [1, 0]])


@pytest.mark.parametrize("average", ["micro", "macro", "weighted", None])
def test_precision_recall_f1_match_scikit_learn(predictions, average):
    y_true, y_pred, _ = predictions
    ours = metrics.precision_recall_fscore_support(y_true, y_pred, average=average)
    theirs = sk.precision_recall_fscore_support(y_true, y_pred, average=average)
    for name, a, b in zip(("precision", "recall", "f1"), ours[:3], theirs[:3], strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12, err_msg=name)


def test_binary_average_scores_the_positive_label(rng):
    y_true = rng.integers(0, 2, 200)
    y_pred = np.where(rng.random(200) < 0.8, y_true, 1 - y_true)
    for pos_label in (0, 1):
        ours = metrics.f1_score(y_true, y_pred, average="binary", pos_label=pos_label)
        theirs = sk.f1_score(y_true, y_pred, average="binary", pos_label=pos_label)
        assert ours == pytest.approx(theirs, abs=1e-12)


def test_undefined_precision_warns_and_is_nan_not_zero():
    y_true = np.array([0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 0, 0, 0])  # classes 1 and 2 never predicted
    with pytest.warns(metrics.UndefinedMetricWarning, match="precision is undefined"):
        precision, _, f1, _ = metrics.precision_recall_fscore_support(y_true, y_pred, average=None)
    assert np.isnan(precision[1:]).all(), "undefined precision must be NaN, not 0"
    assert precision[0] == pytest.approx(2 / 5), "2 of the 5 predicted 0s are right"
    np.testing.assert_array_equal(f1[1:], [0.0, 0.0], err_msg="F1 of a missed class is 0")
    with pytest.warns(metrics.UndefinedMetricWarning):
        macro = metrics.precision_score(y_true, y_pred, average="macro")
    expected = sk.precision_score(y_true, y_pred, average="macro", zero_division=np.nan)
    assert macro == pytest.approx(expected), "macro averages the defined classes"


@pytest.mark.parametrize("average", ["macro", "weighted"])
def test_roc_auc_one_vs_rest_matches_scikit_learn(predictions, average):
    y_true, _, proba = predictions
    ours = metrics.roc_auc_score(y_true, proba, average=average)
    theirs = sk.roc_auc_score(y_true, proba, multi_class="ovr", average=average)
    assert ours == pytest.approx(theirs, abs=1e-12)


def test_roc_auc_matches_loop_reference_with_tied_scores(rng):
    y = rng.integers(0, 2, 120)
    scores = np.round(rng.random(120), 1)  # 11 distinct values: many ties
    assert metrics.roc_auc_score(y, scores) == pytest.approx(reference.auc(y == 1, scores))
    assert metrics.roc_auc_score(y, scores) == pytest.approx(sk.roc_auc_score(y, scores))


def test_roc_auc_binary_with_two_columns_uses_the_second(rng):
    y = rng.integers(0, 2, 100)
    p1 = rng.random(100)
    two_columns = np.column_stack([1 - p1, p1])
    assert metrics.roc_auc_score(y, two_columns) == pytest.approx(sk.roc_auc_score(y, p1))


def test_roc_auc_single_class_warns_and_returns_nan():
    with pytest.warns(metrics.UndefinedMetricWarning, match="only one class"):
        assert np.isnan(metrics.roc_auc_score(np.ones(5), np.linspace(0, 1, 5)))


def test_roc_auc_class_absent_from_y_true_is_nan_for_that_class(rng):
    y = rng.integers(0, 2, 50)  # labels 0, 1 present; 2 absent
    proba = rng.dirichlet(np.ones(3), size=50)
    with pytest.warns(metrics.UndefinedMetricWarning, match=r"labels \[2\]"):
        per_class = metrics.roc_auc_score(y, proba, labels=[0, 1, 2], average=None)
    assert np.isnan(per_class[2]) and np.isfinite(per_class[:2]).all()


def test_metrics_do_not_depend_on_sample_order(predictions, rng):
    y_true, y_pred, proba = predictions
    order = rng.permutation(len(y_true))
    assert metrics.f1_score(y_true, y_pred) == metrics.f1_score(y_true[order], y_pred[order])
    assert metrics.roc_auc_score(y_true, proba) == pytest.approx(
        metrics.roc_auc_score(y_true[order], proba[order]), abs=1e-15
    )


def test_classification_scores_reports_every_headline_metric(predictions):
    y_true, y_pred, proba = predictions
    scores = metrics.classification_scores(y_true, y_pred, proba, np.arange(5))
    assert set(scores) == {
        "accuracy",
        "precision_macro",
        "recall_macro",
        "f1_macro",
        "f1_weighted",
        "roc_auc_ovr",
    }
    assert scores["roc_auc_ovr"] == pytest.approx(
        sk.roc_auc_score(y_true, proba, multi_class="ovr"), abs=1e-12
    )


def test_length_mismatch_is_refused():
    with pytest.raises(ValueError, match="same length"):
        metrics.confusion_matrix([0, 1], [0])


def test_roc_curve_matches_scikit_learn_and_auc(rng):
    y = rng.integers(0, 2, 200) == 1
    score = np.round(rng.random(200), 2)
    fpr, tpr, thresholds = metrics.roc_curve(y, score)
    sk_fpr, sk_tpr, sk_thresholds = sk.roc_curve(y, score, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thresholds[1:], sk_thresholds[1:])
    assert np.trapezoid(tpr, fpr) == pytest.approx(metrics.roc_auc_score(y, score), abs=1e-12)


def test_precision_recall_curve_matches_scikit_learn(rng):
    y = rng.integers(0, 2, 150) == 1
    score = np.round(rng.random(150), 2)
    precision, recall, thresholds = metrics.precision_recall_curve(y, score)
    sk_precision, sk_recall, sk_thresholds = sk.precision_recall_curve(y, score)
    np.testing.assert_allclose(precision, sk_precision)
    np.testing.assert_allclose(recall, sk_recall)
    np.testing.assert_allclose(thresholds, sk_thresholds)


def test_threshold_for_precision_is_the_lowest_that_reaches_it():
    y = np.array([0, 0, 1, 0, 1, 1, 1])
    score = np.array([0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 0.9])
    found = metrics.threshold_for_precision(y, score, 0.75)
    # Predicting positive for score >= 0.3: 4 positives of 5 predicted (0.8) and all 4 found.
    assert found == {
        "threshold": 0.3,
        "precision": 0.8,
        "recall": 1.0,
        "false_positive_rate": pytest.approx(1 / 3),
    }
    assert metrics.threshold_for_precision(y, -score, 0.99) is None


@pytest.mark.parametrize("average", ["macro", "micro", "weighted", "samples"])
def test_multilabel_f1_matches_scikit_learn(rng, average):
    Y_true = rng.random((300, 4)) < 0.4
    Y_pred = np.where(rng.random((300, 4)) < 0.8, Y_true, ~Y_true)
    Y_true[:5] = False  # rows with no label at all
    Y_pred[:3] = False
    ours = metrics.multilabel_f1_score(Y_true, Y_pred, average=average)
    theirs = sk.f1_score(Y_true, Y_pred, average=average, zero_division=np.nan)
    assert ours == pytest.approx(theirs, abs=1e-12)
