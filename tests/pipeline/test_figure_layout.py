"""The report's figures read at the size they are saved (issue 29), on digits (8 x 8 images,
labels 0-9) and on Fashion-MNIST's shape (28 x 28 images, its long class names): no text
overlaps another (the bounding boxes matplotlib reports after drawing), the CV legend sits
beside its curves rather than on them, and the confused-pair thumbnails are large enough
to see (at least 100 px each in the saved PNG)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text
from sklearn.datasets import load_digits

from knnlab.estimators import KNNClassifier
from knnlab.pipeline.analysis import tuning, votes
from knnlab.pipeline.io.artifacts import SplitInfo
from knnlab.pipeline.io.params import parse_params
from knnlab.pipeline.presentation import explanations, figure_style, figures

FASHION_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot"]  # fmt: skip
SAVED_DPI = figure_style.STYLE["savefig.dpi"]


@pytest.fixture(scope="module")
def digits_results():
    """The configured model's test predictions on digits and a grid over k, p = 1, 2, 3 and
    both weightings (the default grid's shape, whose legend once covered the curves)."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = X[:1300], X[1300:], y[:1300], y[1300:]
    model = KNNClassifier(5).fit(X_train, y_train)
    proba = model.predict_proba(X_test)
    params = parse_params(
        {
            "tune": {
                "cv": 3,
                "grid": {
                    "n_neighbors": [1, 3, 5, 9, 15],
                    "p": [1, 2, 3],
                    "weights": ["uniform", "distance"],
                },
            }
        }
    )
    result, summary = tuning.tune(params, X_train, y_train)
    y_pred = model.classes_[proba.argmax(axis=1)]
    return X_test, y_test, y_pred, proba, model.classes_, result.cv_results, summary


def _split(name: str, image_shape: list[int], class_names: dict) -> SplitInfo:
    n_features = image_shape[0] * image_shape[1]
    return SplitInfo(
        name=name, n_samples=1797, n_features=n_features, n_classes=10,
        feature_columns=[f"pixel_{i}" for i in range(n_features)], label_column="label",
        image_shape=image_shape, class_names=class_names, test_size=0.25, seed=0,
        n_train=1300, n_test=497,
    )  # fmt: skip


def _made(dataset: str, digits_results) -> dict:
    X_test, y_test, y_pred, proba, classes, cv_results, summary = digits_results
    if dataset == "digits":
        split, images = _split("digits", [8, 8], {}), X_test
    else:  # Fashion-MNIST's shape and names: the digits blown up to 28 x 28
        names = {str(i): name for i, name in enumerate(FASHION_NAMES)}
        split = _split("fashion_mnist", [28, 28], names)
        images = np.kron(X_test.reshape(-1, 8, 8), np.ones((1, 4, 4)))[:, 2:30, 2:30]
        images = images.reshape(len(X_test), -1)
    test = figures.TestPredictions(y_test, y_pred, proba, classes, images)
    return figures.pipeline_figures(split, test, summary, cv_results)


def _drawn(fig):
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _overlapping_texts(fig) -> list[tuple[str, str]]:
    renderer = _drawn(fig)
    # An axes turned off (the image grids) draws no ticks, though its tick labels exist.
    hidden = set()
    for ax in fig.findobj(Axes):
        if not ax.axison:
            hidden |= set(ax.xaxis.findobj(Text)) | set(ax.yaxis.findobj(Text))
    boxes = []
    for text in fig.findobj(Text):
        if text in hidden or not text.get_visible() or not text.get_text().strip():
            continue
        box = text.get_window_extent(renderer)
        if box.width > 0 and box.height > 0:
            boxes.append((text.get_text(), box.expanded(0.98, 0.9)))  # touching is fine
    return [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2)
            if box_a.overlaps(box_b)]  # fmt: skip


@pytest.mark.parametrize("dataset", ["digits", "fashion_mnist"])
def test_no_text_overlaps_another_in_any_figure(dataset, digits_results):
    made = _made(dataset, digits_results)
    assert {"confusion_matrix.png", "cv_score_vs_k.png", "confused_pair.png"} <= set(made)
    for name, fig in made.items():
        with figure_style.styled():
            overlaps = _overlapping_texts(fig)
        assert not overlaps, f"{dataset} {name}: overlapping text {overlaps[:5]}"


def test_the_cv_legend_sits_beside_the_curves(digits_results):
    fig = _made("digits", digits_results)["cv_score_vs_k.png"]
    renderer = _drawn(fig)
    [ax] = fig.axes
    legend = ax.get_legend().get_window_extent(renderer)
    assert not legend.overlaps(ax.get_window_extent(renderer)), "legend on the plot area"
    assert len(ax.get_legend().get_texts()) >= 6, "one entry per p and weighting"


@pytest.mark.parametrize("dataset", ["digits", "fashion_mnist"])
def test_confused_pair_thumbnails_are_large_enough_to_see(dataset, digits_results):
    fig = _made(dataset, digits_results)["confused_pair.png"]
    renderer = _drawn(fig)
    shown = [ax for ax in fig.findobj(lambda a: hasattr(a, "get_images")) if ax.get_images()]
    assert shown, "images drawn"
    scale = SAVED_DPI / fig.dpi
    widths = [ax.get_window_extent(renderer).width * scale for ax in shown]
    assert min(widths) >= 100, f"{dataset}: thumbnails {min(widths):.0f} px wide"


@pytest.mark.parametrize("dataset", ["digits", "fashion_mnist"])
def test_the_suspicious_labels_figure_has_no_overlapping_text(dataset):
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    flipped = rng.choice(len(y), 20, replace=False)
    y = y.copy()
    y[flipped] = (y[flipped] + 1) % 10  # something to find
    oof = votes.out_of_fold_votes({"n_neighbors": 5}, X, y)
    suspicious = votes.explain_suspicious(oof, y)
    assert len(suspicious) == votes.SUSPICIOUS_DRAWN
    if dataset == "digits":
        images, shape, name = X, [8, 8], str
    else:  # Fashion-MNIST's shape and long names
        images = np.kron(X.reshape(-1, 8, 8), np.ones((1, 4, 4)))[:, 2:30, 2:30]
        images, shape = images.reshape(len(X), -1), [28, 28]
        name = lambda label: FASHION_NAMES[int(label)]  # noqa: E731
    fig = explanations.explanation_figure(
        suspicious, images, images, shape, name, words=explanations.SUSPICIOUS
    )
    with figure_style.styled():
        overlaps = _overlapping_texts(fig)
    assert not overlaps, f"{dataset}: overlapping text {overlaps[:5]}"
    assert fig.texts[0].get_text().startswith("Most suspicious labels") or any(
        t.get_text().startswith("Most suspicious labels") for t in fig.findobj(Text)
    )
