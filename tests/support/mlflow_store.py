"""Reading an MLflow store back, for tests: what runs, inputs and artifacts it holds."""

from __future__ import annotations

from typing import Any

from knnlab.tracking.store import mlflow_client


def run_summary(tracking_uri: str, experiment: str) -> list[dict[str, Any]]:
    """Every run of ``experiment`` as plain dicts."""
    client = mlflow_client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], max_results=50000)
    return [
        {
            "run_id": r.info.run_id,
            "name": r.info.run_name,
            "status": r.info.status,
            "start_time": r.info.start_time,
            "end_time": r.info.end_time,
            "params": dict(r.data.params),
            "metrics": dict(r.data.metrics),
            "tags": dict(r.data.tags),
            "artifact_uri": r.info.artifact_uri,
        }
        for r in runs
    ]


def candidates_of(tracking_uri: str, tune_run: dict) -> tuple[dict, list[dict]]:
    """The parent run and the nested candidate runs of a tune run, from the sibling
    experiment ``<experiment> candidates`` the tune run's tags point to."""
    client = mlflow_client(tracking_uri)
    parent_id = tune_run["tags"]["knnlab.candidates_run_id"]
    experiment = client.get_experiment(tune_run["tags"]["knnlab.candidates_experiment_id"])
    logged = run_summary(tracking_uri, experiment.name)
    (parent,) = [r for r in logged if r["run_id"] == parent_id]
    assert parent["tags"]["knnlab.tune_run_id"] == tune_run["run_id"], "linked both ways"
    children = [r for r in logged if r["tags"].get("mlflow.parentRunId") == parent_id]
    return parent, children


def run_inputs(tracking_uri: str, run_id: str) -> list[tuple[str, str, str]]:
    """(name, digest, context) of each dataset a run logged as input."""
    run = mlflow_client(tracking_uri).get_run(run_id)
    return [
        (
            i.dataset.name,
            i.dataset.digest,
            next((t.value for t in i.tags if t.key == "mlflow.data.context"), ""),
        )
        for i in run.inputs.dataset_inputs
    ]


def list_artifacts(tracking_uri: str, run_id: str, path: str | None = None) -> list[str]:
    return [a.path for a in mlflow_client(tracking_uri).list_artifacts(run_id, path)]
