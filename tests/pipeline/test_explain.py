"""The worst errors and their neighbours, against slow Python-loop references."""

from __future__ import annotations

import math

import matplotlib.colors as mcolors
import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from knnlab.estimators import KNNClassifier
from knnlab.pipeline.analysis import explain
from knnlab.pipeline.presentation import explanations


def _worst_errors_reference(y_true, y_pred, proba, classes, limit):
    """Loop: confidence of each wrong row, sorted by (-confidence, row)."""
    found = []
    for i in range(len(y_true)):
        if y_true[i] != y_pred[i]:
            column = list(classes).index(y_pred[i])
            found.append((-float(proba[i, column]), i))
    found.sort()
    return [i for _, i in found[:limit]]


def _votes(rng, n, classes, k=5):
    """Predictions as a uniform k-NN makes them: proba = counts / k (so confidences tie
    often), y_pred its argmax (the first class on equal votes), y_true agreeing 60% of the
    time."""
    counts = rng.multinomial(k, np.full(len(classes), 1 / len(classes)), size=n)
    proba = counts / k
    y_pred = classes[proba.argmax(axis=1)]
    y_true = np.where(rng.random(n) < 0.6, y_pred, rng.choice(classes, n))
    return y_true, y_pred, proba


@pytest.mark.parametrize("limit", [0, 1, 3, 6, 1000])
def test_worst_errors_match_a_loop_on_tied_confidences(rng, limit):
    classes = np.array([7, 2, 5])  # not sorted: columns follow classes, not label order
    y_true, y_pred, proba = _votes(rng, 200, classes)

    got = explain.worst_errors(y_true, y_pred, proba, classes, limit=limit)

    expected = _worst_errors_reference(y_true, y_pred, proba, classes, limit)
    assert got.tolist() == expected, "confidence descending, then row ascending"
    assert got.dtype == np.int64


def test_worst_errors_returns_every_error_when_fewer_than_the_limit(rng):
    classes = np.array([0, 1, 2])
    y_true, y_pred, proba = _votes(rng, 30, classes)
    y_true = y_pred.copy()
    y_true[[3, 17, 4]] = (y_pred[[3, 17, 4]] + 1) % 3  # three errors

    got = explain.worst_errors(y_true, y_pred, proba, classes, limit=6)

    assert sorted(got.tolist()) == [3, 4, 17], "all three errors, no correct row"
    assert got.tolist() == _worst_errors_reference(y_true, y_pred, proba, classes, 6)


def test_worst_errors_is_empty_when_every_prediction_is_right(rng):
    classes = np.array(["a", "b"])
    _, y_pred, proba = _votes(rng, 25, classes)

    got = explain.worst_errors(y_pred.copy(), y_pred, proba, classes)

    assert got.shape == (0,), f"no errors, no rows; got {got}"


def test_worst_errors_do_not_depend_on_the_row_order_beyond_ties(rng):
    classes = np.array([0, 1, 2, 3])
    y_true, y_pred, proba = _votes(rng, 120, classes)
    proba = proba + rng.random(proba.shape) * 1e-3  # distinct confidences: no ties
    order = rng.permutation(120)

    got = explain.worst_errors(y_true, y_pred, proba, classes, limit=10)
    shuffled = explain.worst_errors(y_true[order], y_pred[order], proba[order], classes, limit=10)

    assert order[shuffled].tolist() == got.tolist(), "same errors, same ranking"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"limit": -1}, "limit to be an integer >= 0"),
        ({"classes": np.array([0, 1])}, "proba of shape"),
        ({"y_pred": np.array([0, 1, 9])}, r"\[9\] are not"),
    ],
)
def test_worst_errors_explain_bad_arguments(kwargs, message):
    args = {
        "y_true": np.array([0, 1, 2]),
        "y_pred": np.array([0, 2, 2]),
        "proba": np.full((3, 3), 1 / 3),
        "classes": np.array([0, 1, 2]),
    } | kwargs
    with pytest.raises(ValueError, match=message):
        explain.worst_errors(**args)


def _kneighbors_reference(X_train, X_query, k: int):
    """Loop over training rows with exact integer squared distances; ties by lower index."""
    distances, indices = [], []
    for query in X_query:
        pairs = sorted(
            (sum((int(a) - int(b)) ** 2 for a, b in zip(query, x, strict=True)), j)
            for j, x in enumerate(X_train)
        )[:k]
        distances.append([math.sqrt(d2) for d2, _ in pairs])
        indices.append([j for _, j in pairs])
    return np.array(distances), np.array(indices)


@pytest.fixture(scope="module")
def digits_subset():
    """Integer-valued digits; the training rows end with copies of some earlier ones, so
    equal distances occur and the tie rule decides."""
    X, y = load_digits(return_X_y=True)
    X_train = np.vstack([X[:240], X[:60]])
    y_train = np.concatenate([y[:240], y[:60]])
    # The test rows: unseen digits, and some training rows themselves (distance 0, twice).
    X_test, y_test = np.vstack([X[240:300], X[:10]]), np.concatenate([y[240:300], y[:10]])
    return X_train, y_train, X_test, y_test


def _fitted(digits_subset, **params):
    X_train, y_train, X_test, _ = digits_subset
    model = KNNClassifier(**params).fit(X_train, y_train)
    proba = model.predict_proba(X_test)
    return model, model.predict(X_test), proba


@pytest.mark.parametrize("k", [1, 5, 12])
def test_explained_neighbours_match_a_brute_force_loop(digits_subset, k):
    X_train, y_train, X_test, y_test = digits_subset
    model, y_pred, proba = _fitted(digits_subset, n_neighbors=k)
    rows = np.array([3, 0, 65, 62, 41, 60])  # 60..69 are training rows 0..9

    got = explain.explain_rows(
        model, X_train, y_train, X_test, y_test, y_pred, proba, model.classes_, rows
    )

    distance, index = _kneighbors_reference(X_train, X_test[rows], k)
    np.testing.assert_array_equal(got.neighbor_index, index, "distance, then lower index")
    np.testing.assert_allclose(got.neighbor_distance, distance, rtol=1e-14, atol=0)
    np.testing.assert_array_equal(got.neighbor_label, y_train[index])
    assert got.neighbor_index.shape == got.neighbor_distance.shape == (len(rows), k)
    assert got.k == k and len(got) == len(rows)
    np.testing.assert_array_equal(got.rows, rows)
    np.testing.assert_array_equal(got.y_true, y_test[rows])
    np.testing.assert_array_equal(got.y_pred, y_pred[rows])
    np.testing.assert_array_equal(got.confidence, proba[rows, y_pred[rows]])  # classes 0..9
    expected_votes = [(y_train[i] == p).sum() for i, p in zip(index, y_pred[rows], strict=True)]
    np.testing.assert_array_equal(got.predicted_votes, expected_votes)
    np.testing.assert_allclose(got.vote_share, got.confidence, err_msg="uniform: votes / k")
    # Test rows 60..69 are training rows 0..9, whose copies are training rows 240..249:
    # both at distance 0, the lower index first.
    if k > 1:
        for i in np.flatnonzero(rows >= 60):
            original = rows[i] - 60
            assert got.neighbor_index[i, :2].tolist() == [original, original + 240]
            assert got.neighbor_distance[i, :2].tolist() == [0.0, 0.0]


def test_explained_distances_are_in_the_models_scaled_space(digits_subset):
    X_train, y_train, X_test, y_test = digits_subset
    model, y_pred, proba = _fitted(digits_subset, n_neighbors=4, scale="minmax", p=1)
    rows = np.arange(0, 70, 7)

    got = explain.explain_rows(
        model, X_train, y_train, X_test, y_test, y_pred, proba, model.classes_, rows
    )

    scale = lambda X: (X - model.scale_center_) / model.scale_factor_  # noqa: E731
    T, Q = scale(X_train), scale(X_test[rows])
    for i, query in enumerate(Q):
        all_d = np.array([np.abs(query - x).sum() for x in T])  # loop over training rows
        own = [np.abs(query - T[j]).sum() for j in got.neighbor_index[i]]
        np.testing.assert_allclose(got.neighbor_distance[i], own, rtol=1e-12)
        # The k smallest distances (tie order aside, which float rounding may decide).
        np.testing.assert_allclose(got.neighbor_distance[i], np.sort(all_d)[:4], rtol=1e-12)


def test_explain_rows_with_no_rows_and_with_bad_rows(digits_subset):
    X_train, y_train, X_test, y_test = digits_subset
    model, y_pred, proba = _fitted(digits_subset, n_neighbors=3)
    args = (model, X_train, y_train, X_test, y_test, y_pred, proba, model.classes_)

    empty = explain.explain_rows(*args, np.array([], dtype=np.int64))

    assert empty.neighbor_index.shape == (0, 3) and len(empty) == 0
    assert explanations.explanation_markdown(empty, str) == []
    with pytest.raises(ValueError, match=r"test rows in 0\.\.69"):
        explain.explain_rows(*args, np.array([70]))
    with pytest.raises(ValueError, match="300 training rows the model was fitted on"):
        explain.explain_rows(model, X_train[:10], *args[2:], np.array([0]))


@pytest.fixture(scope="module")
def worst(digits_subset):
    X_train, y_train, X_test, y_test = digits_subset
    model, y_pred, proba = _fitted(digits_subset, n_neighbors=12)
    rows = explain.worst_errors(y_test, y_pred, proba, model.classes_, limit=4)
    assert rows.size, "this subset has errors"
    return explain.explain_rows(
        model, X_train, y_train, X_test, y_test, y_pred, proba, model.classes_, rows
    )


def _name(label) -> str:
    return f"digit {label}"


def _is(colour, name) -> bool:
    return mcolors.same_color(colour, name)


@pytest.mark.parametrize("cap", [10, 12, 20])
def test_the_figure_shows_each_error_and_its_neighbours(digits_subset, worst, cap):
    X_train, _, X_test, _ = digits_subset
    shown = min(worst.k, cap)

    fig = explanations.explanation_figure(worst, X_train, X_test, (8, 8), _name, max_neighbors=cap)

    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == len(worst) * (1 + shown), "one row per error: test + neighbours"
    suptitle = fig.get_suptitle()
    assert suptitle.startswith("Most confident errors and their")
    assert (f"of k = {worst.k}" in suptitle) == (shown < worst.k), "the cap is stated"
    for i in range(len(worst)):
        row = image_axes[i * (1 + shown) : (i + 1) * (1 + shown)]
        title = row[0].title
        assert title.get_text() == (
            f"true digit {worst.y_true[i]} → predicted digit {worst.y_pred[i]} "
            f"({worst.confidence[i]:.2f})"
        )
        assert _is(title.get_color(), explanations.WRONG), "an error's title is red"
        np.testing.assert_array_equal(
            row[0].images[0].get_array(), X_test[worst.rows[i]].reshape(8, 8)
        )
        for j, ax in enumerate(row[1:]):
            label, d = worst.neighbor_label[i, j], worst.neighbor_distance[i, j]
            name, distance = ax.get_title().split(" · d=")
            assert name == f"digit {label}"
            assert float(distance) == pytest.approx(d, abs=0.05), "one decimal"
            colour = ax.title.get_color()
            if label == worst.y_pred[i]:
                assert _is(colour, explanations.WRONG), f"neighbour {j} of error {i}: wrong class"
            elif label == worst.y_true[i]:
                assert _is(colour, explanations.RIGHT), f"neighbour {j} of error {i}: true class"
            else:
                assert _is(colour, "black")
            np.testing.assert_array_equal(
                ax.images[0].get_array(), X_train[worst.neighbor_index[i, j]].reshape(8, 8)
            )
            assert ax.images[0].get_cmap().name == "gray_r"
            assert not ax.axison


def test_the_markdown_table_lists_each_explained_row(worst):
    lines = explanations.explanation_markdown(worst, _name, max_neighbors=worst.k)

    table = [line for line in lines if line.startswith("|")]
    assert table[0] == "| test row | true | predicted | confidence | neighbours |"
    assert len(table) == 2 + len(worst), "header, rule, one row per explained row"
    for i, line in enumerate(table[2:]):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[:3] == [
            str(worst.rows[i]),
            f"digit {worst.y_true[i]}",
            f"digit {worst.y_pred[i]}",
        ]
        assert cells[3] == f"{worst.confidence[i]:.2f} ({worst.predicted_votes[i]} of {worst.k})"
        neighbours = cells[4].split(", ")
        assert len(neighbours) == worst.k
        for j, text in enumerate(neighbours):
            label, distance = text.split("@")
            assert label == f"digit {worst.neighbor_label[i, j]}"
            assert float(distance) == pytest.approx(worst.neighbor_distance[i, j], abs=0.05)


def test_the_markdown_escapes_pipes_in_names(worst):
    lines = explanations.explanation_markdown(worst, lambda label: f"a|{label}")

    row = lines[-1]
    assert "a\\|" in row and row.count(" | ") == 4, "five cells, pipes in names escaped"


def test_the_worst_errors_of_the_configured_model_on_the_digits_test_split():
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=42
    )
    model = KNNClassifier(n_neighbors=5).fit(X_train, y_train)  # p=2, uniform
    y_pred, proba = model.predict(X_test), model.predict_proba(X_test)

    rows = explain.worst_errors(y_test, y_pred, proba, model.classes_, limit=len(y_test))
    got = explain.explain_rows(
        model, X_train, y_train, X_test, y_test, y_pred, proba, model.classes_, rows
    )

    wrong = np.flatnonzero(y_pred != y_test)
    assert sorted(rows.tolist()) == wrong.tolist(), "exactly the misclassified rows"
    ranked = sorted(wrong, key=lambda i: (-proba[i, y_pred[i]], i))
    assert rows.tolist() == ranked, "by confidence, then row"
    assert (got.y_true != got.y_pred).all()
    np.testing.assert_allclose(got.vote_share, got.confidence)
    top = explain.worst_errors(y_test, y_pred, proba, model.classes_)
    assert top.tolist() == ranked[:6], "the default limit keeps the six worst"


def test_the_markdown_lists_at_most_ten_neighbours_of_a_large_k(worst):
    lines = explanations.explanation_markdown(worst, _name, max_neighbors=2)
    assert lines[0].startswith(f"Each test row's 2 nearest of its k = {worst.k} as label@")
    cells = lines[-1].strip("|").split("|")
    assert cells[4].strip().split(", ")[2:] == ["…"], cells[4]
