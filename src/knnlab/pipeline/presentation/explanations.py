"""The worst errors and their neighbours drawn for a reader: a figure of images (image data)
and a markdown table (any data), from an :class:`~knnlab.pipeline.analysis.explain.Explanation`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from knnlab.pipeline.analysis.explain import Explanation
from knnlab.pipeline.presentation.figure_style import styled, subplots

MAX_NEIGHBORS_SHOWN = 10
WRONG = "firebrick"  # the wrong prediction, and neighbours of its class
RIGHT = "forestgreen"  # neighbours of the true class


def _distance_text(d: float) -> str:
    """23.1 for pixel distances, 0.53 for scaled ones."""
    return f"{d:.1f}" if abs(d) >= 1 else f"{d:.2g}"


@dataclass(frozen=True)
class Wording:
    """How a figure names its rows: the test rows the model got wrong, or the training rows
    whose out-of-fold neighbours contradict their label."""

    title: str = "Most confident errors and their {which} training images"
    truth: str = "true"
    predicted: str = "predicted"
    row: str = "test row"
    legend: str = "neighbours in red have the wrong predicted label, in green the true one"
    # "labelled T-shirt/top → neighbours say Shirt (1.00)" on one line runs into the first
    # neighbour's title.
    two_line_titles: bool = False


ERRORS = Wording()
SUSPICIOUS = Wording(
    title="Most suspicious labels: training rows and their {which} out-of-fold neighbours",
    truth="labelled",
    predicted="neighbours say",
    row="train row",
    legend="neighbours in red have the class they vote for, in green the row's own label",
    two_line_titles=True,
)


def _case_title(explanation: Explanation, i: int, display_name: Callable, words: Wording) -> str:
    truth = f"{words.truth} {display_name(explanation.y_true[i])}"
    claim = (
        f"→ {words.predicted} {display_name(explanation.y_pred[i])} "
        f"({explanation.confidence[i]:.2f})"
    )
    return f"{truth}{chr(10) if words.two_line_titles else ' '}{claim}"


def _neighbor_colour(label, truth, predicted) -> str:
    if label == predicted and truth != predicted:
        return WRONG
    return RIGHT if label == truth else "black"


def _image(ax, features: np.ndarray, image_shape) -> None:
    ax.imshow(features.reshape(image_shape), cmap="gray_r", interpolation="nearest")
    ax.axis("off")


def _draw_case(
    row_axes,
    explanation: Explanation,
    i: int,
    X_train,
    X_test,
    image_shape,
    display_name,
    words: Wording = ERRORS,
) -> None:
    """Row i of the figure: the test image, then its first len(row_axes) - 1 neighbours."""
    truth, predicted = explanation.y_true[i], explanation.y_pred[i]
    is_error = truth != predicted
    ax = row_axes[0]
    _image(ax, X_test[explanation.rows[i]], image_shape)
    ax.set_title(
        _case_title(explanation, i, display_name, words),
        fontsize=8,
        color=WRONG if is_error else "black",
    )
    if is_error:  # a red frame; axis("off") hides the spines, so a rectangle it is
        frame = Rectangle((0, 0), 1, 1, transform=ax.transAxes, fill=False, lw=2.5, ec=WRONG)
        ax.add_patch(frame).set_clip_on(False)
    ax.text(
        0.5,
        -0.04,
        f"{words.row} {explanation.rows[i]}: {explanation.predicted_votes[i]} of "
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
    words: Wording = ERRORS,
) -> Figure:
    """One row per explained test row: its image, then its nearest training images.

    The test image is titled "true 3 → predicted 8 (0.80)" (red, and framed in red, when the
    prediction is wrong) with the neighbours' vote below; each neighbour "8 · d=23.1", red
    when it has the wrong predicted label, green when it has the true label. At most
    ``max_neighbors`` neighbours are shown (the suptitle says so when k is larger). With no
    rows, a figure that says so. ``words``: :data:`ERRORS` (test rows), or
    :data:`SUSPICIOUS` (training rows, "labelled 3 → neighbours say 8"; X_test is then the
    train split too).

    X_train : (n_train, height * width); X_test : (n_test, height * width); image_shape :
    (height, width); display_name : label -> display string (``SplitInfo.display_name``).
    """
    m, k = len(explanation), explanation.k
    shown = min(k, max_neighbors)
    title = words.title.format(
        which=f"{k} nearest" if shown == k else f"{shown} nearest of k = {k}"
    )
    with styled():
        if m == 0:
            fig, ax = subplots(figsize=(6, 1.2))
            ax.axis("off")
            ax.text(0.5, 0.5, "No rows to show.", ha="center", va="center")
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
            _draw_case(row_axes, explanation, i, X_train, X_test, image_shape, display_name, words)
        fig.suptitle(f"{title}\n({words.legend})", fontweight="bold")
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
