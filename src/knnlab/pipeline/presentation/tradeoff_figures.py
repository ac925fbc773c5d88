"""Exact against approximate search: CV accuracy (and recall) against speed, one point per
candidate of a grid that holds an approximate algorithm, and the candidate a practitioner
would pick.

Speed is measured two ways. ``distances``: distances computed per query (a full scan's
n_train for exact search), the same on every machine and run, so the plot stage's figure and
the report are byte-identical. ``qps``: validation queries answered per second, measured in
the grid search; it differs on every run, so tune draws it for its MLflow run only.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from knnlab.algorithms import is_approximate
from knnlab.pipeline.presentation.figure_style import class_colours, styled, subplots

SPEEDS = {
    "distances": ("distances computed per query (log scale; fewer is faster)", False),
    "qps": ("validation queries per second (log scale; measured, differs per run)", True),
}


def has_approximate(cv_results: pd.DataFrame) -> bool:
    """Whether the grid held an approximate algorithm (its table has the columns)."""
    return "mean_distances_per_query" in cv_results and "mean_recall" in cv_results


def exact_rows(cv_results: pd.DataFrame) -> pd.DataFrame:
    """The exact candidates' rows (every row when there are none): the rows whose scores all
    exact algorithms share."""
    if "param_algorithm" not in cv_results:
        return cv_results
    exact = ~cv_results["param_algorithm"].map(is_approximate)
    return cv_results[exact] if exact.any() else cv_results


def speed_of(cv_results: pd.DataFrame, speed: str, n_queries: float | None = None) -> np.ndarray:
    """(n_candidates,) the speed measure, oriented so that larger is faster: minus the
    distances per query, or the queries per second (n_queries / mean_score_time)."""
    if speed == "distances":
        return -cv_results["mean_distances_per_query"].to_numpy(dtype=np.float64)
    seconds = cv_results["mean_score_time"].to_numpy(dtype=np.float64)
    return n_queries / np.maximum(seconds, 1e-12)


def engine_label(row) -> str:
    """ "brute", or "hnsw ef_search=32" for an approximate candidate (``param_index`` is
    empty for exact ones: NaN once read back from cv_results.csv)."""
    index = row.get("param_index")
    options = json.loads(index) if isinstance(index, str) and index else {}
    parts = [f"{name}={value}" for name, value in options.items()]
    return " ".join([row["param_algorithm"], *parts])


def pareto_front(accuracy: np.ndarray, faster: np.ndarray) -> np.ndarray:
    """Positions of the candidates no other beats on both counts (at least as accurate and
    at least as fast, better on one), sorted from fastest to most accurate."""
    order = np.lexsort((-accuracy, -faster))  # fastest first; among equals, most accurate
    front, best = [], -np.inf
    for i in order:
        if accuracy[i] > best:
            front.append(i)
            best = accuracy[i]
    return np.array(front, dtype=np.int64)


def fastest_within_one_se(
    cv_results: pd.DataFrame, scorer: str, speed: str, n_queries: float | None = None
) -> dict | None:
    """The fastest candidate whose mean CV score is at least the best exact candidate's mean
    minus its standard error; ties go to the higher mean, then the earlier row. None when
    the grid has no exact candidate. Returns the pick's row position ``index``, its
    ``label`` (engine), ``n_neighbors``, ``weights``, ``p``, ``score``, ``se``, ``recall``
    and ``distances_per_query``, the ``threshold``, and the best exact candidate's
    ``exact_index``, ``exact_label``, ``exact_score`` and ``exact_distances_per_query``."""
    mean = cv_results[f"mean_test_{scorer}"].to_numpy(dtype=np.float64)
    sem = cv_results[f"sem_test_{scorer}"].to_numpy(dtype=np.float64)
    exact = ~cv_results["param_algorithm"].map(is_approximate).to_numpy()
    if not exact.any():
        return None
    exact_positions = np.flatnonzero(exact)
    best_exact = int(exact_positions[np.argmax(mean[exact_positions])])
    threshold = mean[best_exact] - sem[best_exact]
    faster = speed_of(cv_results, speed, n_queries)
    eligible = np.flatnonzero(mean >= threshold)
    chosen = int(eligible[np.lexsort((eligible, -mean[eligible], -faster[eligible]))[0]])
    return {
        "index": chosen,
        "label": engine_label(cv_results.iloc[chosen]),
        "n_neighbors": int(cv_results["param_n_neighbors"].iloc[chosen]),
        "weights": str(cv_results["param_weights"].iloc[chosen]),
        "p": cv_results["param_p"].iloc[chosen],
        "score": float(mean[chosen]),
        "se": float(sem[chosen]),
        "recall": float(cv_results["mean_recall"].iloc[chosen]),
        "distances_per_query": float(cv_results["mean_distances_per_query"].iloc[chosen]),
        "threshold": float(threshold),
        "exact_index": best_exact,
        "exact_label": engine_label(cv_results.iloc[best_exact]),
        "exact_score": float(mean[best_exact]),
        "exact_distances_per_query": float(cv_results["mean_distances_per_query"].iloc[best_exact]),
    }


def tradeoff_figure(
    cv_results: pd.DataFrame, scorer: str, speed: str, n_queries: float | None = None
) -> Figure:
    """Mean CV ``scorer`` (left) and recall@k (right) against speed, one point per
    candidate at p = 2 (where the approximate candidates are), coloured by engine, exact ones
    as squares; the Pareto front of the left panel drawn, and the fastest candidate within
    one SE of the best exact one circled.

    cv_results : the grid search's table with ``mean_recall`` and
        ``mean_distances_per_query`` (a grid with an approximate algorithm); speed : a key
        of :data:`SPEEDS`; n_queries : validation rows per fold (for ``qps``).
    """
    rows = cv_results[cv_results["param_p"].astype(float) == 2.0].reset_index(drop=True)
    faster = speed_of(rows, speed, n_queries)
    x = -faster if speed == "distances" else faster
    accuracy = rows[f"mean_test_{scorer}"].to_numpy(dtype=np.float64)
    recall = rows["mean_recall"].to_numpy(dtype=np.float64)
    labels = [engine_label(row) for _, row in rows.iterrows()]
    engines = list(dict.fromkeys(labels))
    pick = fastest_within_one_se(rows, scorer, speed, n_queries)
    xlabel, _ = SPEEDS[speed]
    with styled():
        fig, (ax_score, ax_recall) = subplots(1, 2, figsize=(12, 4.8))
        for engine, colour in zip(engines, class_colours(len(engines)), strict=True):
            at = np.array([label == engine for label in labels])
            marker = "o" if is_approximate(engine.split()[0]) else "s"
            for ax, values in ((ax_score, accuracy), (ax_recall, recall)):
                ax.scatter(x[at], values[at], s=22, marker=marker, color=colour, label=engine)
        front = pareto_front(accuracy, faster)
        ax_score.step(
            x[front],
            accuracy[front],
            where="post" if speed == "qps" else "pre",
            color="black",
            linewidth=1,
            label="Pareto front",
        )
        if pick is not None:
            ax_score.axhline(
                pick["threshold"],
                linestyle=":",
                color="grey",
                linewidth=1,
                label=f"best exact − 1 SE = {pick['threshold']:.4f}",
            )
            ax_score.scatter(
                x[pick["index"]],
                accuracy[pick["index"]],
                s=160,
                facecolors="none",
                edgecolors="black",
                linewidths=1.5,
                label=f"pick: {pick['label']}, k={pick['n_neighbors']}, {pick['weights']}",
            )
        for ax, what in ((ax_score, f"mean CV {scorer}"), (ax_recall, "mean recall@k")):
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels overlap
            ax.set_xlabel(xlabel)
            ax.set_ylabel(what)
        ax_score.set_title(f"CV {scorer} against speed (p = 2)")
        ax_recall.set_title("Recall of the true k nearest neighbours")
        ax_score.legend(fontsize=7, loc="lower left" if speed == "qps" else "lower right")
        ax_recall.legend(fontsize=7, loc="lower left" if speed == "qps" else "lower right")
        fig.tight_layout()
        return fig
