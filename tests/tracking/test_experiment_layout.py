"""Where runs go and how MLflow's UI will show them: experiments tagged as model development,
a tune run's candidates in their own linked experiment, runs that span their stage's work
(real SQLite store)."""

from __future__ import annotations

import time

import pytest

from knnlab.pipeline.io.params import MlflowParams
from knnlab.tracking import runs
from knnlab.tracking.store import EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT, mlflow_client

from ..support import mlflow_store

CHILDREN = [
    {"name": f"k={k}", "params": {"n_neighbors": k}, "metrics": {"mean_test_accuracy": k / 10}}
    for k in (1, 3, 5)
]


def test_new_and_existing_experiments_are_tagged_as_model_development(isolated_mlflow):
    client = mlflow_client(isolated_mlflow)
    client.create_experiment("older")  # made before knnlab tagged its experiments
    client.create_experiment("chosen", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    for name in ("fresh", "older", "chosen"):
        with runs.stage_run(MlflowParams(experiment=name), "evaluate", "run"):
            pass
    kinds = {
        n: client.get_experiment_by_name(n).tags[EXPERIMENT_KIND_TAG] for n in ("fresh", "older")
    }
    assert kinds == {"fresh": MODEL_DEVELOPMENT, "older": MODEL_DEVELOPMENT}
    chosen = client.get_experiment_by_name("chosen").tags[EXPERIMENT_KIND_TAG]
    assert chosen == "genai_development", "a kind someone set is theirs"


def test_candidates_go_to_their_own_experiment_linked_both_ways(isolated_mlflow):
    with runs.stage_run(MlflowParams(experiment="grid"), "tune", "tune 3 candidates") as run:
        run.log(params={"cv": 5})
        parent = run.log_candidates(CHILDREN, {"cv": 5, "grid_n_neighbors": [1, 3, 5]})
    stage_runs = mlflow_store.run_summary(isolated_mlflow, "grid")
    assert [r["name"] for r in stage_runs] == ["tune 3 candidates"], "one row per stage run"
    (tune,) = stage_runs
    found_parent, children = mlflow_store.candidates_of(isolated_mlflow, tune)
    assert found_parent["run_id"] == parent.run_id and found_parent["status"] == "FINISHED"
    assert found_parent["name"] == "tune 3 candidates"
    assert found_parent["params"] == {"cv": "5", "grid_n_neighbors": "[1, 3, 5]"}
    assert sorted(c["name"] for c in children) == ["k=1", "k=3", "k=5"]
    assert {c["status"] for c in children} == {"FINISHED"}
    assert {c["metrics"]["mean_test_accuracy"] for c in children} == {0.1, 0.3, 0.5}
    candidates = mlflow_client(isolated_mlflow).get_experiment_by_name("grid candidates")
    assert candidates.tags[EXPERIMENT_KIND_TAG] == MODEL_DEVELOPMENT
    link = f"#/experiments/{candidates.experiment_id}/runs?workflowType=machine_learning"
    assert link in tune["tags"]["mlflow.note.content"], "the tune run links to its candidates"
    assert parent.run_id in tune["tags"]["mlflow.note.content"]
    back = f"#/experiments/{tune['tags'].get('knnlab.candidates_experiment_id')}"
    assert back == f"#/experiments/{candidates.experiment_id}"
    assert f"runs/{tune['run_id']})" in found_parent["tags"]["mlflow.note.content"]


def test_a_failing_candidate_fails_the_candidates_parent(isolated_mlflow):
    bad = [*CHILDREN[:1], {"name": "k=9", "params": {"n_neighbors": 9}, "metrics": {"x": "y"}}]
    with (
        pytest.raises(TypeError, match="must be real number"),
        runs.stage_run(MlflowParams(experiment="broken"), "tune", "tune") as run,
    ):
        run.log_candidates(bad, {})
    (tune,) = mlflow_store.run_summary(isolated_mlflow, "broken")
    assert tune["status"] == "FAILED"
    parent, children = mlflow_store.candidates_of(isolated_mlflow, tune)
    assert parent["status"] == "FAILED", "not left RUNNING"
    assert sorted(c["status"] for c in children) == ["FAILED", "FINISHED"]


def test_a_run_starts_when_its_stage_started_its_work(isolated_mlflow, tmp_path, monkeypatch):
    from knnlab.tracking.stage import LoggedStage

    monkeypatch.chdir(tmp_path)
    before = int(time.time() * 1000)
    stage = LoggedStage(MlflowParams(experiment="spans"), "tune", "tracking/tune_run.json")
    time.sleep(0.05)  # the work: any positive gap shows
    opened = int(time.time() * 1000)
    with stage.outputs(), stage.new_run("tune", "knnlab.key", "k1"):
        pass
    (logged,) = mlflow_store.run_summary(isolated_mlflow, "spans")
    assert before <= logged["start_time"] < opened <= logged["end_time"]


def test_runs_against_an_unreachable_server_fails_with_one_line(tmp_path):
    """Bounded retries (mlflow_client): MLflow's own defaults retry for minutes; the guard
    below is against a wait with no end, not a speed check."""
    import os
    import subprocess
    import sys

    from knnlab.tracking.server import free_port

    closed = f"http://127.0.0.1:{free_port()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
    done = subprocess.run(
        [sys.executable, "-m", "knnlab", "runs"],
        cwd=tmp_path,
        env={**env, "MLFLOW_TRACKING_URI": closed},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"knnlab runs: error: MLflow store {closed}:"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
