"""tune: cross-validated grid search on the **train split only** -> ``reports/tune/`` and a
parent MLflow run with one nested child run per grid point.

The test split is never read here, so the tuned model's test score in ``evaluate`` is an
honest estimate (the tutorials this grew from tuned on all data, test split included).
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from knnlab.model_selection import GridSearchResult, grid_search_cv
from knnlab.options import SCORERS
from knnlab.pipeline import files, paths
from knnlab.pipeline.datasets import features_and_labels
from knnlab.pipeline.params import Params
from knnlab.tracking import runs

TIME_COLUMNS = ("mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time")


def score_table(result: GridSearchResult) -> pd.DataFrame:
    """The CV table without its timing columns (they vary run to run and live in
    ``reports/tune_timings.csv``), so ``reports/tune/`` is byte-identical across runs."""
    return result.cv_results.drop(columns=["params", *TIME_COLUMNS])


def child_runs(result: GridSearchResult) -> list[dict]:
    """One nested MLflow run per candidate: its params and every mean/std CV score."""
    children = []
    score_columns = [
        c for c in result.cv_results.columns if c.startswith(("mean_", "std_", "rank_"))
    ]
    for row in result.cv_results.itertuples(index=False):
        candidate = row.params
        children.append(
            {
                "name": "k={n_neighbors} p={p} {weights} {algorithm}".format(**candidate),
                "params": candidate,
                "metrics": {c: getattr(row, c) for c in score_columns},
            }
        )
    return children


def run(params: Params) -> None:
    runs.preflight(params.mlflow, "tune")  # fail before computing, not after
    train = files.read_parquet(paths.TRAIN_SPLIT)
    meta = files.read_json(paths.SPLIT_META)
    X, y = features_and_labels(train)
    tune = params.tune
    result = grid_search_cv(
        X,
        y,
        dataclasses.asdict(tune.grid),
        cv=tune.cv,
        scoring=SCORERS,
        refit=tune.scoring,
        seed=tune.seed,
        scale=params.model.scale,
    )
    summary = {
        "best_params": result.best_params,
        "best_score": result.best_score,
        "scoring": tune.scoring,
        "cv": tune.cv,
        "seed": tune.seed,
        "scale": params.model.scale,
        "n_candidates": len(result.cv_results),
        "n_train": len(X),
    }
    # Outputs are staged and committed only once the run has logged everything and closed:
    # a failure or a kill anywhere before leaves the previous outputs and record in place.
    with files.staged_outputs() as outputs:
        tune_dir = outputs.staged_dir(paths.TUNE_DIR)
        files.write_csv(tune_dir / paths.CV_RESULTS.name, score_table(result))
        files.write_json(tune_dir / paths.BEST_PARAMS.name, summary)
        timings_file = outputs.staged(paths.TUNE_TIMINGS)
        files.write_csv(timings_file, result.search_timings)
        with runs.stage_run(
            params.mlflow, "tune", f"tune {len(result.cv_results)} candidates"
        ) as mlflow_run:
            mlflow_run.log(
                params={
                    "dataset": meta["name"],
                    "cv": tune.cv,
                    "scoring": tune.scoring,
                    "tune_seed": tune.seed,
                    "n_candidates": len(result.cv_results),
                    **{f"grid_{k}": list(v) for k, v in dataclasses.asdict(tune.grid).items()},
                    **{f"best_{k}": v for k, v in result.best_params.items()},
                },
                metrics={f"best_cv_{tune.scoring}": result.best_score},
            )
            mlflow_run.log_children(child_runs(result))
            for artifact in (paths.CV_RESULTS.name, paths.BEST_PARAMS.name):
                mlflow_run.log_artifact(tune_dir / artifact, "tune")
            mlflow_run.log_artifact(timings_file, "tune")
        files.write_json(outputs.staged(paths.TUNE_RUN), mlflow_run.record.to_dict())
        outputs.if_commit_fails(
            lambda error: runs.mark_outputs_failed(mlflow_run.record.to_dict(), error)
        )
    print(
        f"tune: best {result.best_params} mean CV {tune.scoring} = {result.best_score:.4f} "
        f"over {len(result.cv_results)} candidates"
    )
