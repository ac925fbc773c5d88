"""Each figure is checked for its content (curves, marks, labels), not only for existing."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits, make_moons

from knnlab import KNNClassifier, metrics
from knnlab.model_selection import grid_search_cv
from knnlab.pipeline.presentation import figure_style, figures, timing_figures


@pytest.fixture(scope="module")
def digits_predictions():
    X, y = load_digits(return_X_y=True)
    model = KNNClassifier(3).fit(X[::2], y[::2])
    proba = model.predict_proba(X[1::2])
    return y[1::2], model.classes_[proba.argmax(axis=1)], proba, X[1::2]


def _texts(ax) -> list[str]:
    return [t.get_text() for t in ax.texts]


def test_confusion_matrix_has_counts_and_zeroed_error_rates(digits_predictions):
    y_true, y_pred, _, _ = digits_predictions
    cm = metrics.confusion_matrix(y_true, y_pred)
    fig = figures.confusion_matrix_figure(cm, [str(i) for i in range(10)], "title")
    counts, errors = fig.axes[:2]  # the two panels (their colour bars follow)
    assert counts.get_xlabel() == "Predicted label" and counts.get_ylabel() == "True label"
    shown = counts.images[0].get_array()
    np.testing.assert_array_equal(shown, cm)
    rates = errors.images[0].get_array()
    assert np.all(np.diag(rates) == 0), "the error panel zeroes the diagonal"
    assert rates.max() <= 1
    assert str(cm[0, 0]) in _texts(counts)


def test_roc_figure_draws_one_curve_per_class_plus_averages(digits_predictions):
    y_true, _, proba, _ = digits_predictions
    fig = figures.roc_figure(y_true, proba, np.arange(10), [str(i) for i in range(10)])
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert len(labels) == 10 + 2 + 1, "10 classes, micro, macro, chance"
    assert any(label.startswith("micro-average (AUC") for label in labels)
    assert any(label.startswith("macro-average (AUC") for label in labels)
    macro = metrics.roc_auc_score(y_true, proba)
    assert f"macro-average (AUC {macro:.3f})" in labels
    assert ax.get_xlabel() == "False positive rate"


def test_precision_recall_figure_has_every_class(digits_predictions):
    y_true, _, proba, _ = digits_predictions
    fig = figures.precision_recall_figure(y_true, proba, np.arange(10), list("0123456789"))
    ax = fig.axes[0]
    assert len(ax.get_lines()) == 12 and ax.get_xlabel() == "Recall"


def test_binary_threshold_figure_marks_the_90_percent_precision_point(digits_predictions):
    y_true, _, proba, _ = digits_predictions
    is_five, score = y_true == 5, proba[:, 5]
    chosen = metrics.threshold_for_precision(is_five, score, 0.9)
    fig = figures.binary_threshold_figure(is_five, score, "5", 0.9)
    ax_t, ax_roc = fig.axes
    assert "Is it a 5?" in ax_t.get_title()
    marks = [line for line in ax_t.get_lines() if line.get_label().startswith("threshold")]
    assert len(marks) == 1 and "for 90% precision here" in marks[0].get_label()
    assert f"recall {chosen['recall']:.3f}" in " ".join(_texts(ax_t)), "values annotated"
    np.testing.assert_allclose(marks[0].get_xdata(), [chosen["threshold"]] * 2)
    roc_marks = [line for line in ax_roc.get_lines() if line.get_label().startswith("threshold")]
    np.testing.assert_allclose(
        roc_marks[0].get_xydata()[0], [chosen["false_positive_rate"], chosen["recall"]]
    )


@pytest.fixture(scope="module")
def tuned():
    X, y = load_digits(return_X_y=True)
    grid = {"n_neighbors": [1, 3, 5], "p": [1, 2], "weights": ["uniform", "distance"]}
    return grid_search_cv(X[:400], y[:400], {**grid, "algorithm": ["brute", "kd_tree"]}, cv=3)


def test_cv_score_figure_has_a_line_per_p_and_weighting_and_marks_the_best(tuned):
    fig = figures.cv_score_figure(tuned.cv_results, "accuracy", tuned.best_params)
    ax = fig.axes[0]
    lines = [line.get_label() for line in ax.get_lines()]
    assert sorted(lines[:-1]) == sorted(
        f"p={p}, {w}" for p in (1, 2) for w in ("distance", "uniform")
    )
    assert lines[-1].startswith("best: k=")
    assert len(ax.collections) == 4, "one +/- 1 std band per line"
    assert ax.get_xlabel() == "n_neighbors (k)"


def test_cv_heatmap_has_one_panel_per_weighting(tuned):
    fig = figures.cv_heatmap_figure(tuned.cv_results, "accuracy")
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 2 and panels[0].images[0].get_array().shape == (2, 3)


def test_search_speed_figure_has_a_bar_per_algorithm_and_p(tuned):
    fig = timing_figures.search_speed_figure(tuned.search_timings)
    _ax_fit, ax_search = fig.axes
    assert len(ax_search.patches) == 2 * 2, "2 algorithms x 2 values of p"
    assert {t.get_text() for t in ax_search.get_legend().get_texts()} == {"brute", "kd_tree"}


def test_confused_pair_is_the_largest_off_diagonal_pair():
    cm = np.array([[5, 1, 0], [0, 5, 4], [0, 3, 5]])
    assert figures.most_confused_pair(cm) == (1, 2)


def test_confused_pair_figure_rows(digits_predictions):
    y_true, y_pred, _, X = digits_predictions
    images = X.reshape(-1, 8, 8)
    fig = figures.confused_pair_figure(images, y_true, y_pred, (1, 8), ("1", "8"))
    _, body = fig.subfigs  # the heading, then one sub-figure per row, captioned
    titles = [row._suptitle.get_text() for row in body.subfigs]
    assert [len(row.axes) for row in body.subfigs] == [8, 8, 8, 8]
    assert [t.split(" (")[0] for t in titles] == [
        "true 1, predicted 1",
        "true 1, predicted 8",
        "true 8, predicted 1",
        "true 8, predicted 8",
    ]


def test_probability_surface_for_moons_draws_contours_and_both_splits():
    X, y = make_moons(200, noise=0.3, random_state=0)
    model = KNNClassifier(15).fit(X[:150], y[:150])
    fig = figures.probability_surface_figure(
        model, {"train": (X[:150], y[:150]), "test": (X[150:], y[150:])}, ["x0", "x1"], {}
    )
    ax = fig.axes[0]
    labels = {c.get_label() for c in ax.collections if c.get_label().startswith(("train", "test"))}
    assert labels == {"train: 0", "train: 1", "test: 0", "test: 1"}
    markers = {c.get_label(): c.get_paths()[0].vertices.shape[0] for c in ax.collections}
    assert markers["train: 0"] != markers["test: 0"], "train and test use distinct markers"
    assert fig.axes[1].get_ylabel().startswith("P(class"), "binary: probability colour bar"


def test_probability_surface_multiclass_shows_confidence():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(90, 2)) + np.repeat(np.eye(3, 2) * 3, 30, axis=0)
    y = np.repeat([0, 1, 2], 30)
    model = KNNClassifier(5, weights="distance").fit(X, y)
    fig = figures.probability_surface_figure(model, {"train": (X, y)}, ["a", "b"], {})
    assert fig.axes[1].get_ylabel().startswith("confidence")


def test_sample_gallery_titles_are_labels():
    images = np.zeros((5, 8, 8))
    fig = figures.sample_gallery_figure(images, [f"label {i}" for i in range(5)], "Samples")
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == [f"label {i}" for i in range(5)]


def test_saved_png_is_byte_stable(tmp_path, tuned):
    for name in ("a.png", "b.png"):
        figure_style.save(figures.cv_heatmap_figure(tuned.cv_results, "accuracy"), tmp_path / name)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_binary_threshold_figure_marks_a_threshold_chosen_elsewhere(digits_predictions):
    y_true, _, proba, _ = digits_predictions
    fig = figures.binary_threshold_figure(y_true == 5, proba[:, 5], "5", 0.9, threshold=0.5)
    [mark] = [line for line in fig.axes[0].get_lines() if line.get_label().startswith("thr")]
    assert "on training folds" in mark.get_label()
    at = metrics.rates_at_threshold(y_true == 5, proba[:, 5], 0.5)
    np.testing.assert_allclose(mark.get_ydata(), [at["precision"], at["recall"]])
