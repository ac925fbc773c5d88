"""evaluate: score on the test split the configured model, the tuned-best model and a
most-frequent-class baseline -> ``reports/metrics.json``, ``reports/timings.json``,
per-sample predictions for DVC plots, and one MLflow run for the configured model."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier

from knnlab.estimators import KNNClassifier
from knnlab.metrics import UndefinedMetricWarning, classification_scores
from knnlab.neighbors import warm_up
from knnlab.pipeline import files, paths
from knnlab.pipeline.datasets import LABEL, features_and_labels
from knnlab.pipeline.model_io import load_model, read_model_params
from knnlab.pipeline.params import Params
from knnlab.tracking import runs


@dataclass
class Evaluation:
    """One model's test-split results. proba: (n_test, n_classes); y_pred: (n_test,)."""

    scores: dict[str, float]
    fit_seconds: float
    predict_seconds: float
    y_pred: np.ndarray
    proba: np.ndarray
    classes: np.ndarray


def evaluate_model(make_fitted, X_test: np.ndarray, y_test: np.ndarray) -> Evaluation:
    """Time ``make_fitted()`` (load or fit), then predict the test split and score it."""
    start = time.perf_counter()
    model = make_fitted()
    fitted = time.perf_counter()
    proba = model.predict_proba(X_test)
    y_pred = model.classes_[np.argmax(proba, axis=1)]
    predicted = time.perf_counter()
    return Evaluation(
        scores=classification_scores(y_test, y_pred, proba, model.classes_),
        fit_seconds=fitted - start,
        predict_seconds=predicted - fitted,
        y_pred=y_pred,
        proba=proba,
        classes=model.classes_,
    )


def prediction_table(y_test: np.ndarray, result: Evaluation) -> pd.DataFrame:
    """Per test sample: actual and predicted label and one ``proba_<class>`` column per class
    in ``classes_`` order (the confusion, ROC and precision-recall plots are drawn from it)."""
    table = pd.DataFrame({"actual": y_test, "predicted": result.y_pred})
    for column, label in enumerate(result.classes):
        table[f"proba_{label}"] = result.proba[:, column]
    return table


def _quietly_undefined(compute):
    """A constant predictor leaves precision undefined for every class it never predicts:
    expected, and reported as NaN per class, so the warning would only be noise here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return compute()


def run(params: Params) -> None:
    runs.preflight(params.mlflow, "evaluate")  # fail before computing, not after
    train_frame = files.read_parquet(paths.TRAIN_SPLIT)
    test_frame = files.read_parquet(paths.TEST_SPLIT)
    X_train, y_train = features_and_labels(train_frame)
    X_test, y_test = features_and_labels(test_frame)
    meta = files.read_json(paths.SPLIT_META)
    tuned = files.read_json(paths.BEST_PARAMS)
    model_params = read_model_params(paths.MODEL_FILE)
    for p in {model_params["p"], tuned["best_params"]["p"]}:
        warm_up(p)  # timings below measure the search, not numba's one-time compilation

    results = {
        # "fit" of the saved model = load + check + (for trees) rebuild: what a user pays.
        "configured": evaluate_model(lambda: load_model(paths.MODEL_FILE), X_test, y_test),
        "tuned": evaluate_model(
            lambda: KNNClassifier(**tuned["best_params"], scale=tuned["scale"]).fit(
                X_train, y_train
            ),
            X_test,
            y_test,
        ),
        "baseline": _quietly_undefined(
            lambda: evaluate_model(
                lambda: DummyClassifier(strategy="most_frequent").fit(X_train, y_train),
                X_test,
                y_test,
            )
        ),
    }
    metrics = {name: r.scores for name, r in results.items()}
    timings = {
        name: {"fit_seconds": r.fit_seconds, "predict_seconds": r.predict_seconds}
        for name, r in results.items()
    }
    configured = results["configured"]
    predictions = prediction_table(y_test, configured)

    run_name = "k={n_neighbors} p={p} {weights} {algorithm}".format(**model_params)
    # Staged, then committed only once the run has logged everything and closed: a failure
    # or a kill anywhere before leaves the previous outputs and run record in place.
    with files.staged_outputs() as outputs:
        metrics_file = outputs.staged(paths.METRICS_FILE)
        timings_file = outputs.staged(paths.TIMINGS_FILE)
        files.write_json(metrics_file, metrics)
        files.write_json(timings_file, timings)
        files.write_csv(outputs.staged(paths.PREDICTIONS_PLOT), predictions)
        with runs.stage_run(params.mlflow, "evaluate", run_name) as mlflow_run:
            mlflow_run.log(
                params={
                    "dataset": meta["name"],
                    "test_size": meta["test_size"],
                    "seed": meta["seed"],
                    "n_train": meta["n_train"],
                    "n_test": meta["n_test"],
                    **model_params,
                    **{f"tuned_{k}": v for k, v in tuned["best_params"].items()},
                },
                metrics={
                    **configured.scores,
                    "fit_seconds": configured.fit_seconds,
                    "predict_seconds": configured.predict_seconds,
                    **{f"tuned_{k}": v for k, v in metrics["tuned"].items()},
                    **{f"baseline_{k}": v for k, v in metrics["baseline"].items()},
                },
            )
            mlflow_run.log_dataset(train_frame, f"{meta['name']}-train", "training", LABEL)
            mlflow_run.log_dataset(test_frame, f"{meta['name']}-test", "evaluation", LABEL)
            example = test_frame.drop(columns=[LABEL]).head(5)
            mlflow_run.log_model(paths.MODEL_FILE, example, configured.y_pred[:5])
            mlflow_run.log_artifact(metrics_file)
            mlflow_run.log_artifact(timings_file)
        files.write_json(outputs.staged(paths.EVALUATE_RUN), mlflow_run.record.to_dict())
        outputs.if_commit_fails(
            lambda error: runs.mark_outputs_failed(mlflow_run.record.to_dict(), error)
        )
    for name, r in results.items():
        print(
            f"evaluate: {name:10s} accuracy {r.scores['accuracy']:.4f}  "
            f"F1 macro {r.scores['f1_macro']:.4f}  ROC-AUC {r.scores['roc_auc_ovr']:.4f}"
        )
