"""The exact-or-approximate trade-off: the Pareto front and the pick, against loop
references, and the figure from a real grid's table (as read back from cv_results.csv)."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from knnlab.model_selection import grid_search_cv
from knnlab.pipeline.analysis.tuning import score_table
from knnlab.pipeline.presentation import tradeoff_figures


def front_by_loop(accuracy, faster) -> set[int]:
    """Candidates that no other is at least as good as on both counts and better on one."""
    n = len(accuracy)
    return {
        i
        for i in range(n)
        if not any(
            accuracy[j] >= accuracy[i]
            and faster[j] >= faster[i]
            and (accuracy[j] > accuracy[i] or faster[j] > faster[i])
            for j in range(n)
        )
    }


@pytest.mark.parametrize("seed", range(20))
def test_pareto_front_matches_a_loop(seed):
    rng = np.random.default_rng(seed)
    accuracy = rng.integers(0, 6, 30) / 5  # ties on purpose
    faster = rng.integers(0, 6, 30).astype(float)
    front = tradeoff_figures.pareto_front(accuracy, faster)
    # Among exact duplicates (same accuracy and speed) the loop keeps all, the front one.
    assert {(accuracy[i], faster[i]) for i in front} == {
        (accuracy[i], faster[i]) for i in front_by_loop(accuracy, faster)
    }
    assert np.all(np.diff(faster[front]) < 0) and np.all(np.diff(accuracy[front]) > 0)


@pytest.fixture(scope="module")
def table():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    grid = {
        "n_neighbors": [1, 5],
        "p": [1, 2],
        "weights": ["uniform"],
        "algorithm": ["brute", "hnsw", "ivf"],
        "index": {"ef_search": [4, 32], "nprobe": [1, 8]},
    }
    result = grid_search_cv(X[:500], y[:500], grid, cv=3, seed=0)
    buffer = io.StringIO()
    score_table(result).to_csv(buffer, index=False)  # as tune writes it
    return pd.read_csv(io.StringIO(buffer.getvalue()))


def test_the_pick_is_the_fastest_within_one_se_of_the_best_exact(table):
    pick = tradeoff_figures.fastest_within_one_se(table, "accuracy", "distances")
    mean, sem = table["mean_test_accuracy"], table["sem_test_accuracy"]
    exact = table["param_algorithm"] == "brute"
    best = mean[exact].idxmax()
    eligible = [i for i in range(len(table)) if mean[i] >= mean[best] - sem[best]]
    fewest = min(table["mean_distances_per_query"][i] for i in eligible)
    assert pick["exact_index"] == best
    assert pick["distances_per_query"] == fewest
    assert pick["score"] >= pick["threshold"] == mean[best] - sem[best]
    assert pick["label"] == tradeoff_figures.engine_label(table.iloc[pick["index"]])


def test_no_exact_candidate_means_no_pick(table):
    approximate = table[table["param_algorithm"] != "brute"].reset_index(drop=True)
    assert tradeoff_figures.fastest_within_one_se(approximate, "accuracy", "distances") is None


def test_the_figure_draws_from_the_table_as_read_back(table, tmp_path):
    from knnlab.pipeline.presentation import figure_style

    assert tradeoff_figures.has_approximate(table)
    fig = tradeoff_figures.tradeoff_figure(table, "accuracy", "distances")
    left, right = fig.axes
    assert "recall" in right.get_ylabel()
    at_p2 = (table["param_p"] == 2).sum()
    assert sum(len(c.get_offsets()) for c in left.collections[:-1]) >= at_p2
    assert left.get_xscale() == "log" and "distances" in left.get_xlabel()
    figure_style.save(fig, tmp_path / "f.png")
    assert (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    labels = [t.get_text() for t in left.get_legend().get_texts()]
    assert "brute" in labels and "hnsw ef_search=4" in labels and "Pareto front" in labels
