"""Explain a prediction by its neighbours: the most confident errors of the test split, the
training rows that voted for them, as a figure (image data) and a markdown table (any data).

Pure functions: arrays and a fitted :class:`knnlab.estimators.KNNClassifier` in, an
:class:`Explanation`, a matplotlib Figure or markdown lines out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from knnlab.pipeline.figure_style import styled, subplots

MAX_NEIGHBORS_SHOWN = 10
WRONG = "firebrick"  # the wrong prediction, and neighbours of its class
RIGHT = "forestgreen"  # neighbours of the true class


def _predicted_confidence(y_pred: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Probability of the predicted class of each row: (n,) from y_pred (n,) and proba
    (n, n_classes) with columns in ``classes`` order."""
    y_pred, proba, classes = np.asarray(y_pred), np.asarray(proba), np.asarray(classes)
    if y_pred.ndim != 1 or proba.shape != (len(y_pred), len(classes)):
        raise ValueError(
            f"Expected y_pred of shape (n,) and proba of shape (n, n_classes) = "
            f"({len(y_pred)}, {len(classes)}), but got y_pred {y_pred.shape} and proba "
            f"{proba.shape}; pass predict_proba's output with its classes_"
        )
    is_class = y_pred[:, None] == classes[None, :]  # (n, n_classes)
    missing = ~is_class.any(axis=1)
    if missing.any():
        raise ValueError(
            f"Expected every predicted label among classes {classes.tolist()}, but "
            f"{y_pred[missing][:5].tolist()} are not; pass the model's classes_"
        )
    return proba[np.arange(len(y_pred)), is_class.argmax(axis=1)]


def worst_errors(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    limit: int = 6,
) -> np.ndarray:
    """Row indices of the most confident wrong predictions.

    Parameters
    ----------
    y_true, y_pred : ndarray of shape (n,)
    proba : ndarray of shape (n, n_classes)
        Class probabilities, columns in ``classes`` order; the confidence of a row is the
        probability of its predicted class.
    classes : ndarray of shape (n_classes,)
    limit : int, default 6
        At most this many rows.

    Returns
    -------
    ndarray of shape (min(limit, n_errors),), int64
        Rows where ``y_pred != y_true``, by confidence descending; equal confidences in
        ascending row order. Empty when there are no errors.
    """
    if isinstance(limit, bool) or not isinstance(limit, int | np.integer) or limit < 0:
        raise ValueError(f"Expected limit to be an integer >= 0, got {limit!r}")
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"Expected y_true and y_pred of the same shape (n,), got {y_true.shape} and "
            f"{y_pred.shape}"
        )
    confidence = _predicted_confidence(y_pred, proba, classes)
    wrong = np.flatnonzero(y_true != y_pred)  # ascending rows
    # A stable sort of the negated confidences keeps equal ones in ascending row order.
    order = np.argsort(-confidence[wrong], kind="stable")
    return wrong[order[:limit]].astype(np.int64)


@dataclass(frozen=True)
class Explanation:
    """Explained test rows and their k nearest training rows (m rows, k neighbours).

    rows : (m,) test-split row indices. y_true, y_pred : (m,) labels. confidence : (m,) the
    probability of the predicted class. neighbor_index : (m, k) training-row indices, nearest
    first (equal distances: lower index first). neighbor_label : (m, k) their labels.
    neighbor_distance : (m, k) their distances in the model's feature space (after its
    scaling, if any). predicted_votes : (m,) how many of the k neighbours have the predicted
    label. With uniform weights ``predicted_votes / k`` is the confidence; with distance
    weights the confidence is the distance-weighted share and may differ.
    """

    rows: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    confidence: np.ndarray
    neighbor_index: np.ndarray
    neighbor_label: np.ndarray
    neighbor_distance: np.ndarray
    predicted_votes: np.ndarray

    @property
    def k(self) -> int:
        return self.neighbor_index.shape[1]

    @property
    def vote_share(self) -> np.ndarray:
        """(m,) share of the k neighbours that have the predicted label."""
        return self.predicted_votes / self.k

    def __len__(self) -> int:
        return len(self.rows)


def explain_rows(
    model,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    rows: np.ndarray,
) -> Explanation:
    """The k nearest training rows of some test rows (k = ``model.n_neighbors``).

    Parameters
    ----------
    model : fitted :class:`knnlab.estimators.KNNClassifier` (one output)
        Fitted on ``X_train, y_train``; its ``kneighbors`` applies its scaling.
    X_train : ndarray of shape (n_train, n_features)
    y_train : ndarray of shape (n_train,)
    X_test : ndarray of shape (n_test, n_features)
    y_true, y_pred : ndarray of shape (n_test,)
    proba : ndarray of shape (n_test, n_classes), columns in ``classes`` order
    classes : ndarray of shape (n_classes,)
    rows : array-like of shape (m,)
        Test rows to explain, e.g. from :func:`worst_errors`.

    Returns
    -------
    Explanation
        With m rows and k neighbours each.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    X_test, y_train = np.asarray(X_test), np.asarray(y_train)
    n_test = len(X_test)
    if rows.size and (rows.min() < 0 or rows.max() >= n_test):
        raise ValueError(
            f"Expected test rows in 0..{n_test - 1}, got {rows[(rows < 0) | (rows >= n_test)]}"
        )
    if len(X_train) != model.n_samples_fit_ or len(y_train) != len(X_train):
        raise ValueError(
            f"Expected the {model.n_samples_fit_} training rows the model was fitted on, got "
            f"X_train with {len(X_train)} and y_train with {len(y_train)} rows; pass the "
            f"train split the model was fitted on"
        )
    if not len(y_true) == len(y_pred) == n_test:
        raise ValueError(
            f"Expected y_true and y_pred with one label per test row ({n_test}), got "
            f"{len(y_true)} and {len(y_pred)}"
        )
    y_true, y_pred = np.asarray(y_true)[rows], np.asarray(y_pred)[rows]
    confidence = _predicted_confidence(y_pred, np.asarray(proba)[rows], classes)
    k = model.n_neighbors
    if rows.size:
        distance, index = model.kneighbors(X_test[rows])  # (m, k) each
    else:  # kneighbors refuses zero queries
        distance, index = np.empty((0, k)), np.empty((0, k), dtype=np.int64)
    label = y_train[index]  # (m, k)
    return Explanation(
        rows=rows,
        y_true=y_true,
        y_pred=y_pred,
        confidence=confidence,
        neighbor_index=index,
        neighbor_label=label,
        neighbor_distance=distance,
        predicted_votes=(label == y_pred[:, None]).sum(axis=1),
    )


def explain_worst_errors(
    model,
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_test: np.ndarray,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
    limit: int = 6,
) -> Explanation:
    """:func:`explain_rows` of the :func:`worst_errors` (at most ``limit``): why the model
    was most confidently wrong. Arguments as those two functions take them."""
    rows = worst_errors(y_true, y_pred, proba, classes, limit)
    return explain_rows(model, X_train, y_train, X_test, y_true, y_pred, proba, classes, rows)


def _distance_text(d: float) -> str:
    """23.1 for pixel distances, 0.53 for scaled ones."""
    return f"{d:.1f}" if abs(d) >= 1 else f"{d:.2g}"


def _case_title(explanation: Explanation, i: int, display_name: Callable) -> str:
    return (
        f"true {display_name(explanation.y_true[i])} → predicted "
        f"{display_name(explanation.y_pred[i])} ({explanation.confidence[i]:.2f})"
    )


def _neighbor_colour(label, truth, predicted) -> str:
    if label == predicted and truth != predicted:
        return WRONG
    return RIGHT if label == truth else "black"


def _image(ax, features: np.ndarray, image_shape) -> None:
    ax.imshow(features.reshape(image_shape), cmap="gray_r", interpolation="nearest")
    ax.axis("off")


def _draw_case(
    row_axes, explanation: Explanation, i: int, X_train, X_test, image_shape, display_name
) -> None:
    """Row i of the figure: the test image, then its first len(row_axes) - 1 neighbours."""
    truth, predicted = explanation.y_true[i], explanation.y_pred[i]
    is_error = truth != predicted
    ax = row_axes[0]
    _image(ax, X_test[explanation.rows[i]], image_shape)
    ax.set_title(
        _case_title(explanation, i, display_name),
        fontsize=8,
        color=WRONG if is_error else "black",
    )
    if is_error:  # a red frame; axis("off") hides the spines, so a rectangle it is
        frame = Rectangle((0, 0), 1, 1, transform=ax.transAxes, fill=False, lw=2.5, ec=WRONG)
        ax.add_patch(frame).set_clip_on(False)
    ax.text(
        0.5,
        -0.04,
        f"test row {explanation.rows[i]}: {explanation.predicted_votes[i]} of "
        f"{explanation.k} neighbours are {display_name(predicted)}",
        transform=ax.transAxes,
        ha="center",
        va="top",
        fontsize=7,
    )
    for j, ax in enumerate(row_axes[1:]):
        label = explanation.neighbor_label[i, j]
        _image(ax, X_train[explanation.neighbor_index[i, j]], image_shape)
        distance = _distance_text(explanation.neighbor_distance[i, j])
        name = display_name(label)
        # Long class names ("T-shirt/top") on one line run into the next image's title.
        separator = "\n" if len(name) > 8 else " · "
        ax.set_title(
            f"{name}{separator}d={distance}",
            fontsize=8,
            fontweight="normal",
            color=_neighbor_colour(label, truth, predicted),
        )


def explanation_figure(
    explanation: Explanation,
    X_train: np.ndarray,
    X_test: np.ndarray,
    image_shape: tuple[int, int] | list[int],
    display_name: Callable[[object], str],
    max_neighbors: int = MAX_NEIGHBORS_SHOWN,
) -> Figure:
    """One row per explained test row: its image, then its nearest training images.

    The test image is titled "true 3 → predicted 8 (0.80)" (red, and framed in red, when the
    prediction is wrong) with the neighbours' vote below; each neighbour "8 · d=23.1", red
    when it has the wrong predicted label, green when it has the true label. At most
    ``max_neighbors`` neighbours are shown (the suptitle says so when k is larger). With no
    rows, a figure that says so.

    X_train : (n_train, height * width); X_test : (n_test, height * width); image_shape :
    (height, width); display_name : label -> display string (``SplitInfo.display_name``).
    """
    m, k = len(explanation), explanation.k
    shown = min(k, max_neighbors)
    title = f"Most confident errors and their {k} nearest training images"
    if shown < k:
        title = f"Most confident errors and their {shown} nearest of k = {k} training images"
    with styled():
        if m == 0:
            fig, ax = subplots(figsize=(6, 1.2))
            ax.axis("off")
            ax.text(0.5, 0.5, "No errors to explain.", ha="center", va="center")
            fig.suptitle(title, fontweight="bold")
            return fig
        fig, axes = subplots(
            m,
            1 + shown,
            figsize=(1.25 * shown + 2.1, 1.65 * m + 0.8),
            squeeze=False,
            gridspec_kw={"width_ratios": [1.7] + [1] * shown},
        )
        for i, row_axes in enumerate(axes):
            _draw_case(row_axes, explanation, i, X_train, X_test, image_shape, display_name)
        fig.suptitle(
            f"{title}\n(neighbours in red have the wrong predicted label, in green the true one)",
            fontweight="bold",
        )
        fig.tight_layout()
        return fig


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def explanation_markdown(
    explanation: Explanation, display_name: Callable[[object], str], max_neighbors: int = 10
) -> list[str]:
    """The explained rows as markdown lines: a sentence, then a table with one row per
    explained test row: test row, true, predicted, confidence (and how many of the k
    neighbours have the predicted label), the first ``max_neighbors`` neighbours as
    ``label@distance``, nearest first (a large k would make a line no one reads). Empty
    when there is nothing to explain."""
    if not len(explanation):
        return []
    k = explanation.k
    shown = min(k, max_neighbors)
    which = f"{k} nearest training rows" if shown == k else f"{shown} nearest of its k = {k}"
    lines = [
        f"Each test row's {which} as label@distance, nearest first "
        "(distances in the model's feature space, after its scaling).",
        "",
        "| test row | true | predicted | confidence | neighbours |",
        "|---|---|---|---|---|",
    ]
    for i in range(len(explanation)):
        neighbours = ", ".join(
            f"{display_name(label)}@{_distance_text(d)}"
            for label, d in zip(
                explanation.neighbor_label[i, :shown],
                explanation.neighbor_distance[i, :shown],
                strict=True,
            )
        ) + (", …" if shown < k else "")
        cells = [
            str(explanation.rows[i]),
            display_name(explanation.y_true[i]),
            display_name(explanation.y_pred[i]),
            f"{explanation.confidence[i]:.2f} ({explanation.predicted_votes[i]} of {k})",
            neighbours,
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines
