"""plot: figures into ``reports/figures/``, DVC plot data into ``reports/plots/``, the
reviewer's ``reports/report.md``; figures and report also attached to the evaluate run."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold

from knnlab import metrics
from knnlab.estimators import KNNClassifier
from knnlab.pipeline import datasets, figures, files, paths, report
from knnlab.pipeline.datasets import features_and_labels
from knnlab.pipeline.model_io import load_model, read_model_params
from knnlab.pipeline.params import Params
from knnlab.tracking import runs

PRECISION_TARGET = 0.9


def _labels_and_proba(predictions: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Classes (as stored), proba (n, n_classes) and the proba column names."""
    columns = [c for c in predictions.columns if c.startswith("proba_")]
    labels = [c.removeprefix("proba_") for c in columns]
    # CSV round-trips integer labels as integers; match the class column names to them.
    numeric = all(x.lstrip("-").isdigit() for x in labels)
    classes = np.array([int(x) for x in labels]) if numeric else np.array(labels)
    return classes, predictions[columns].to_numpy(dtype=np.float64), columns


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


def curve_tables(y_true: np.ndarray, proba: np.ndarray, classes: np.ndarray):
    """Micro-averaged one-vs-rest ROC and precision-recall curves as DVC plot tables."""
    is_class = (y_true[:, None] == classes[None, :]).ravel()
    scores = proba.ravel()
    fpr, tpr, _ = metrics.roc_curve(is_class, scores)
    precision, recall, _ = metrics.precision_recall_curve(is_class, scores)
    roc = pd.DataFrame({"false_positive_rate": fpr, "true_positive_rate": tpr})
    pr = pd.DataFrame({"recall": recall, "precision": precision})
    return roc, pr


def cv_curve_table(cv_results: pd.DataFrame, tuned: dict) -> pd.DataFrame:
    """Mean and std CV score against k for the tuned p and weights (the DVC linear plot)."""
    best = tuned["best_params"]
    rows = cv_results[
        (cv_results["param_p"].astype(str) == str(best["p"]))
        & (cv_results["param_weights"] == best["weights"])
    ].drop_duplicates("param_n_neighbors")
    scorer = tuned["scoring"]
    return pd.DataFrame(
        {
            "n_neighbors": rows["param_n_neighbors"].to_numpy(),
            "cv_score": rows[f"mean_test_{scorer}"].to_numpy(),
            "cv_std": rows[f"std_test_{scorer}"].to_numpy(),
        }
    ).sort_values("n_neighbors")


def run(params: Params) -> None:
    predictions = files.read_csv(paths.PREDICTIONS_PLOT)
    cv_results = files.read_csv(paths.CV_RESULTS)
    tuned = files.read_json(paths.BEST_PARAMS)
    meta = files.read_json(paths.SPLIT_META)
    names = meta["class_names"]
    classes, proba, _ = _labels_and_proba(predictions)
    y_true, y_pred = predictions["actual"].to_numpy(), predictions["predicted"].to_numpy()
    display = [names.get(str(c), str(c)) for c in classes]

    made: dict[str, object] = {}
    cm = metrics.confusion_matrix(y_true, y_pred, labels=classes)
    made["confusion_matrix.png"] = figures.confusion_matrix_figure(
        cm, display, f"Confusion matrix: configured model on the {meta['name']} test split"
    )
    made["roc_curves.png"] = figures.roc_figure(y_true, proba, classes, display)
    made["precision_recall_curves.png"] = figures.precision_recall_figure(
        y_true, proba, classes, display
    )
    binary = None
    positive = datasets.positive_class(params.data.positive_class, classes)
    X_train, y_train = features_and_labels(files.read_parquet(paths.TRAIN_SPLIT))
    model_params = read_model_params(paths.MODEL_FILE)
    if positive is not None:
        column = int(np.flatnonzero(classes == positive)[0])
        is_positive = y_true == positive
        name = names.get(str(positive), str(positive))
        # The threshold is chosen on out-of-fold training scores, then applied once to
        # the test split: choosing it on the test split would leak, as tuning there would.
        train_scores = out_of_fold_scores(model_params, X_train, y_train, positive)
        chosen = metrics.threshold_for_precision(
            y_train == positive, train_scores, PRECISION_TARGET
        )
        threshold = None if chosen is None else chosen["threshold"]
        made["binary_threshold.png"] = figures.binary_threshold_figure(
            is_positive, proba[:, column], name, PRECISION_TARGET, threshold=threshold
        )
        binary = {
            "name": name,
            "target": PRECISION_TARGET,
            "at_precision": None
            if chosen is None
            else metrics.rates_at_threshold(is_positive, proba[:, column], threshold),
        }
    made["cv_score_vs_k.png"] = figures.cv_score_figure(
        cv_results, tuned["scoring"], tuned["best_params"]
    )
    made["cv_heatmap.png"] = figures.cv_heatmap_figure(cv_results, tuned["scoring"])
    made["search_speed.png"] = figures.search_speed_figure(files.read_csv(paths.TUNE_TIMINGS))

    X_test, _ = features_and_labels(files.read_parquet(paths.TEST_SPLIT))
    if meta["image_shape"]:
        images = X_test.reshape(-1, *meta["image_shape"])
        made["sample_gallery.png"] = figures.sample_gallery_figure(
            images, [f"label {names.get(str(y), y)}" for y in y_true], "Test-split samples"
        )
        if (cm - np.diag(np.diag(cm))).any():
            a, b = figures.most_confused_pair(cm)
            made["confused_pair.png"] = figures.confused_pair_figure(
                images, y_true, y_pred, (classes[a], classes[b]), (display[a], display[b])
            )
    if meta["n_features"] == 2:
        made["probability_surface.png"] = figures.probability_surface_figure(
            load_model(paths.MODEL_FILE),
            {"train": (X_train, y_train), "test": (X_test, y_true)},
            meta["feature_columns"],
            names,
        )

    roc, pr = curve_tables(y_true, proba, classes)
    text = report.build_report(
        meta,
        files.read_json(paths.METRICS_FILE),
        files.read_json(paths.TIMINGS_FILE),
        tuned,
        model_params,
        list(made),
        binary,
    )
    record = files.read_json(paths.EVALUATE_RUN)
    # Staged, then committed only once the figures and report are attached to the evaluate
    # run: a failure or a kill anywhere before leaves the previous outputs in place.
    with files.staged_outputs() as outputs:
        folder = outputs.staged_dir(paths.FIGURES_DIR)
        for name, fig in made.items():
            figures.save(fig, folder / name)
        files.write_csv(outputs.staged(paths.ROC_PLOT), roc)
        files.write_csv(outputs.staged(paths.PRECISION_RECALL_PLOT), pr)
        files.write_csv(outputs.staged(paths.CV_SCORE_PLOT), cv_curve_table(cv_results, tuned))
        report_file = outputs.staged(paths.REPORT_FILE)
        files.write_text(report_file, text)
        runs.log_artifacts_to(record, [folder / name for name in made], "figures")
        runs.log_artifacts_to(record, [report_file], None)
        runs.log_table(record, metrics_table(cm, display), "confusion_matrix.json")
    written = [paths.FIGURES_DIR / name for name in made]
    print(f"plot: {len(written)} figures -> {paths.FIGURES_DIR}, report -> {paths.REPORT_FILE}")


def metrics_table(cm: np.ndarray, display: list[str]) -> pd.DataFrame:
    """The confusion matrix as a long table (true, predicted, count) for MLflow's table view."""
    true_idx, pred_idx = np.indices(cm.shape)
    return pd.DataFrame(
        {
            "true": np.array(display)[true_idx.ravel()],
            "predicted": np.array(display)[pred_idx.ravel()],
            "count": cm.ravel(),
        }
    )
