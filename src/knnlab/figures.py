"""Figures as pure functions: arrays and tables in, a matplotlib Figure out.

One style for every figure (:data:`STYLE`), applied per figure through a context manager so
importing this module changes no global state. The ``Agg`` backend is used explicitly: the
stages run headless.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: DVC stages and CI have no display

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from knnlab.io import atomic_path

STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 110,
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.titleweight": "bold",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "image.cmap": "viridis",
}


@contextlib.contextmanager
def styled() -> Iterator[None]:
    with plt.rc_context(STYLE):
        yield


def save(fig: Figure, path: Path | str) -> None:
    """Write ``fig`` as PNG atomically, without the version stamp (stable bytes), and
    release its memory."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)


def confusion_matrix_figure(cm: np.ndarray, labels: list[str], title: str) -> Figure:
    """Counts, and row-normalised rates with the diagonal zeroed (where the errors go).

    cm : ndarray of shape (n_classes, n_classes), rows = true class, columns = predicted.
    """
    with styled():
        n = len(labels)
        size = max(4.0, 0.45 * n + 2.5)
        fig, (ax_counts, ax_errors) = plt.subplots(1, 2, figsize=(2 * size + 1, size))
        rows = cm.sum(axis=1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            rates = np.where(rows > 0, cm / np.maximum(rows, 1), 0.0)
        np.fill_diagonal(rates, 0.0)
        panels = (
            (ax_counts, cm, "Counts", "d", "Blues"),
            (ax_errors, rates, "Error rate per true class (diagonal zeroed)", ".2f", "Reds"),
        )
        for ax, values, subtitle, fmt, cmap in panels:
            image = ax.imshow(values, cmap=cmap)
            ax.grid(False)
            ax.set_title(subtitle)
            ax.set_xlabel("Predicted label")
            ax.set_ylabel("True label")
            ax.set_xticks(range(n), labels, rotation=45 if n > 6 else 0)
            ax.set_yticks(range(n), labels)
            high = values.max() if values.size else 0
            for (i, j), v in np.ndenumerate(values):
                if v:
                    ax.text(
                        j,
                        i,
                        format(v, fmt),
                        ha="center",
                        va="center",
                        fontsize=8,
                        color="white" if v > 0.6 * high else "black",
                    )
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        fig.suptitle(title, fontweight="bold")
        return fig


def cv_score_figure(cv_results: pd.DataFrame, scorer: str, best: dict) -> Figure:
    """Mean CV score against k, one line per (p, weights), with +/- 1 std bands; the best
    candidate marked.

    cv_results : DataFrame with ``param_n_neighbors``, ``param_p``, ``param_weights``,
        ``mean_test_{scorer}`` and ``std_test_{scorer}`` columns (one algorithm's rows
        suffice: all algorithms score the same).
    """
    mean_col, std_col = f"mean_test_{scorer}", f"std_test_{scorer}"
    rows = cv_results.drop_duplicates(["param_n_neighbors", "param_p", "param_weights"])
    styles = {"uniform": "-", "distance": "--"}
    with styled():
        fig, ax = plt.subplots(figsize=(7.5, 4.5))
        colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, (p, by_p) in enumerate(rows.groupby("param_p", sort=True)):
            for weights, line in by_p.groupby("param_weights", sort=True):
                line = line.sort_values("param_n_neighbors")
                k = line["param_n_neighbors"].to_numpy()
                mean, std = line[mean_col].to_numpy(), line[std_col].to_numpy()
                colour = colours[i % len(colours)]
                ax.plot(
                    k,
                    mean,
                    styles.get(weights, ":"),
                    marker="o",
                    markersize=3,
                    color=colour,
                    label=f"p={p}, {weights}",
                )
                ax.fill_between(k, mean - std, mean + std, color=colour, alpha=0.12)
        best_row = rows[
            (rows["param_n_neighbors"] == best["n_neighbors"])
            & (rows["param_p"] == best["p"])
            & (rows["param_weights"] == best["weights"])
        ]
        if not best_row.empty:
            ax.plot(
                best["n_neighbors"],
                best_row[mean_col].iloc[0],
                marker="*",
                markersize=16,
                color="black",
                linestyle="none",
                label=f"best: k={best['n_neighbors']}, p={best['p']}, {best['weights']}",
            )
        ax.set_xlabel("n_neighbors (k)")
        ax.set_ylabel(f"mean CV {scorer} (± 1 std)")
        ax.set_title(f"Cross-validated {scorer} against k")
        ax.legend(loc="best", fontsize=8)
        return fig
