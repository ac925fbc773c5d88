"""relog: log the current outputs again, to the current MLflow store, without recomputing.

A clone pointed at a new store (a team adopting a shared server, a teammate's clone after
``dvc pull``) has outputs that DVC calls up to date, so ``dvc repro`` logs nothing, and the
store never sees them. ``knnlab relog`` logs them as the stages do:

- the tune run: params, the CV metrics, one nested run per candidate (in the candidates
  experiment), ``cv_results.csv`` and ``best_params.json``;
- the evaluate run: params, the test scores, intervals and paired tests, the split tables as
  datasets, the model (registered, and champion only if the paired test says so against the
  store's current champion), ``metrics.json`` and ``uncertainty.json``, the description;
- what plot adds to it: the figures, ``report.md`` and the confusion matrix.

Each run carries the tag its stage gives it (a digest of the outputs logged), so a later
``dvc repro`` that re-runs plot finds the evaluate run here. Seconds are not outputs: a
re-logged run has none (its ``knnlab.relogged`` tag says so). Outputs DVC does not call up to
date are refused (they would be logged under params that did not make them); a stage whose
run the store already has is not logged twice.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time

from knnlab.pipeline.analysis import data_record, evaluation, tuning
from knnlab.pipeline.data.dataset import read_features_and_labels
from knnlab.pipeline.io import files, paths
from knnlab.pipeline.io.artifacts import SplitInfo, TuneSummary, model_name
from knnlab.pipeline.io.model_io import read_model_params
from knnlab.pipeline.io.params import MlflowParams, Params
from knnlab.stages import evaluate, plot, tune
from knnlab.tracking import runs

STAGE = "relog"
RELOGGED_TAG = "knnlab.relogged"
DVC_STATUS_TIMEOUT = 300  # seconds: `dvc status` hashes the outputs; minutes only for GBs


class StaleOutputsError(ValueError):
    """The outputs are not those the current params and code make (``dvc status``)."""


def check_outputs_current(timeout: float = DVC_STATUS_TIMEOUT) -> None:
    """Raise :class:`StaleOutputsError` unless ``dvc status`` says every stage is up to
    date: re-logged outputs are logged under the current params, which must be theirs."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "dvc", "status", "--json"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise StaleOutputsError(
            f"`dvc status` did not answer within {timeout:.0f} s; the outputs could not be "
            "checked against params.yaml and the code"
        ) from None
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise StaleOutputsError(f"`dvc status` failed ({reason}); run it to see why")
    try:
        changed = sorted(json.loads(done.stdout or "{}"))
    except json.JSONDecodeError:
        raise StaleOutputsError(f"`dvc status --json` printed {done.stdout[:200]!r}") from None
    if changed:
        raise StaleOutputsError(
            f"the outputs are not those of the current params and code (`dvc status`: "
            f"{', '.join(changed)} changed or missing); run `dvc repro` (or `dvc pull`) "
            "first: relog logs the outputs as they are, under the current params"
        )


def _relogged_tags() -> dict[str, str]:
    commit = runs.git_commit()
    source = f"the outputs of commit {commit[:12]}" if commit else "the outputs in place"
    return {
        RELOGGED_TAG: f"{source}, logged by `knnlab relog` on "
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}: not recomputed; no seconds (not outputs)"
    }


def _already(config: MlflowParams, stage: str, tag: str, key: str) -> runs.RunRecord | None:
    found = runs.search_tagged_run(config, STAGE, stage, tag, key)
    if found is not None:
        print(f"relog: {stage}: the store has its run already ({found.run_id}); not logged again")
    return found


def relog_tune(config: MlflowParams, params: Params) -> None:
    key = tuning.tune_key(paths.TUNE_DIR)
    if _already(config, "tune", tuning.TUNE_TAG, key):
        return
    split = SplitInfo.read(paths.SPLIT_META)
    summary = TuneSummary.read(paths.BEST_PARAMS)
    table = files.read_csv(paths.CV_RESULTS)
    with runs.stage_run(config, "tune", tune.run_name(summary)) as mlflow_run:
        mlflow_run.log(tags={tuning.TUNE_TAG: key, **_relogged_tags()})
        tune.log_run(
            mlflow_run, params, split, summary, table, [paths.CV_RESULTS, paths.BEST_PARAMS]
        )
    print(f"relog: tune -> run {mlflow_run.record.run_id} ({summary.n_candidates} candidates)")


def relog_evaluate(config: MlflowParams, params: Params) -> runs.RunRecord:
    """The evaluate run of the outputs: found in the store, or logged now."""
    key = evaluation.evaluation_key()
    found = _already(config, "evaluate", evaluation.EVALUATION_TAG, key)
    if found is not None:
        return found
    split = SplitInfo.read(paths.SPLIT_META)
    model_params = read_model_params(paths.MODEL_FILE)
    uncertainty = files.read_json(paths.UNCERTAINTY_FILE)
    vs_exact = uncertainty.get("vs_exact", {})
    _, y_pred, classes, proba = evaluation.read_prediction_table(
        files.read_csv(paths.PREDICTIONS_PLOT)
    )
    logged = evaluate.Logged(
        split,
        model_params,
        TuneSummary.read(paths.BEST_PARAMS),
        evaluation.Evaluation.read_metrics(paths.METRICS_FILE),
        uncertainty,
        {
            **{
                name: value
                for model, record in vs_exact.items()
                for name, value in evaluation.exact_comparison_metrics(model, record).items()
            },
            **data_record.tracked_metrics(
                files.read_json(paths.CONFORMAL_FILE),
                files.read_json(paths.SPLIT_LEAKS),
                files.read_json(paths.AUDIT_SUMMARY),
            ),
        },
        [evaluation.exact_comparison_sentence(m, record) for m, record in vs_exact.items()],
        (y_pred, proba, classes),
        [
            paths.METRICS_FILE,
            paths.UNCERTAINTY_FILE,
            paths.CONFORMAL_FILE,
            *data_record.AUDIT_FILES,
        ],
    )
    X_test, y_test = read_features_and_labels(paths.TEST_SPLIT)
    with runs.stage_run(config, "evaluate", model_name(model_params)) as mlflow_run:
        mlflow_run.log(tags={evaluation.EVALUATION_TAG: key, **_relogged_tags()})
        run_id, model_uri, lifecycle = evaluate.log_run(mlflow_run, params, logged, X_test, y_test)
    print(f"relog: evaluate -> run {run_id}")
    evaluate.print_logged(split, run_id, model_uri, lifecycle)
    return mlflow_run.record


def _has_report(record: runs.RunRecord) -> bool:
    with runs.store_errors(record.tracking_uri):
        client = runs.mlflow_client(record.tracking_uri)
        return any(a.path == paths.REPORT_FILE.name for a in client.list_artifacts(record.run_id))


def relog_plot(config: MlflowParams, record: runs.RunRecord) -> None:
    """The figures, the report and the confusion matrix, added to the evaluate run (unless
    it has its report already)."""
    if _has_report(record):
        print(f"relog: plot: run {record.run_id} has the figures and report already")
        return
    split = SplitInfo.read(paths.SPLIT_META)
    y_true, y_pred, classes, _ = evaluation.read_prediction_table(
        files.read_csv(paths.PREDICTIONS_PLOT)
    )
    figures = sorted(path for path in paths.FIGURES_DIR.iterdir() if path.is_file())
    plot.log_to_evaluate_run(
        lambda logged, where: runs.log_artifacts_to(record, logged, where, config),
        lambda table, name: runs.log_table(record, table, name, config),
        figures,
        paths.REPORT_FILE,
        plot.confusion_frame(split, y_true, y_pred, classes),
    )
    print(f"relog: plot -> run {record.run_id}: {len(figures)} figures and the report")


def run(params: Params) -> None:
    # Logging is the whole point: a store that cannot take it is an error, whatever
    # mlflow.required says.
    config = dataclasses.replace(params.mlflow, required=True)
    runs.preflight(config, STAGE)
    check_outputs_current()
    store = runs.redact_uri(runs.resolve_tracking_uri(config))
    print(f"relog: logging the current outputs to {store}")
    relog_tune(config, params)
    record = relog_evaluate(config, params)
    relog_plot(config, record)
