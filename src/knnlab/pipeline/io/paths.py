"""Where the project's files live. The only module that knows a path.

Stages run with the working directory at the repository root (DVC runs them there, also
inside an experiment's temporary workspace), so pipeline files are relative to the
current directory. The MLflow store is the exception: it must stay in the *main*
repository even when DVC runs a stage from a temporary workspace, so it is resolved
from ``DVC_ROOT``, which DVC sets to the main repository for queued experiments.
"""

from __future__ import annotations

import os
from pathlib import Path

PARAMS_FILE = Path("params.yaml")

DATA_DIR = Path("data")
RAW_DIR = DATA_DIR / "raw"
RAW_DATASET = RAW_DIR / "dataset.parquet"
RAW_META = RAW_DIR / "meta.json"

# Downloads (OpenML) are cached here, outside DVC's outputs, so a second run needs no network.
DOWNLOAD_CACHE = DATA_DIR / "cache"

SPLIT_DIR = DATA_DIR / "split"
TRAIN_SPLIT = SPLIT_DIR / "train.parquet"
TEST_SPLIT = SPLIT_DIR / "test.parquet"
SPLIT_META = SPLIT_DIR / "meta.json"
SPLIT_LEAKS = SPLIT_DIR / "leaks.json"  # duplicates across the split, found by split

# The exact neighbours of the test rows (the reference an approximate model is measured
# against): computed once per split, scaling and largest grid k; cached by DVC, not committed.
NEIGHBOURS_DIR = DATA_DIR / "neighbours"
EXACT_NEIGHBOURS = NEIGHBOURS_DIR / "test_exact.npz"

MODELS_DIR = Path("models")
MODEL_FILE = MODELS_DIR / "model.npz"
# The configured model's out-of-fold votes on the train split (train: they calibrate its
# prediction sets; the audit stage reads its suspicious labels from them).
OUT_OF_FOLD_VOTES = MODELS_DIR / "out_of_fold.parquet"

TRACKING_DIR = Path("tracking")
# Written by the DVC stage "params" once params.yaml validates; fetch depends on it.
PARAMS_STAMP = TRACKING_DIR / "params.ok"
# Which tagged MLflow run each logging stage logged (knnlab.tracking.runs.logged_marker):
# DVC outputs, cached and not committed, so a fresh clone runs the logging stages.
TUNE_RUN = TRACKING_DIR / "tune_run.json"
EVALUATE_RUN = TRACKING_DIR / "evaluate_run.json"
PLOT_RUN = TRACKING_DIR / "plot_run.json"

REPORTS_DIR = Path("reports")
METRICS_FILE = REPORTS_DIR / "metrics.json"
UNCERTAINTY_FILE = REPORTS_DIR / "uncertainty.json"
# Each model against exact search (recall, accuracy difference, index bytes): a DVC metrics
# file, so `dvc exp show` puts exact and approximate experiments side by side.
VS_EXACT_FILE = REPORTS_DIR / "vs_exact.json"
TUNE_DIR = REPORTS_DIR / "tune"
CV_RESULTS = TUNE_DIR / "cv_results.csv"
BEST_PARAMS = TUNE_DIR / "best_params.json"
PLOTS_DIR = REPORTS_DIR / "plots"
PREDICTIONS_PLOT = PLOTS_DIR / "predictions.csv"
CV_SCORE_PLOT = PLOTS_DIR / "cv_score_vs_k.csv"
ROC_PLOT = PLOTS_DIR / "roc.csv"
PRECISION_RECALL_PLOT = PLOTS_DIR / "precision_recall.csv"
REPORT_FILE = REPORTS_DIR / "report.md"
# Prediction sets on the test split (evaluate): a DVC metrics file, coverage per experiment.
CONFORMAL_FILE = REPORTS_DIR / "conformal.json"
# What the neighbours say about the data (the audit stage).
AUDIT_DIR = REPORTS_DIR / "audit"
AUDIT_SUMMARY = AUDIT_DIR / "audit.json"
SUSPICIOUS_LABELS = AUDIT_DIR / "suspicious_labels.csv"
SHAPLEY_VALUES = AUDIT_DIR / "shapley.csv"
FIGURES_DIR = REPORTS_DIR / "figures"
# Seconds differ on every run, so they are neither DVC outputs nor committed (git ignores
# this folder): each stage logs them to its MLflow run and leaves a copy here.
TIMINGS_DIR = REPORTS_DIR / "timings"
TIMINGS_FILE = TIMINGS_DIR / "timings.json"  # names as logged to MLflow
TUNE_TIMINGS = TIMINGS_DIR / "tune_timings.csv"
TRAIN_TIMINGS = TIMINGS_DIR / "train.json"  # the model's fit (an index's build) seconds
AUDIT_TIMINGS = TIMINGS_DIR / "audit.json"
SEARCH_SPEED_FIGURE = TIMINGS_DIR / "search_speed.png"
SPEED_ACCURACY_QPS_FIGURE = TIMINGS_DIR / "speed_accuracy_qps.png"  # a grid with hnsw/ivf

MLFLOW_DB_NAME = "mlflow.db"
MLFLOW_ARTIFACTS_NAME = "mlruns"


def repository_root() -> Path:
    """The main repository's root: ``DVC_ROOT`` when DVC set it, else the nearest parent
    of the working directory holding ``dvc.yaml``, else the working directory."""
    if root := os.environ.get("DVC_ROOT"):
        return Path(root).resolve()
    cwd = Path.cwd().resolve()
    for candidate in (cwd, *cwd.parents):
        if (candidate / "dvc.yaml").is_file():
            return candidate
    return cwd
