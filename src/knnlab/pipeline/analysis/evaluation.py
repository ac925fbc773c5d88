"""Scoring models on the test split and the analyses drawn from the scores: arrays and
frames in, values out (the evaluate and plot stages read and write the files)."""

from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.model_selection import StratifiedKFold

from knnlab import metrics
from knnlab.algorithms import index_options, is_approximate
from knnlab.estimators import KNNClassifier
from knnlab.metrics import UndefinedMetricWarning, classification_scores
from knnlab.pipeline.io import files
from knnlab.pipeline.io.artifacts import MODELS, Evaluation, SplitInfo, TuneSummary, metric_name
from knnlab.pipeline.io.paths import (
    AUDIT_SUMMARY,
    BEST_PARAMS,
    CONFORMAL_FILE,
    METRICS_FILE,
    MODEL_FILE,
    PREDICTIONS_PLOT,
    UNCERTAINTY_FILE,
)
from knnlab.progress import Progress

PRECISION_TARGET = 0.9  # of the binary "is it a <class>?" analysis

# The evaluate run's tag holding evaluation_key(): how plot finds the run to add figures to.
EVALUATION_TAG = "knnlab.evaluation_sha256"
# What identifies one evaluation: the stage's inputs that define the models and its outputs.
EVALUATION_FILES = (
    MODEL_FILE,
    BEST_PARAMS,
    AUDIT_SUMMARY,
    METRICS_FILE,
    UNCERTAINTY_FILE,
    PREDICTIONS_PLOT,
    CONFORMAL_FILE,
)


def evaluation_key(staged: dict[Path, Path] | None = None) -> str:
    """:func:`knnlab.pipeline.io.files.digest` of :data:`EVALUATION_FILES`, each read from its
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
    model: Any = None  # the fitted model (not written anywhere)


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
        model=model,
    )


def evaluate_models(load_configured, tuned: TuneSummary, X_train, y_train, X_test, y_test):
    """The configured model (``load_configured()``: the saved one, as a user gets it), the
    tuned best refitted on the train split and a most-frequent-class baseline, each scored on
    the test split: {name: ModelResult} in :data:`knnlab.pipeline.io.artifacts.MODELS` order."""

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

    scored = {
        # "fit" of the saved model = load + check + (for trees) rebuild: what a user pays.
        "configured": lambda: evaluate_model(load_configured, X_test, y_test),
        "tuned": lambda: evaluate_model(
            lambda: KNNClassifier(**tuned.model_params()).fit(X_train, y_train), X_test, y_test
        ),
        "baseline": baseline,
    }
    results = {}
    # Tens of seconds on 10,000 test rows against 60,000: said as it goes.
    with Progress(len(scored), f"scoring models on {len(y_test):,} test rows", "model") as bar:
        for name, score in scored.items():
            results[name] = score()
            bar.update()
    return results


@dataclass
class ExactComparison:
    """An approximate model measured against its exact twin (the same k, p, weights and
    scaling, brute force) on the test split: ``recall`` (recall@k of its neighbours against
    the exact ones), the index's bytes, the seconds each takes for the whole test split in
    one batch and per single-row query, the index's build seconds (None when unknown), and
    the paired record of the two (:func:`knnlab.pipeline.analysis.significance.uncertainty`, first
    ``exact``, second the model)."""

    model: str
    algorithm: str
    options: dict
    n_neighbors: int
    recall: float
    index_bytes: int
    query_seconds: float
    exact_query_seconds: float
    single_query_seconds: float
    exact_single_query_seconds: float
    build_seconds: float | None
    n_test: int
    paired: dict

    @property
    def speedup(self) -> float:
        return self.exact_query_seconds / self.query_seconds

    def metrics(self) -> dict[str, float]:
        """MLflow metrics under ``approximate/`` (``approximate/tuned_`` for the tuned
        model): :func:`exact_comparison_metrics` and the seconds. Seconds churn: MLflow
        only, never a DVC output."""
        timed = {
            "query_seconds": self.query_seconds,
            "queries_per_second": self.n_test / self.query_seconds,
            "exact_queries_per_second": self.n_test / self.exact_query_seconds,
            "speedup_vs_exact": self.speedup,
            "single_query_ms": 1000 * self.single_query_seconds,
            "exact_single_query_ms": 1000 * self.exact_single_query_seconds,
        }
        if self.build_seconds is not None:
            timed["build_seconds"] = self.build_seconds
        prefix = _approximate_prefix(self.model)
        timed = {prefix + name: value for name, value in timed.items()}
        return {**exact_comparison_metrics(self.model, self.record()), **timed}

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
        """:func:`exact_comparison_sentence` with the speed: "...; 6.1× the queries per
        second of exact search (one query at a time: 0.3 ms against 2.1)"."""
        return exact_comparison_sentence(self.model, self.record()) + (
            f"; {self.speedup:.1f}× the queries per second of exact search (one query at a "
            f"time: {1000 * self.single_query_seconds:.2f} ms against "
            f"{1000 * self.exact_single_query_seconds:.2f} ms)"
        )


def _approximate_prefix(model: str) -> str:
    return "approximate/" + ("" if model == "configured" else f"{model}_")


def exact_comparison_metrics(model: str, record: dict) -> dict[str, float]:
    """The MLflow metrics of an approximate ``model`` against its exact twin that its
    ``vs_exact`` record in ``reports/uncertainty.json`` (:meth:`ExactComparison.record`)
    holds: recall@k, index bytes, the accuracy difference with its interval, McNemar's p."""
    pair = record["paired"]
    logged = {
        f"recall_at_{record['n_neighbors']}": record["recall"],
        "index_bytes": float(record["index_bytes"]),
        "accuracy_vs_exact": pair["accuracy_difference"],
        "accuracy_vs_exact_ci_low": pair["low"],
        "accuracy_vs_exact_ci_high": pair["high"],
        "mcnemar_p_vs_exact": pair["mcnemar_p"],
    }
    return {_approximate_prefix(model) + name: value for name, value in logged.items()}


def exact_comparison_sentence(model: str, record: dict) -> str:
    """ "configured, hnsw (M 16, ef_construction 200, ef_search 32): accuracy −0.0020
    [−0.0050, +0.0010] vs exact, within noise (McNemar p = 0.5); recall@5 0.9810", from a
    ``vs_exact`` record of ``reports/uncertainty.json``."""
    from knnlab.pipeline.analysis.significance import signed

    pair = record["paired"]
    options = ", ".join(f"{name} {value}" for name, value in record["index"].items())
    noise = "significant" if pair["significant"] else "within noise"
    return (
        f"{model}, {record['algorithm']} ({options}): accuracy "
        f"{signed(pair['accuracy_difference'])} [{signed(pair['low'])}, "
        f"{signed(pair['high'])}] vs exact, {noise} (McNemar p = {pair['mcnemar_p']:.3g}); "
        f"recall@{record['n_neighbors']} {record['recall']:.4f}"
    )


def vs_exact_metrics(results: dict, comparisons: dict) -> dict:
    """``reports/vs_exact.json``: per kNN model (configured, tuned) its recall@k against the
    exact neighbours, its accuracy minus its exact twin's and its index bytes; an exact
    model scores 1, 0 and 0, so every experiment has the same columns in ``dvc exp show``.
    comparisons : {model: ExactComparison} of the approximate ones."""
    table = {}
    for name in ("configured", "tuned"):
        found = comparisons.get(name)
        table[name] = {
            "recall": 1.0 if found is None else found.recall,
            "accuracy_vs_exact": 0.0 if found is None else found.paired["accuracy_difference"],
            "index_bytes": 0 if found is None else found.index_bytes,
        }
    return table


# Single-row queries timed per model: a served model's latency, at a small cost (25 exact
# queries against 60,000 x 784 Fashion-MNIST rows take about 7 s today).
SINGLE_QUERIES = 25


def _single_query_seconds(model, X_test: np.ndarray) -> float:
    """Mean seconds of one ``kneighbors`` call per row, over the first rows of X_test: what
    a served model pays per request."""
    rows = X_test[: min(SINGLE_QUERIES, len(X_test))]
    start = time.perf_counter()
    for row in rows:
        model.kneighbors(row[None, :])
    return (time.perf_counter() - start) / len(rows)


def compare_with_exact(
    name: str,
    model,
    reference: tuple[np.ndarray, np.ndarray],
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    stats_params: tuple[float, int, int],
    build_seconds: float | None = None,
) -> ExactComparison:
    """A fitted approximate ``model`` against its exact twin on the test split.

    reference : the exact neighbours of the test rows, distances and indices (n_test, >= k)
        (:mod:`knnlab.pipeline.analysis.reference`): recall and the twin's predictions come from
        them. The twin is also fitted and timed, batch and single rows, as the model is.
    data : X_train (n_train, d), y_train (n_train,), X_test (n_test, d), y_test (n_test,);
    stats_params : confidence, resamples and seed of the paired test.
    """
    from knnlab.pipeline.analysis import significance
    from knnlab.voting import class_probabilities

    X_train, y_train, X_test, y_test = data
    k = model.n_neighbors
    exact = KNNClassifier(**{**model.get_params(), "algorithm": "brute", "index": None})
    exact.fit(X_train, y_train)
    seconds = {}
    for which, fitted in (("exact", exact), ("approximate", model)):
        start = time.perf_counter()
        _, indices = fitted.kneighbors(X_test)
        seconds[which] = (time.perf_counter() - start, _single_query_seconds(fitted, X_test))
        if which == "approximate":
            found = indices
    ref_distances, ref_indices = reference[0][:, :k], reference[1][:, :k]
    codes = np.searchsorted(model.classes_, y_train)  # training labels as class positions
    (exact_proba,) = class_probabilities(
        ref_distances, codes[ref_indices], len(model.classes_), model.weights, [k]
    )
    proba = model.predict_proba(X_test)  # (n_test, n_classes)
    predictions = {
        "exact": (model.classes_[np.argmax(exact_proba, axis=1)], exact_proba, model.classes_),
        name: (model.classes_[np.argmax(proba, axis=1)], proba, model.classes_),
    }
    confidence, resamples, seed = stats_params
    record = significance.uncertainty(
        y_test,
        predictions,
        confidence,
        resamples,
        seed,
        significance.test_split_fingerprint(X_test, y_test),
        pairs=(("exact", name),),
    )
    return ExactComparison(
        model=name,
        algorithm=model.algorithm_,
        options=model.index_options_,
        n_neighbors=k,
        recall=metrics.recall_at_k(found, ref_indices),
        index_bytes=int(model.index_state().size),
        query_seconds=seconds["approximate"][0],
        exact_query_seconds=seconds["exact"][0],
        single_query_seconds=seconds["approximate"][1],
        exact_single_query_seconds=seconds["exact"][1],
        build_seconds=build_seconds,
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


def score_metrics(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    """Every model's test scores (``reports/metrics.json``) as MLflow metrics, each in its
    model's section (:func:`artifacts.metric_name`)."""
    return {metric_name(m, k): v for m in MODELS for k, v in scores[m].items()}


def timing_metrics(configured: ModelResult) -> dict[str, float]:
    """The configured model's seconds as MLflow metrics under ``timing/`` (MLflow only:
    seconds are not outputs)."""
    return {
        "timing/fit_seconds": configured.fit_seconds,
        "timing/predict_seconds": configured.predict_seconds,
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


OUT_OF_FOLD_FOLDS = 5


def out_of_fold_scores(
    model_params: dict, X_train: np.ndarray, y_train: np.ndarray, positive
) -> np.ndarray:
    """Probability of ``positive`` for each training row (n_train,), from the configured
    model fitted on the other folds (5 stratified folds, unshuffled: no random choice)."""
    scores = np.empty(len(y_train))
    folds = list(StratifiedKFold(OUT_OF_FOLD_FOLDS).split(X_train, y_train))
    description = f"out-of-fold scores of {len(y_train):,} training rows"
    with Progress(len(folds), description, "fold") as progress:
        for fit_rows, score_rows in folds:
            model = KNNClassifier(**model_params).fit(X_train[fit_rows], y_train[fit_rows])
            column = int(np.flatnonzero(model.classes_ == positive)[0])
            scores[score_rows] = model.predict_proba(X_train[score_rows])[:, column]
            progress.update()
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


def configured_binary_analysis(
    positive,
    name: str,
    model_params: dict,
    X_train: np.ndarray,
    y_train: np.ndarray,
    y_true: np.ndarray,
    proba: np.ndarray,
    classes: np.ndarray,
) -> dict:
    """:func:`binary_analysis` of the configured model (``model_params``) for class
    ``positive`` (named ``name``), with its test scores taken from ``proba`` (n_test,
    n_classes; columns in ``classes`` order, labels ``y_true``) and its training scores from
    :func:`out_of_fold_scores` on ``X_train`` (n_train, n_features), ``y_train``. Adds
    ``positive`` to the analysis."""
    column = int((classes == positive).argmax())
    analysis = binary_analysis(
        positive,
        name,
        y_true == positive,
        proba[:, column],
        y_train == positive,
        out_of_fold_scores(model_params, X_train, y_train, positive),
    )
    return {**analysis, "positive": positive}


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
    same = (cv_results["param_p"].astype(str) == str(best["p"])) & (
        cv_results["param_weights"] == best["weights"]
    )
    if is_approximate(best.get("algorithm")):  # the tuned index's own rows
        same &= (cv_results["param_algorithm"] == best["algorithm"]) & (
            cv_results["param_index"] == json.dumps(best["index"])
        )
    elif "param_algorithm" in cv_results:  # every exact algorithm scores the same
        same &= ~cv_results["param_algorithm"].map(is_approximate)
    rows = cv_results[same].drop_duplicates("param_n_neighbors")
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


_DESCRIBED = (("accuracy", "accuracy"), ("f1_macro", "F1 macro"), ("roc_auc_ovr", "ROC-AUC"))


def run_description(
    run_name: str,
    split: SplitInfo,
    tuned_name: str,
    scores: dict[str, dict[str, float]],
    uncertainty: dict,
    sentences: list[str],
    model_uri: str | None,
) -> str:
    """The evaluate run's description (markdown; MLflow shows it atop the run page): the
    three models' headline scores rounded for reading, accuracy with its interval, the
    paired verdicts and ``sentences`` (e.g. against exact search), and the model's URI.
    Full precision stays in the run's metrics. scores : ``reports/metrics.json``'s form."""
    from knnlab.pipeline.analysis.significance import verdict

    confidence = round(100 * uncertainty.get("confidence", 0.95))
    labels = {
        "configured": "configured (this run's model)",
        "tuned": f"tuned ({tuned_name})",
        "baseline": "baseline (most frequent class)",
    }
    lines = [
        f"**{run_name}** on {split.name}: {split.n_train:,} training rows, "
        f"{split.n_test:,} test rows.",
        "",
        f"| model | accuracy [{confidence} % interval] | F1 macro | ROC-AUC |",
        "|---|---|---|---|",
    ]
    for model in MODELS:
        interval = uncertainty["intervals"].get(model, {}).get("accuracy")
        accuracy = f"{scores[model]['accuracy']:.4f}"
        if interval:
            accuracy += f" [{interval['low']:.4f}, {interval['high']:.4f}]"
        rest = " | ".join(f"{scores[model][metric]:.4f}" for metric, _ in _DESCRIBED[1:])
        lines.append(f"| {labels[model]} | {accuracy} | {rest} |")
    lines.append("")
    lines += [f"- {verdict(pair, {})}" for pair in uncertainty["paired"]]
    lines += [f"- {sentence}" for sentence in sentences]
    if model_uri:
        lines += ["", f"Model: `{model_uri}` (serve it: `knnlab serve {model_uri}`)"]
    return "\n".join(lines) + "\n"
