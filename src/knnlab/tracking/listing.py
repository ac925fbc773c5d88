"""What the store holds, for a person or a script: ``knnlab runs`` lists the latest evaluate
runs (the model each one logged, its accuracy with interval, the URI that ``knnlab serve``
takes), and ``knnlab ui`` opens MLflow's UI on the project's store, on the runs.

MLflow 3.17's UI opens an experiment clicked in its list on the GenAI overview (a per-browser
switch, "GenAI" by default, decides; the experiment's ``mlflow.experimentKind`` tag, which
knnlab sets, does not). A link to ``#/experiments/<id>/runs`` opens the runs whatever the
switch: every link knnlab prints is one (:func:`runs_url`).
"""

from __future__ import annotations

import dataclasses
import math
import signal
import subprocess
import sys
from dataclasses import dataclass

from knnlab.tracking.errors import TrackingError
from knnlab.tracking.store import (
    EXPERIMENT_KIND_TAG,
    MODEL_DEVELOPMENT,
    mlflow_client,
    redact_uri,
)

EVALUATE_FILTER = "tags.`knnlab.stage` = 'evaluate'"
# The UI's own switch to its model-training menus (kept while one navigates from the link).
_MODEL_TRAINING = "?workflowType=machine_learning"
# Metric names before and after they were grouped into sections (test/accuracy): older runs
# list too.
_ACCURACY = ("test/accuracy", "accuracy")
_ACCURACY_LOW = ("test/accuracy_ci_low", "accuracy_ci_low")
_ACCURACY_HIGH = ("test/accuracy_ci_high", "accuracy_ci_high")


@dataclass(frozen=True)
class EvaluateRun:
    """One evaluate run as ``knnlab runs`` shows it (NaN where the run lacks a value)."""

    run_id: str
    run_name: str
    status: str
    started: str  # ISO 8601, UTC
    dataset: str
    n_neighbors: str
    p: str
    weights: str
    algorithm: str
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    model_uri: str
    url: str | None  # the run's page, when the store is a server

    def to_json(self) -> dict:
        return {
            k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in dataclasses.asdict(self).items()
        }


def _first(metrics: dict, names: tuple[str, ...]) -> float:
    for name in names:
        if name in metrics:
            return float(metrics[name])
    return math.nan


def server_base(tracking_uri: str) -> str | None:
    """The UI's address when the store is an MLflow server, else None."""
    if tracking_uri.startswith(("http://", "https://")):
        return redact_uri(tracking_uri).rstrip("/")
    return None


def runs_url(base: str, experiment_id: str, run_id: str | None = None) -> str:
    """The UI page of an experiment's runs (or of one run), which opens on the runs
    whatever the browser's GenAI / model-training switch says."""
    url = f"{base}/#/experiments/{experiment_id}/runs"
    return f"{url}/{run_id}{_MODEL_TRAINING}" if run_id else url + _MODEL_TRAINING


def latest_evaluate_runs(tracking_uri: str, experiment: str, limit: int) -> list[EvaluateRun]:
    """The ``limit`` most recent evaluate runs of ``experiment``, newest first; [] when the
    experiment does not exist yet."""
    from datetime import UTC, datetime

    client = mlflow_client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    base = server_base(tracking_uri)
    listed = client.search_runs(
        [found.experiment_id],
        filter_string=EVALUATE_FILTER,
        order_by=["attributes.start_time DESC"],
        max_results=limit,
    )
    rows = []
    for run in listed:
        params, metrics = run.data.params, run.data.metrics
        started = datetime.fromtimestamp(run.info.start_time / 1000, tz=UTC)
        rows.append(
            EvaluateRun(
                run_id=run.info.run_id,
                run_name=run.info.run_name or "",
                status=run.info.status,
                started=started.isoformat(timespec="seconds"),
                dataset=params.get("dataset", ""),
                n_neighbors=params.get("n_neighbors", ""),
                p=params.get("p", ""),
                weights=params.get("weights", ""),
                algorithm=params.get("algorithm", ""),
                accuracy=_first(metrics, _ACCURACY),
                accuracy_low=_first(metrics, _ACCURACY_LOW),
                accuracy_high=_first(metrics, _ACCURACY_HIGH),
                model_uri=f"runs:/{run.info.run_id}/model",
                url=runs_url(base, found.experiment_id, run.info.run_id) if base else None,
            )
        )
    return rows


def _accuracy_text(run: EvaluateRun) -> str:
    if math.isnan(run.accuracy):
        return "-"
    if math.isnan(run.accuracy_low) or math.isnan(run.accuracy_high):
        return f"{run.accuracy:.4f}"
    return f"{run.accuracy:.4f} [{run.accuracy_low:.4f}, {run.accuracy_high:.4f}]"


def format_runs(rows: list[EvaluateRun], experiment: str, tracking_uri: str) -> str:
    """An aligned table, newest first, then where to see them and how to serve one."""
    if not rows:
        return (
            f"no evaluate runs in experiment {experiment!r} of {redact_uri(tracking_uri)} "
            "yet: `dvc repro` logs one"
        )
    header = ("run id", "started (UTC)", "dataset", "k", "p", "weights", "algorithm")
    header += ("accuracy [95 % interval]", "status")
    table = [header] + [
        (
            r.run_id,
            r.started.replace("+00:00", "").replace("T", " "),
            r.dataset,
            r.n_neighbors,
            r.p,
            r.weights,
            r.algorithm,
            _accuracy_text(r),
            r.status,
        )
        for r in rows
    ]
    widths = [max(len(str(row[c])) for row in table) for c in range(len(header))]
    lines = [
        "  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
        for row in table
    ]
    newest = rows[0]
    lines += [
        "",
        f"model URI of the newest: {newest.model_uri}  (knnlab serve {newest.model_uri})",
    ]
    if newest.url:
        lines.append(f"in the UI: {newest.url}")
    return "\n".join(lines)


def tag_existing(tracking_uri: str, experiment: str) -> str | None:
    """The id of ``experiment`` (None if it does not exist), tagged as model development
    if it is not tagged with a kind yet (an experiment from before the tag)."""
    client = mlflow_client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return None
    if EXPERIMENT_KIND_TAG not in found.tags:
        client.set_experiment_tag(found.experiment_id, EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT)
    return found.experiment_id


def ui_command(tracking_uri: str, host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
        "--host", host, "--port", str(int(port)),
    ]  # fmt: skip


def run_ui(tracking_uri: str, experiment: str, host: str, port: int, say=print) -> int:
    """``knnlab ui``: on a server, print the link to the runs; on a local store, run
    ``mlflow ui`` on it in the foreground and print the link once it answers. Ctrl-C or
    SIGTERM stops it (exit code 0)."""
    from knnlab.tracking import server

    experiment_id = tag_existing(tracking_uri, experiment)
    base = server_base(tracking_uri)
    if base is not None:
        say(_where(base, experiment, experiment_id))
        return 0
    server.check_port_free(host, port)
    process = subprocess.Popen(ui_command(tracking_uri, host, port), start_new_session=True)
    previous = signal.signal(signal.SIGTERM, server._raise_stop)
    try:
        url = f"http://{host}:{port}"
        server.wait_healthy(url, process)
        say(_where(url, experiment, experiment_id))
        say("knnlab ui: Ctrl-C stops it")
        code = process.wait()
        raise TrackingError(f"mlflow ui exited with code {code} (its messages are above)")
    except (KeyboardInterrupt, server._Stop):
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        server._stop_process_group(process)


def _where(base: str, experiment: str, experiment_id: str | None) -> str:
    if experiment_id is None:
        return (
            f"knnlab ui: {base} (experiment {experiment!r} has no runs yet: `dvc repro` logs them)"
        )
    return f"knnlab ui: the runs of experiment {experiment!r}: {runs_url(base, experiment_id)}"
