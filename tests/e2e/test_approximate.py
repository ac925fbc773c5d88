"""End to end with approximate indexes: the real DVC pipeline with ``model.algorithm: hnsw``
and a grid over brute, hnsw and ivf, logging to a real MLflow SQLite store. Every
approximate model is measured against exact search, the trade-off figure is drawn, the same
params give the same bytes, and an index option re-runs only what uses it."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ..support import mlflow_store
from ..support.project import reproduce, run, stages_run, store

pytestmark = pytest.mark.slow

GRID = {
    "grid": {
        "n_neighbors": [1, 3, 5],
        "p": [1, 2],
        "weights": ["uniform"],
        "algorithm": ["brute", "hnsw", "ivf"],
        "index": {"ef_search": [4, 16], "nprobe": [1, 4]},
    },
    "cv": 3,
}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """digits (600 rows: an index per fold in well under a second) with an hnsw model."""
    root = tmp_path_factory.mktemp("approximate")
    output = reproduce(
        root,
        data={"max_rows": 600},
        model={"algorithm": "hnsw", "index": {"ef_search": 8}},
        tune=GRID,
    )
    return root, output


def test_evaluate_measures_the_approximate_model_against_exact(project):
    root, output = project
    assert stages_run(output) == [
        *("params", "fetch", "split", "train", "exact", "audit", "tune", "evaluate", "plot")
    ]
    assert "evaluate: configured, hnsw (M 16, ef_construction 200, ef_search 8): " in output
    assert "vs exact" in output and "the queries per second of exact search" in output
    record = json.loads((root / "reports/uncertainty.json").read_text())["vs_exact"]
    configured = record["configured"]
    assert configured["algorithm"] == "hnsw" and configured["n_neighbors"] == 5
    assert 0.5 < configured["recall"] <= 1.0, configured
    assert configured["index_bytes"] > 0
    assert (
        configured["paired"]["first"] == "exact" and configured["paired"]["second"] == "configured"
    )
    (evaluate_run,) = [r for r in store(root) if r["tags"].get("knnlab.stage") == "evaluate"]
    logged = evaluate_run["metrics"]
    assert logged["approximate/recall_at_5"] == configured["recall"]
    for name in (
        "queries_per_second",
        "exact_queries_per_second",
        "speedup_vs_exact",
        "single_query_ms",
        "build_seconds",
        "index_bytes",
        "accuracy_vs_exact_ci_low",
    ):
        assert np.isfinite(logged[f"approximate/{name}"]), name
    side_by_side = json.loads((root / "reports/vs_exact.json").read_text())
    assert side_by_side["configured"]["recall"] == configured["recall"]
    assert side_by_side["configured"]["index_bytes"] == configured["index_bytes"]
    assert evaluate_run["params"]["index.ef_search"] == "8"
    assert evaluate_run["params"]["index.M"] == "16", "defaults filled in"


def test_the_grid_tries_each_index_and_the_report_names_the_pick(project):
    root, _ = project
    table = pd.read_csv(root / "reports/tune/cv_results.csv")
    # brute: 3 k x 2 p; hnsw and ivf: 3 k at p = 2, for each of their 2 option values.
    assert len(table) == 6 + 3 * 2 + 3 * 2
    approximate = table[table["param_algorithm"] != "brute"]
    assert set(approximate["param_p"]) == {2}
    assert set(approximate["param_index"]) == {
        '{"ef_search": 4}',
        '{"ef_search": 16}',
        '{"nprobe": 1}',
        '{"nprobe": 4}',
    }
    assert (table.loc[table["param_algorithm"] == "brute", "mean_recall"] == 1.0).all()
    assert ((approximate["mean_recall"] > 0) & (approximate["mean_recall"] <= 1)).all()
    assert "mean_score_time" not in table, "seconds differ per run: not in a DVC output"
    figure = root / "reports/figures/speed_accuracy.png"
    assert figure.read_bytes()[:4] == b"\x89PNG"
    report = (root / "reports/report.md").read_text()
    assert "## Exact or approximate search" in report
    assert "Tuning: the fastest candidate whose mean CV score is within one standard" in report
    assert "distances computed per query against" in report
    assert "](figures/speed_accuracy.png)" in report
    (tune_run,) = [
        r
        for r in store(root)
        if r["tags"].get("knnlab.stage") == "tune" and "mlflow.parentRunId" not in r["tags"]
    ]
    uri = f"sqlite:///{root / 'mlflow.db'}"
    logged = mlflow_store.list_artifacts(uri, tune_run["run_id"], "tune")
    assert "tune/speed_accuracy_qps.png" in logged, logged


def test_same_params_give_the_same_bytes(project):
    root, _ = project
    outputs = [
        "models/model.npz",
        "reports/metrics.json",
        "reports/uncertainty.json",
        "reports/vs_exact.json",
    ]
    before = {name: (root / name).read_bytes() for name in outputs}
    run(["dvc", "repro", "-f", "-s", "train"], root)
    run(["dvc", "repro", "-f", "-s", "evaluate"], root)
    for name in outputs:
        assert (root / name).read_bytes() == before[name], f"{name} changed on a re-run"


def test_predict_and_the_logged_model_answer_from_the_stored_index(project, tmp_path):
    from knnlab.pipeline.io.model_io import load_model
    from knnlab.tracking import models

    root, _ = project
    test = pd.read_parquet(root / "data/split/test.parquet")
    rows = test.drop(columns=["label"]).head(3)
    table = tmp_path / "rows.csv"
    rows.to_csv(table, index=False)
    output = run(["python", "-m", "knnlab", "predict", str(table)], root)
    expected = load_model(root / "models/model.npz").predict(rows.to_numpy(dtype=float))
    # "<file>:<row>: <label>  (<label>: <probability>, ...)", one line per row
    labels = [line.split(": ")[1].split()[0] for line in output.splitlines() if ".csv:" in line]
    assert labels == [str(label) for label in expected], output
    marker = json.loads((root / "tracking/evaluate_run.json").read_text())
    evaluate_run = next(
        r for r in store(root) if r["tags"].get(marker["run_tag"]) == marker["run_tag_value"]
    )  # the run that logged the current outputs (the forced re-run logged another)
    logged = models.load_logged_model(f"sqlite:///{root / 'mlflow.db'}", evaluate_run["run_id"])
    np.testing.assert_array_equal(np.asarray(logged.predict(rows)), expected)


def test_an_index_option_reruns_only_what_uses_it(project):  # last: it changes the model
    root, _ = project
    output = run(["dvc", "exp", "run", "-S", "model.index.ef_search=32"], root)
    assert stages_run(output) == ["params", "train", "audit", "evaluate", "plot"], output
    assert "ef_search 32" in output
    record = json.loads((root / "reports/uncertainty.json").read_text())["vs_exact"]
    assert record["configured"]["index"]["ef_search"] == 32
