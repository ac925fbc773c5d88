"""The grid search as the pipeline runs and records it: params in, the tables, the summary
and the MLflow records out (the tune stage reads and writes the files)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd

from knnlab.model_selection import GridSearchResult, grid_search_cv
from knnlab.options import SCORERS
from knnlab.pipeline.io import files
from knnlab.pipeline.io.artifacts import SplitInfo, TuneSummary, model_name
from knnlab.pipeline.io.params import Params
from knnlab.pipeline.io.paths import BEST_PARAMS, CV_RESULTS

# The tune run's tag: files.digest of reports/tune/ (what the search found), the same on
# every run of the same search, so the stage's DVC output tracking/tune_run.json is too.
TUNE_TAG = "knnlab.tune_sha256"


def tune_key(tune_dir: Path) -> str:
    """:func:`knnlab.pipeline.io.files.digest` of ``cv_results.csv`` and ``best_params.json``
    in ``tune_dir`` (the staged ``reports/tune/``), under their project paths."""
    return files.digest(
        {path.as_posix(): tune_dir / path.name for path in (CV_RESULTS, BEST_PARAMS)}
    )


TIME_COLUMNS = ("mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time")


def tune(params: Params, X: np.ndarray, y: np.ndarray) -> tuple[GridSearchResult, TuneSummary]:
    """The configured grid search on the training rows X (n, d), y (n,), every scorer
    recorded, ``tune.scoring`` ranking the candidates and ``tune.select`` picking one; no
    refit (evaluate fits the pick). With a Dask scheduler (``compute.scheduler`` or
    ``DASK_SCHEDULER_ADDRESS``) the (fold, p) searches run on its workers, with the same
    results."""
    config = params.tune
    result = grid_search_cv(
        X,
        y,
        dataclasses.asdict(config.grid),
        cv=config.cv,
        scoring=SCORERS,
        rank_by=config.scoring,
        seed=config.seed,
        scale=params.model.scale,
        select=config.select,
        scheduler=params.compute.resolved_scheduler(),
        index_seed=params.model.seed,
    )
    summary = TuneSummary(
        best_params=result.best_params,
        best_score=result.best_score,
        best_se=result.picks[config.select]["se"],
        scoring=config.scoring,
        select=config.select,
        picks=result.picks,
        cv=config.cv,
        seed=config.seed,
        scale=params.model.scale,
        n_candidates=len(result.cv_results),
        n_train=len(X),
        index_seed=params.model.seed,
    )
    return result, summary


def score_table(result: GridSearchResult) -> pd.DataFrame:
    """The CV table without its timing columns (they vary run to run and live in
    ``reports/tune_timings.csv``), so ``reports/tune/`` is byte-identical across runs."""
    return result.cv_results.drop(columns=["params", *TIME_COLUMNS])


def candidate_params(row: dict) -> dict:
    """A candidate's parameters from its row of the CV table (``param_*`` columns;
    ``param_index``, an approximate candidate's options as JSON, empty for exact ones), as
    Python values: the same from the table in memory and read back from its CSV file."""
    params = {}
    for column, value in row.items():
        if not column.startswith("param_"):
            continue
        name = column.removeprefix("param_")
        if name == "index":
            if isinstance(value, str) and value:
                params[name] = json.loads(value)
            continue
        params[name] = value.item() if hasattr(value, "item") else value
    return params


def child_runs(table: pd.DataFrame) -> list[dict]:
    """One nested MLflow run per candidate of the CV table (:func:`score_table`, or
    ``reports/tune/cv_results.csv`` read back): its params and every mean/std/SE/rank CV
    score."""
    score_columns = [c for c in table.columns if c.startswith(("mean_", "std_", "sem_", "rank_"))]
    return [
        {
            "name": model_name(params),
            "params": params,
            "metrics": {c: row[c] for c in score_columns},
        }
        for row in table.to_dict(orient="records")
        for params in [candidate_params(row)]
    ]


def run_params(params: Params, split: SplitInfo, summary: TuneSummary) -> dict:
    """The tune run's MLflow params: the data, the search settings, the grid, the rule that
    selects and both rules' picks (``best_*`` the highest mean, ``one_se_*`` the one-SE
    rule's), whichever was selected."""
    config = params.tune
    return {
        "dataset": split.name,
        "cv": config.cv,
        "scoring": config.scoring,
        "tune_seed": config.seed,
        "select": summary.select,
        "n_candidates": summary.n_candidates,
        **{f"grid_{k}": list(v) for k, v in dataclasses.asdict(config.grid).items()},
        **{f"best_{k}": v for k, v in summary.picks["best"]["params"].items()},
        **{f"one_se_{k}": v for k, v in summary.picks["one_se"]["params"].items()},
    }


def run_metrics(summary: TuneSummary) -> dict[str, float]:
    """The tune run's MLflow metrics, in one ``cv/`` section: both picks' mean CV score, the
    best's SE and the one-SE threshold."""
    best, one_se = summary.picks["best"], summary.picks["one_se"]
    return {
        f"cv/best_{summary.scoring}": best["score"],
        f"cv/best_{summary.scoring}_se": best["se"],
        f"cv/one_se_{summary.scoring}": one_se["score"],
        "cv/one_se_threshold": one_se["threshold"],
    }
