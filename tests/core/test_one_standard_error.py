"""The standard error of each candidate's CV mean and the one-standard-error rule: the SE
column against ``statistics.stdev``, the vectorized rule against a loop, and the picks as the
pipeline records, logs and plots them."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

from knnlab.model_selection import SELECTIONS, grid_search_cv, one_standard_error_index
from knnlab.options import SCORERS
from knnlab.pipeline.analysis import evaluation, tuning
from knnlab.pipeline.io.artifacts import SplitInfo, TuneSummary
from knnlab.pipeline.io.params import ParamsError, parse_params
from knnlab.pipeline.presentation import figures

CV = 5
GRID = {
    "n_neighbors": [1, 3, 5, 9, 15],
    "p": [1, 2],
    "weights": ["uniform", "distance"],
    "algorithm": ["brute"],
}


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:500], y[:500]


@pytest.fixture(scope="module")
def searched(digits):
    """The same digits search under both rules."""
    X, y = digits
    return {
        select: grid_search_cv(X, y, GRID, cv=CV, seed=0, select=select) for select in SELECTIONS
    }


# --- the SE column ---------------------------------------------------------------------------


def test_sem_column_is_the_sample_std_of_the_folds_over_root_cv(searched):
    table = searched["best"].cv_results
    for scorer in SCORERS:
        folds = table[[f"split{f}_test_{scorer}" for f in range(CV)]].to_numpy()
        expected = [statistics.stdev(row) / math.sqrt(CV) for row in folds.tolist()]
        np.testing.assert_allclose(
            table[f"sem_test_{scorer}"], expected, rtol=1e-12, atol=0, err_msg=scorer
        )
        np.testing.assert_allclose(
            table[f"std_test_{scorer}"],
            [statistics.pstdev(row) for row in folds.tolist()],
            rtol=1e-12,
            atol=1e-15,
            err_msg=f"std_test_{scorer} stays scikit-learn's ddof=0",
        )


def test_sem_column_follows_std_column(searched):
    columns = list(searched["best"].cv_results.columns)
    for scorer in SCORERS:
        after_std = columns[columns.index(f"std_test_{scorer}") + 1]
        assert after_std == f"sem_test_{scorer}", f"sem right after std for {scorer}"


# --- the rule against a loop -----------------------------------------------------------------


def one_se_reference(means: list[float], sems: list[float], ks: list[int]) -> int:
    """The rule, one candidate at a time: the first highest mean is the best (the first row
    when every mean is NaN); a candidate is eligible when it is the best or its mean reaches
    best mean - best SE; the eligible one with the largest k, then the highest mean, then the
    first in order."""
    best = 0
    for i, mean in enumerate(means):
        if not math.isnan(mean) and (math.isnan(means[best]) or mean > means[best]):
            best = i
    threshold = means[best] - sems[best]
    chosen = None
    for i, (mean, k) in enumerate(zip(means, ks, strict=True)):
        eligible = i == best or (not math.isnan(mean) and mean >= threshold)
        if not eligible:
            continue
        if chosen is None or k > ks[chosen] or (k == ks[chosen] and mean > means[chosen]):
            chosen = i
    return chosen


def loop_rank(means: list[float]) -> list[int]:
    """scikit-learn's rank_test_*: 1 + how many means are higher; NaN after every number."""
    numbers = [m for m in means if not math.isnan(m)]
    return [
        1 + (len(numbers) if math.isnan(m) else sum(other > m for other in numbers)) for m in means
    ]


def random_table(rng) -> pd.DataFrame:
    """A small cv_results table whose means, SEs and ks repeat (ties) and hold NaN."""
    n = int(rng.integers(1, 25))
    means = rng.integers(0, 8, size=n) / 8  # on a coarse grid: many equal means
    means[rng.random(n) < 0.2] = np.nan
    if rng.random() < 0.05:
        means[:] = np.nan
    sems = rng.choice([0.0, 0.0625, 0.125, 0.3], size=n)
    sems[np.isnan(means) | (rng.random(n) < 0.05)] = np.nan  # a NaN SE now and then
    ks = rng.choice([1, 2, 3, 5, 8], size=n)
    return pd.DataFrame(
        {
            "params": [{"n_neighbors": int(k)} for k in ks],
            "param_n_neighbors": ks,
            "mean_test_accuracy": means,
            "sem_test_accuracy": sems,
            "rank_test_accuracy": loop_rank(means.tolist()),
        }
    )


def test_rule_matches_the_loop_reference_on_random_tables(rng):
    for trial in range(500):
        table = random_table(rng)
        means, sems = table["mean_test_accuracy"].tolist(), table["sem_test_accuracy"].tolist()
        ks = table["param_n_neighbors"].tolist()
        expected = one_se_reference(means, sems, ks)
        got = one_standard_error_index(table, "accuracy")
        assert got == expected, f"trial {trial}: got row {got}, expected {expected}\n{table}"


def test_rule_on_a_hand_made_table():
    table = pd.DataFrame(
        {
            "params": [{"n_neighbors": k} for k in (1, 3, 5, 5, 7, 9)],
            "param_n_neighbors": [1, 3, 5, 5, 7, 9],
            "mean_test_accuracy": [0.90, 0.95, 0.93, 0.93, np.nan, 0.80],
            "sem_test_accuracy": [0.01, 0.02, 0.01, 0.01, np.nan, 0.01],
            "rank_test_accuracy": [3, 1, 2, 2, 6, 5],
        }
    )
    # threshold 0.95 - 0.02 = 0.93: k = 5 is eligible (twice: the earlier row), k = 7 has no
    # score and k = 9 is too far below.
    assert one_standard_error_index(table, "accuracy") == 2


# --- grid_search_cv's select -----------------------------------------------------------------


def test_unknown_select_is_refused_naming_the_allowed_values(digits):
    X, y = digits
    with pytest.raises(ValueError, match=r"select must be one of best, one_se, got 'one-se'"):
        grid_search_cv(X, y, {"n_neighbors": [3]}, cv=3, select="one-se")


def test_both_picks_are_recorded_whichever_is_selected(searched):
    best_run, one_se_run = searched["best"], searched["one_se"]
    assert best_run.picks == one_se_run.picks, "the picks do not depend on select"
    table = best_run.cv_results
    best, one_se = best_run.picks["best"], best_run.picks["one_se"]
    assert best["index"] == int(np.argmin(table["rank_test_accuracy"]))
    assert one_se["index"] == one_standard_error_index(table, "accuracy")
    for pick in (best, one_se):
        row = table.iloc[pick["index"]]
        assert pick["params"] == row["params"], "params of the pick's own row"
        assert pick["score"] == row["mean_test_accuracy"]
        assert pick["se"] == row["sem_test_accuracy"]
        assert type(pick["index"]) is int and type(pick["score"]) is float
    assert one_se["threshold"] == best["score"] - best["se"]
    assert json.loads(json.dumps(best_run.picks)) == best_run.picks, "plain JSON values"


@pytest.mark.parametrize("select", SELECTIONS)
def test_the_selected_pick_is_best_params(searched, select):
    result = searched[select]
    pick = result.picks[select]
    assert result.select == select
    assert (result.best_params, result.best_score, result.best_index) == (
        pick["params"],
        pick["score"],
        pick["index"],
    )


def test_one_se_picks_at_least_the_best_k_within_one_se(searched):
    result = searched["one_se"]
    best, one_se = result.picks["best"], result.picks["one_se"]
    assert result.best_params["n_neighbors"] >= best["params"]["n_neighbors"]
    assert one_se["score"] >= one_se["threshold"], "eligible"
    means = result.cv_results["mean_test_accuracy"].to_numpy()
    ks = result.cv_results["param_n_neighbors"].to_numpy()
    assert not (ks[means >= one_se["threshold"]] > one_se["params"]["n_neighbors"]).any(), (
        "no eligible candidate has a larger k"
    )


def test_refit_fits_the_selected_candidate(digits):
    X, y = digits
    result = grid_search_cv(X, y, GRID, cv=CV, seed=0, select="one_se", refit=True)
    assert result.best_estimator.n_neighbors == result.picks["one_se"]["params"]["n_neighbors"]


# --- params and the pipeline -----------------------------------------------------------------


def test_tune_select_defaults_to_best_and_allows_exactly_the_rules():
    assert parse_params({}).tune.select == "best"
    for select in SELECTIONS:
        assert parse_params({"tune": {"select": select}}).tune.select == select
    with pytest.raises(ParamsError) as error:
        parse_params({"tune": {"select": "median"}})
    assert str(error.value).endswith("one of " + ", ".join(SELECTIONS)), str(error.value)


@pytest.fixture(scope="module")
def tuned_one_se(digits):
    X, y = digits
    params = parse_params(
        {"tune": {"cv": CV, "select": "one_se", "grid": {"n_neighbors": [1, 5, 15], "p": [2]}}}
    )
    result, summary = tuning.tune(params, X, y)
    return params, result, summary


def test_tune_summary_keeps_the_selected_pick_and_both_picks(tuned_one_se, tmp_path):
    _, result, summary = tuned_one_se
    one_se = result.picks["one_se"]
    assert summary.select == "one_se"
    assert (summary.best_params, summary.best_score, summary.best_se) == (
        one_se["params"],
        one_se["score"],
        one_se["se"],
    )
    assert summary.picks == result.picks
    assert summary.model_params()["n_neighbors"] == one_se["params"]["n_neighbors"]
    path = tmp_path / "best_params.json"
    summary.write(path)
    first = path.read_bytes()
    assert TuneSummary.read(path) == summary
    TuneSummary.read(path).write(path)
    assert path.read_bytes() == first, "byte-identical when written again"


def test_the_tune_run_logs_both_picks(tuned_one_se):
    params, result, summary = tuned_one_se
    split = SplitInfo("digits", 500, 64, 10, [], "label", [8, 8], {}, 0.25, 42, 500, 0)
    logged = tuning.run_params(params, split, summary)
    assert logged["select"] == "one_se"
    for rule, prefix in (("best", "best_"), ("one_se", "one_se_")):
        for key, value in result.picks[rule]["params"].items():
            assert logged[prefix + key] == value, prefix + key
    assert tuning.run_metrics(summary) == {
        "cv/best_accuracy": result.picks["best"]["score"],
        "cv/best_accuracy_se": result.picks["best"]["se"],
        "cv/one_se_accuracy": result.picks["one_se"]["score"],
        "cv/one_se_threshold": result.picks["one_se"]["threshold"],
    }


def test_the_tables_keep_the_sem_columns(tuned_one_se):
    _, result, summary = tuned_one_se
    table = tuning.score_table(result)
    assert {f"sem_test_{s}" for s in SCORERS} <= set(table.columns)
    dropped = set(result.cv_results.columns) - set(table.columns)
    assert dropped == {"params", *tuning.TIME_COLUMNS}, "only params and times are dropped"
    child = tuning.child_runs(tuning.score_table(result))[0]
    assert {f"sem_test_{s}" for s in SCORERS} <= set(child["metrics"])
    curve = evaluation.cv_curve_table(result.cv_results, summary)
    assert list(curve.columns) == ["n_neighbors", "cv_score", "cv_std", "cv_se"]
    assert curve["n_neighbors"].tolist() == [1, 5, 15]


def test_cv_score_figure_draws_the_one_se_line_and_pick(searched):
    result = searched["one_se"]
    best, one_se = result.picks["best"], result.picks["one_se"]
    assert one_se["params"] != best["params"], "this search's one-SE pick moves"
    fig = figures.cv_score_figure(result.cv_results, "accuracy", best["params"], one_se)
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert f"one-SE line: best − 1 SE = {one_se['threshold']:.4f}" in labels
    assert any(label.startswith("one-SE pick: k=") for label in labels), labels
    assert ax.get_ylabel() == "mean CV accuracy (± 1 SE)"
    old_table = result.cv_results.drop(columns=["sem_test_accuracy"])
    fallback = figures.cv_score_figure(old_table, "accuracy", best["params"])
    assert fallback.axes[0].get_ylabel() == "mean CV accuracy (± 1 std)", "an old table"


@pytest.mark.parametrize("algorithms", [["brute"], ["brute", "hnsw"]])
def test_candidates_read_back_from_the_csv_are_those_the_stage_logs(tmp_path, algorithms):
    """``knnlab relog`` logs the candidates from ``reports/tune/cv_results.csv``: the same
    params (an approximate candidate's index options included) and scores as tune logs
    from the table in memory."""
    from knnlab.pipeline.io import files

    pytest.importorskip("faiss") if "hnsw" in algorithms else None
    X, y = load_digits(return_X_y=True)
    grid = {"n_neighbors": [1, 3], "p": [2], "algorithm": algorithms}
    if "hnsw" in algorithms:
        grid["index"] = {"M": [8, 16]}
    result = grid_search_cv(X[:300], y[:300], grid, cv=3, seed=0)
    table = tuning.score_table(result)
    files.write_csv(tmp_path / "cv_results.csv", table)
    read_back = tuning.child_runs(files.read_csv(tmp_path / "cv_results.csv"))
    in_memory = tuning.child_runs(table)
    assert read_back == in_memory
    assert [child["params"] for child in in_memory] == list(result.cv_results["params"])
    values = [v for child in read_back for v in child["params"].values()]
    assert all(isinstance(v, (int, float, str, dict)) for v in values), "Python values"
