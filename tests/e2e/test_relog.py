"""``knnlab relog`` (issue 28): a clone whose outputs DVC calls up to date, pointed at a new
tracking server, logs nothing on ``dvc repro``; relog logs its outputs there, as the stages
logged them to the clone's own store, without recomputing. Against a real ``mlflow server``
on 127.0.0.1 (SQLite behind it, artifacts served by it); the PostgreSQL team server is the
same client code (tests/tracking/test_server_postgres.py covers it for the stages)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from knnlab.tracking import models, registry
from knnlab.tracking.store import mlflow_client

from ..support import mlflow_store
from ..support.mlflow_ui import mlflow_server
from ..support.project import _env, run, stages_run, store
from ..support.shared_project import copy_project

pytestmark = pytest.mark.slow

RELOG = [sys.executable, "-m", "knnlab", "relog"]


@pytest.fixture(scope="module")
def adopted(reproduced_iris, tmp_path_factory):
    """A copy of the reproduced project (its runs in its own SQLite store) and a new,
    empty server; yields (project, server URL, what the first relog printed)."""
    project = copy_project(reproduced_iris.root, tmp_path_factory.mktemp("clone"))
    with mlflow_server(tmp_path_factory.mktemp("server")) as url:
        before = run(["dvc", "repro"], project, env={"MLFLOW_TRACKING_URI": url})
        assert stages_run(before) == [], "up to date: the stages log nothing to the server"
        assert mlflow_store.run_summary(url, "knnlab") == []
        printed = run(RELOG, project, env={"MLFLOW_TRACKING_URI": url})
        yield project, url, printed


def _one(runs: list[dict], stage: str) -> dict:
    [found] = [r for r in runs if r["tags"].get("knnlab.stage") == stage]
    return found


def test_relog_logs_the_runs_the_stages_logged_without_their_seconds(adopted):
    project, url, printed = adopted
    assert "relog: logging the current outputs to http://127.0.0.1:" in printed
    local, served = store(project), mlflow_store.run_summary(url, "knnlab")
    assert len(served) == 2, [r["name"] for r in served]
    for stage in ("tune", "evaluate"):
        mine, theirs = _one(local, stage), _one(served, stage)
        assert theirs["status"] == "FINISHED" and theirs["name"] == mine["name"]
        assert theirs["params"] == mine["params"], stage
        timed = {k for k in mine["metrics"] if k.startswith("timing/")}
        assert theirs["metrics"] == {k: v for k, v in mine["metrics"].items() if k not in timed}
        for tag in ("knnlab.tune_sha256", "knnlab.evaluation_sha256"):
            assert theirs["tags"].get(tag) == mine["tags"].get(tag), tag
        assert "knnlab.relogged" in theirs["tags"] and "knnlab.relogged" not in mine["tags"]
        assert "not recomputed" in theirs["tags"]["knnlab.relogged"]
        assert (
            theirs["tags"]["mlflow.source.git.commit"]
            == run(["git", "rev-parse", "HEAD"], project).strip()
        )
    # Every candidate, with its params and scores, in the candidates experiment.
    _, mine = mlflow_store.candidates_of(f"sqlite:///{project / 'mlflow.db'}", _one(local, "tune"))
    _, theirs = mlflow_store.candidates_of(url, _one(served, "tune"))
    key = lambda child: (child["name"], sorted(child["params"].items()))  # noqa: E731
    assert sorted(map(key, theirs)) == sorted(map(key, mine))
    assert sorted(c["metrics"]["mean_test_accuracy"] for c in theirs) == sorted(
        c["metrics"]["mean_test_accuracy"] for c in mine
    )


def test_the_evaluate_run_has_the_figures_report_and_a_model_that_predicts_the_same(adopted):
    project, url, _ = adopted
    evaluate = _one(mlflow_store.run_summary(url, "knnlab"), "evaluate")
    listed = set(mlflow_store.list_artifacts(url, evaluate["run_id"]))
    assert {"report.md", "metrics.json", "uncertainty.json", "confusion_matrix.json"} <= listed
    assert "timings.json" not in listed, "seconds are not outputs: not re-logged"
    figures = set(mlflow_store.list_artifacts(url, evaluate["run_id"], "figures"))
    assert figures == {f"figures/{p.name}" for p in (project / "reports/figures").iterdir()}
    report = mlflow_client(url).download_artifacts(
        evaluate["run_id"], "report.md", str(project / "..")
    )
    assert Path(report).read_bytes() == (project / "reports/report.md").read_bytes()
    model = models.load_logged_model(url, evaluate["run_id"])
    test = pd.read_parquet(project / "data/split/test.parquet")
    predicted = pd.read_csv(project / "reports/plots/predictions.csv")["predicted"]
    np.testing.assert_array_equal(model.predict(test.drop(columns=["label"])), predicted)
    champion = mlflow_client(url).get_model_version_by_alias(
        registry.registered_name("iris"), registry.CHAMPION
    )
    assert champion.run_id == evaluate["run_id"], "the new server's first version"


def test_a_second_relog_logs_nothing_and_plot_finds_the_relogged_run(adopted):
    project, url, _ = adopted
    runs = len(mlflow_store.run_summary(url, "knnlab"))
    again = run(RELOG, project, env={"MLFLOW_TRACKING_URI": url})
    assert again.count("the store has its run already") == 2, again
    assert "has the figures and report already" in again
    assert len(mlflow_store.run_summary(url, "knnlab")) == runs
    # What failed before relog (plot finds no evaluate run in a new store) now works.
    output = run(["dvc", "repro", "--force", "--single-item", "plot"], project,
                 env={"MLFLOW_TRACKING_URI": url})  # fmt: skip
    assert stages_run(output) == ["plot"]
    assert len(mlflow_store.run_summary(url, "knnlab")) == runs, "plot adds to the run"


def test_outputs_that_are_not_current_are_refused_and_nothing_is_logged(adopted):
    project, url, _ = adopted
    runs = len(mlflow_store.run_summary(url, "knnlab"))
    params = project / "params.yaml"
    original = params.read_text()
    params.write_text(original.replace("n_neighbors: 5", "n_neighbors: 7", 1))
    try:
        assert params.read_text() != original, "the params changed"
        done = subprocess.run(
            RELOG, cwd=project, env=_env({"MLFLOW_TRACKING_URI": url}),
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        params.write_text(original)
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("knnlab relog: error: the outputs are not those of the current params")
    assert "train" in line and "run `dvc repro` (or `dvc pull`) first" in line
    assert len(mlflow_store.run_summary(url, "knnlab")) == runs
