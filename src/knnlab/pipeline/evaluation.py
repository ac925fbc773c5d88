"""Scoring models on the test split and the analyses drawn from the scores: arrays and
frames in, values out (the evaluate and plot stages read and write the files)."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.model_selection import StratifiedKFold

from knnlab import metrics
from knnlab.algorithms import index_options, is_approximate
from knnlab.estimators import KNNClassifier
from knnlab.metrics import UndefinedMetricWarning, classification_scores
from knnlab.pipeline import files
from knnlab.pipeline.artifacts import Evaluation, SplitInfo, TuneSummary
from knnlab.pipeline.paths import (
    BEST_PARAMS,
    METRICS_FILE,
    MODEL_FILE,
    PREDICTIONS_PLOT,
    UNCERTAINTY_FILE,
)

PRECISION_TARGET = 0.9  # of the binary "is it a <class>?" analysis

# The evaluate run's tag holding evaluation_key(): how plot finds the run to add figures to.
EVALUATION_TAG = "knnlab.evaluation_sha256"
# What identifies one evaluation: the stage's inputs that define the models and its outputs.
EVALUATION_FILES = (MODEL_FILE, BEST_PARAMS, METRICS_FILE, UNCERTAINTY_FILE, PREDICTIONS_PLOT)


def evaluation_key(staged: dict[Path, Path] | None = None) -> str:
    """:func:`knnlab.pipeline.files.digest` of :data:`EVALUATION_FILES`, each read from its
    ``staged`` copy if given, else in place."""
    staged = staged or {}
    return files.digest({path.as_posix(): staged.get(path, path) for path in EVALUATION_FILES})


@dataclass
class ModelResult:
    """One model's test-split results. proba: (n_test, n_classes); y_pred: (n_test,)."""

    scores: dict[str, float]
    fit_seconds: float
    predict_seconds: float
    y_pred: np.ndarray
    proba: np.ndarray
    classes: np.ndarray


def evaluate_model(make_fitted, X_test: np.ndarray, y_test: np.ndarray) -> ModelResult:
    """Time ``make_fitted()`` (load or fit), then predict the test split and score it."""
    start = time.perf_counter()
    model = make_fitted()
    fitted = time.perf_counter()
    proba = model.predict_proba(X_test)
    y_pred = model.classes_[np.argmax(proba, axis=1)]
    predicted = time.perf_counter()
    return ModelResult(
        scores=classification_scores(y_test, y_pred, proba, model.classes_),
        fit_seconds=fitted - start,
        predict_seconds=predicted - fitted,
        y_pred=y_pred,
        proba=proba,
        classes=model.classes_,
    )


def evaluate_models(load_configured, tuned: TuneSummary, X_train, y_train, X_test, y_test):
    """The configured model (``load_configured()``: the saved one, as a user gets it), the
    tuned best refitted on the train split and a most-frequent-class baseline, each scored on
    the test split: {name: ModelResult} in :data:`knnlab.pipeline.artifacts.MODELS` order."""

    def baseline() -> ModelResult:
        # A constant predictor leaves precision undefined for every class it never
        # predicts: expected, reported as NaN per class, so the warning is only noise here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            return evaluate_model(
                lambda: DummyClassifier(strategy="most_frequent").fit(X_train, y_train),
                X_test,
                y_test,
            )

    results = {
        # "fit" of the saved model = load + check + (for trees) rebuild: what a user pays.
        "configured": evaluate_model(load_configured, X_test, y_test),
        "tuned": evaluate_model(
            lambda: KNNClassifier(**tuned.model_params()).fit(X_train, y_train), X_test, y_test
        ),
        "baseline": baseline(),
    }
    return results


@dataclass
class ExactComparison:
    """An approximate model measured against the exact one with the same k, p, weights and
    scaling, on the test split: ``recall`` (recall@k of its neighbours), the index's bytes,
    each model's query seconds for the whole test split, and the paired record of the two
    (:func:`knnlab.pipeline.significance.uncertainty`, first ``exact``, second
    ``configured``)."""

    algorithm: str
    options: dict
    n_neighbors: int
    recall: float
    index_bytes: int
    query_seconds: float
    exact_query_seconds: float
    n_test: int
    paired: dict

    @property
    def speedup(self) -> float:
        return self.exact_query_seconds / self.query_seconds

    def metrics(self) -> dict[str, float]:
        """MLflow metrics, grouped under ``approximate/`` (seconds churn: MLflow only)."""
        pair = self.paired
        return {
            f"approximate/recall_at_{self.n_neighbors}": self.recall,
            "approximate/index_bytes": float(self.index_bytes),
            "approximate/query_seconds": self.query_seconds,
            "approximate/queries_per_second": self.n_test / self.query_seconds,
            "approximate/exact_queries_per_second": self.n_test / self.exact_query_seconds,
            "approximate/speedup_vs_exact": self.speedup,
            "approximate/accuracy_vs_exact": pair["accuracy_difference"],
            "approximate/accuracy_vs_exact_ci_low": pair["low"],
            "approximate/accuracy_vs_exact_ci_high": pair["high"],
            "approximate/mcnemar_p_vs_exact": pair["mcnemar_p"],
        }

    def record(self) -> dict:
        """What ``reports/uncertainty.json`` keeps under ``vs_exact``: all but the seconds,
        which differ on every run (they go to MLflow)."""
        return {
            "algorithm": self.algorithm,
            "index": self.options,
            "n_neighbors": self.n_neighbors,
            "recall": self.recall,
            "index_bytes": self.index_bytes,
            "paired": self.paired,
        }

    def sentence(self) -> str:
        """ "hnsw (ef_search 32): accuracy −0.0020 [−0.0050, +0.0010] vs exact, within noise;
        recall@5 0.981; 6.1× the queries per second"."""
        from knnlab.pipeline.significance import signed

        pair = self.paired
        options = ", ".join(f"{name} {value}" for name, value in self.options.items())
        noise = "significant" if pair["significant"] else "within noise"
        return (
            f"{self.algorithm} ({options}): accuracy {signed(pair['accuracy_difference'])} "
            f"[{signed(pair['low'])}, {signed(pair['high'])}] vs exact, {noise} (McNemar "
            f"p = {pair['mcnemar_p']:.3g}); recall@{self.n_neighbors} {self.recall:.4f}; "
            f"{self.speedup:.1f}× the queries per second of exact search"
        )


def compare_with_exact(
    load_configured, X_train, y_train, X_test, y_test, confidence, resamples, seed
) -> ExactComparison | None:
    """The configured model against its exact twin (None when it is exact itself). Both
    are fitted first; then each answers the whole test split once, timed."""
    from knnlab.pipeline import significance

    approximate = load_configured()
    if approximate.exact_:
        return None
    params = {**approximate.get_params(), "algorithm": "brute", "index": None}
    exact = KNNClassifier(**params).fit(X_train, y_train)
    answers = {}
    for name, model in (("exact", exact), ("configured", approximate)):
        start = time.perf_counter()
        _, indices = model.kneighbors(X_test)
        seconds = time.perf_counter() - start
        proba = model.predict_proba(X_test)  # (n_test, n_classes); searches again, untimed
        y_pred = model.classes_[np.argmax(proba, axis=1)]
        answers[name] = (y_pred, proba, model.classes_, seconds, indices)
    record = significance.uncertainty(
        y_test,
        {name: answer[:3] for name, answer in answers.items()},
        confidence,
        resamples,
        seed,
        significance.test_split_fingerprint(X_test, y_test),
        pairs=(("exact", "configured"),),
    )
    return ExactComparison(
        algorithm=approximate.algorithm_,
        options=approximate.index_options_,
        n_neighbors=approximate.n_neighbors,
        recall=metrics.recall_at_k(answers["configured"][4], answers["exact"][4]),
        index_bytes=int(approximate.index_state().size),
        query_seconds=answers["configured"][3],
        exact_query_seconds=answers["exact"][3],
        n_test=len(y_test),
        paired=record["paired"][0],
    )


def evaluation_of(results: dict[str, ModelResult]) -> Evaluation:
    return Evaluation(
        metrics={name: r.scores for name, r in results.items()},
        timings={
            name: {"fit_seconds": r.fit_seconds, "predict_seconds": r.predict_seconds}
            for name, r in results.items()
        },
    )


def run_params(split: SplitInfo, model_params: dict, tuned: TuneSummary) -> dict:
    """The evaluate run's MLflow params: the data, the configured model (an approximate
    index's options as ``index.<option>``, defaults filled in, and ``index_seed``), the tuned
    pick."""
    model = {k: v for k, v in model_params.items() if k not in ("index", "random_state")}
    if is_approximate(model_params["algorithm"]):
        options = index_options(model_params["algorithm"], model_params["index"])
        model |= {f"index.{name}": value for name, value in options.items()}
        model["index_seed"] = model_params["random_state"]
    return {
        "dataset": split.name,
        "test_size": split.test_size,
        "seed": split.seed,
        "n_train": split.n_train,
        "n_test": split.n_test,
        **model,
        **{f"tuned_{k}": v for k, v in tuned.best_params.items()},
    }


def run_metrics(results: dict[str, ModelResult]) -> dict[str, float]:
    """The evaluate run's MLflow metrics: the configured model's scores and times plain, the
    other models' scores prefixed with their name."""
    configured = results["configured"]
    return {
        **configured.scores,
        "fit_seconds": configured.fit_seconds,
        "predict_seconds": configured.predict_seconds,
        **{f"tuned_{k}": v for k, v in results["tuned"].scores.items()},
        **{f"baseline_{k}": v for k, v in results["baseline"].scores.items()},
    }


def prediction_table(
    y_test: np.ndarray, result: ModelResult, others: dict[str, ModelResult] | None = None
) -> pd.DataFrame:
    """Per test sample: actual and predicted label and one ``proba_<class>`` column per class
    in ``classes_`` order (the confusion, ROC and precision-recall plots are drawn from it);
    for each of ``others`` (e.g. the tuned and baseline models) the same columns prefixed
    with its name, so ``knnlab report --base`` can pair every model's predictions across
    revisions row by row."""
    table = pd.DataFrame({"actual": y_test, "predicted": result.y_pred})
    for column, label in enumerate(result.classes):
        table[f"proba_{label}"] = result.proba[:, column]
    for name, other in (others or {}).items():
        table[f"{name}_predicted"] = other.y_pred
        for column, label in enumerate(other.classes):
            table[f"{name}_proba_{label}"] = other.proba[:, column]
    return table


def _labels_of(names: list[str]) -> np.ndarray:
    # CSV round-trips integer labels as integers; match the class column names to them.
    numeric = all(x.lstrip("-").isdigit() for x in names)
    return np.array([int(x) for x in names]) if numeric else np.array(names)


def read_prediction_table(predictions: pd.DataFrame):
    """The inverse of :func:`prediction_table` for the configured model: y_true, y_pred
    (n,), the classes (as stored) and proba (n, n_classes)."""
    columns = [c for c in predictions.columns if c.startswith("proba_")]
    classes = _labels_of([c.removeprefix("proba_") for c in columns])
    y_true = predictions["actual"].to_numpy()
    y_pred = predictions["predicted"].to_numpy()
    return y_true, y_pred, classes, predictions[columns].to_numpy(dtype=np.float64)


def read_model_predictions(predictions: pd.DataFrame):
    """Every model's predictions in a :func:`prediction_table`: y_true (n,), the
    configured model's classes and {model: (y_pred (n,), proba (n, n_classes))} for the
    configured model and each prefixed model whose classes match (columns in that order)."""
    y_true, y_pred, classes, proba = read_prediction_table(predictions)
    models = {"configured": (y_pred, proba)}
    for column in predictions.columns:
        if not column.endswith("_predicted"):
            continue
        name = column.removesuffix("_predicted")
        columns = [c for c in predictions.columns if c.startswith(f"{name}_proba_")]
        labels = _labels_of([c.removeprefix(f"{name}_proba_") for c in columns])
        if labels.shape != classes.shape or (labels != classes).any():
            continue  # a model with other classes cannot be scored beside these
        models[name] = (
            predictions[column].to_numpy(),
            predictions[columns].to_numpy(dtype=np.float64),
        )
    return y_true, classes, models


def out_of_fold_scores(
    model_params: dict, X_train: np.ndarray, y_train: np.ndarray, positive
) -> np.ndarray:
    """Probability of ``positive`` for each training row (n_train,), from the configured
    model fitted on the other folds (5 stratified folds, unshuffled: no random choice)."""
    scores = np.empty(len(y_train))
    for fit_rows, score_rows in StratifiedKFold(5).split(X_train, y_train):
        model = KNNClassifier(**model_params).fit(X_train[fit_rows], y_train[fit_rows])
        column = int(np.flatnonzero(model.classes_ == positive)[0])
        scores[score_rows] = model.predict_proba(X_train[score_rows])[:, column]
    return scores


def binary_analysis(
    positive, name: str, is_positive_test, test_scores, is_positive_train, train_scores
) -> dict:
    """The "is it a <positive>?" analysis: the threshold that reaches
    :data:`PRECISION_TARGET` precision on out-of-fold training scores, then its precision,
    recall and false positive rate on the test split. Chosen on the training folds: choosing
    it on the test split would leak, as tuning there would. Scores: (n,) each."""
    chosen = metrics.threshold_for_precision(is_positive_train, train_scores, PRECISION_TARGET)
    return {
        "name": name,
        "target": PRECISION_TARGET,
        "threshold": None if chosen is None else chosen["threshold"],
        "at_precision": None
        if chosen is None
        else metrics.rates_at_threshold(is_positive_test, test_scores, chosen["threshold"]),
    }


def curve_tables(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray):
    """Micro-averaged one-vs-rest ROC and precision-recall curves as DVC plot tables."""
    is_class = (y_true[:, None] == classes[None, :]).ravel()
    scores = proba.ravel()
    fpr, tpr, _ = metrics.roc_curve(is_class, scores)
    precision, recall, _ = metrics.precision_recall_curve(is_class, scores)
    roc = pd.DataFrame({"false_positive_rate": fpr, "true_positive_rate": tpr})
    pr = pd.DataFrame({"recall": recall, "precision": precision})
    return roc, pr


def cv_curve_table(cv_results: pd.DataFrame, tuned: TuneSummary) -> pd.DataFrame:
    """Mean, std and standard error of the CV score against k for the tuned p and weights
    (the DVC linear plot): columns ``n_neighbors``, ``cv_score``, ``cv_std``, ``cv_se``, one
    row per k. ``cv_se`` is NaN for a table written before ``sem_test_*`` existed."""
    best = tuned.best_params
    rows = cv_results[
        (cv_results["param_p"].astype(str) == str(best["p"]))
        & (cv_results["param_weights"] == best["weights"])
    ].drop_duplicates("param_n_neighbors")
    se = f"sem_test_{tuned.scoring}"
    return pd.DataFrame(
        {
            "n_neighbors": rows["param_n_neighbors"].to_numpy(),
            "cv_score": rows[f"mean_test_{tuned.scoring}"].to_numpy(),
            "cv_std": rows[f"std_test_{tuned.scoring}"].to_numpy(),
            "cv_se": rows[se].to_numpy() if se in rows else np.full(len(rows), np.nan),
        }
    ).sort_values("n_neighbors")


def confusion_table(cm: np.ndarray, display: list[str]) -> pd.DataFrame:
    """The confusion matrix cm (n_classes, n_classes) as a long table (true, predicted,
    count) for MLflow's table view."""
    true_idx, pred_idx = np.indices(cm.shape)
    return pd.DataFrame(
        {
            "true": np.array(display)[true_idx.ravel()],
            "predicted": np.array(display)[pred_idx.ravel()],
            "count": cm.ravel(),
        }
    )
