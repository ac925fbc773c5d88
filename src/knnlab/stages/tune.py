"""tune: cross-validated grid search on the **train split only** -> ``reports/tune/`` and an
MLflow run, with one nested run per grid point in the sibling experiment
``<experiment> candidates``. The search times (a table and
``search_speed.png``) go to that run and to the git-ignored ``reports/timings/``.

The test split is never read here, so the tuned model's test score in ``evaluate`` is an
honest estimate (the tutorials this grew from tuned on all data, test split included).
"""

from __future__ import annotations

from knnlab.pipeline.analysis import tuning
from knnlab.pipeline.data.dataset import read_features_and_labels
from knnlab.pipeline.io import files, paths
from knnlab.pipeline.io.artifacts import SplitInfo, TuneSummary
from knnlab.pipeline.io.params import Params
from knnlab.pipeline.presentation import figure_style, timing_figures, tradeoff_figures
from knnlab.tracking.stage import LoggedStage


def run_name(summary: TuneSummary) -> str:
    return f"tune {summary.n_candidates} candidates"


def log_run(mlflow_run, params: Params, split: SplitInfo, summary: TuneSummary, table, artifacts):
    """Log the tune run: params, metrics, one nested run per candidate of ``table`` (the CV
    table, ``reports/tune/cv_results.csv``) in the candidates experiment, and the
    ``artifacts`` (under ``tune/``). The stage logs its results; ``knnlab relog``, the
    outputs."""
    run_params = tuning.run_params(params, split, summary)
    mlflow_run.log(params=run_params, metrics=tuning.run_metrics(summary))
    mlflow_run.log_candidates(tuning.child_runs(table), run_params)
    for artifact in artifacts:
        mlflow_run.log_artifact(artifact, "tune")


def run(params: Params) -> None:
    stage = LoggedStage(params.mlflow, "tune", paths.TUNE_RUN)  # checks the store first
    split = SplitInfo.read(paths.SPLIT_META)
    X, y = read_features_and_labels(paths.TRAIN_SPLIT)
    result, summary = tuning.tune(params, X, y)
    with stage.outputs() as outputs:
        tune_dir = outputs.staged_dir(paths.TUNE_DIR)
        files.write_csv(tune_dir / paths.CV_RESULTS.name, tuning.score_table(result))
        summary.write(tune_dir / paths.BEST_PARAMS.name)
        timings_file = outputs.staged(paths.TUNE_TIMINGS)
        files.write_csv(timings_file, result.search_timings)
        speed_figure = outputs.staged(paths.SEARCH_SPEED_FIGURE)
        figure_style.save(timing_figures.search_speed_figure(result.search_timings), speed_figure)
        trade_figure = pick = None
        if tradeoff_figures.has_approximate(result.cv_results):  # measured speed: MLflow only
            n_queries = len(X) / params.tune.cv  # validation rows per fold
            trade_figure = outputs.staged(paths.SPEED_ACCURACY_QPS_FIGURE)
            figure_style.save(
                tradeoff_figures.tradeoff_figure(
                    result.cv_results, summary.scoring, "qps", n_queries
                ),
                trade_figure,
            )
            pick = tradeoff_figures.fastest_within_one_se(
                result.cv_results, summary.scoring, "qps", n_queries
            )
        key = tuning.tune_key(tune_dir)
        artifacts = [tune_dir / paths.CV_RESULTS.name, tune_dir / paths.BEST_PARAMS.name]
        artifacts += [timings_file, speed_figure] + ([trade_figure] if trade_figure else [])
        with stage.new_run(run_name(summary), tuning.TUNE_TAG, key) as mlflow_run:
            log_run(mlflow_run, params, split, summary, tuning.score_table(result), artifacts)
    print(
        f"tune: {summary.select} pick {summary.best_params} mean CV {summary.scoring} = "
        f"{summary.best_score:.4f} ± {summary.best_se:.4f} (SE) over "
        f"{summary.n_candidates} candidates"
    )
    if pick is not None:
        print(
            f"tune: fastest within one SE of the best exact candidate ({pick['exact_label']}, "
            f"{pick['exact_score']:.4f}): {pick['label']} k={pick['n_neighbors']} "
            f"{pick['weights']}, mean CV {pick['score']:.4f}, recall {pick['recall']:.4f}"
        )
