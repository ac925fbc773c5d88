"""plot: figures into ``reports/figures/``, DVC plot data into ``reports/plots/``, the
reviewer's ``reports/report.md``; figures and report also attached to the evaluate run that
logged the outputs drawn (found by its
:data:`~knnlab.pipeline.analysis.evaluation.EVALUATION_TAG`)."""

from __future__ import annotations

from knnlab import metrics
from knnlab.pipeline.analysis import evaluation, explain, significance, votes
from knnlab.pipeline.data import datasets
from knnlab.pipeline.data.dataset import read_features_and_labels
from knnlab.pipeline.io import files, paths
from knnlab.pipeline.io.artifacts import Evaluation, SplitInfo, TuneSummary
from knnlab.pipeline.io.model_io import load_model, read_model_params
from knnlab.pipeline.io.params import Params
from knnlab.pipeline.presentation import (
    audit_report,
    explanations,
    figure_style,
    figures,
    report,
    tradeoff_figures,
)
from knnlab.tracking.stage import LoggedStage


def log_to_evaluate_run(log_artifacts, log_table, figure_files, report_file, confusion) -> None:
    """What plot adds to the evaluate run: the figures (under ``figures/``), the report and
    the confusion matrix as a table. ``log_artifacts(files, artifact_path)`` and
    ``log_table(frame, artifact_file)`` log to that run: the stage's, or ``knnlab relog``'s."""
    log_artifacts(figure_files, "figures")
    log_artifacts([report_file], None)
    log_table(confusion, "confusion_matrix.json")


def confusion_frame(split: SplitInfo, y_true, y_pred, classes):
    """The confusion matrix of the test split's predictions as the table MLflow shows,
    rows and columns named by the classes' display names."""
    display = [split.display_name(c) for c in classes]
    confusion = metrics.confusion_matrix(y_true, y_pred, labels=classes)
    return evaluation.confusion_table(confusion, display)


def run(params: Params) -> None:
    # The evaluate run to add to, found first: a store without it fails before the work.
    key = evaluation.evaluation_key()
    stage = LoggedStage(
        params.mlflow, "plot", paths.PLOT_RUN, add_to=("evaluate", evaluation.EVALUATION_TAG, key)
    )
    split = SplitInfo.read(paths.SPLIT_META)
    tuned = TuneSummary.read(paths.BEST_PARAMS)
    cv_results = files.read_csv(paths.CV_RESULTS)
    model_params = read_model_params(paths.MODEL_FILE)
    X_train, y_train = read_features_and_labels(paths.TRAIN_SPLIT)
    X_test, _ = read_features_and_labels(paths.TEST_SPLIT)
    y_true, y_pred, classes, proba = evaluation.read_prediction_table(
        files.read_csv(paths.PREDICTIONS_PLOT)
    )
    test = figures.TestPredictions(y_true, y_pred, proba, classes, X_test)

    positive = datasets.positive_class(params.data.positive_class, classes)
    binary = None
    if positive is not None:
        binary = evaluation.configured_binary_analysis(
            positive,
            split.display_name(positive),
            model_params,
            X_train,
            y_train,
            y_true,
            proba,
            classes,
        )
    model = load_model(paths.MODEL_FILE)
    surface = None
    if split.n_features == 2:
        surface = (model, {"train": (X_train, y_train)})
    made = figures.pipeline_figures(split, test, tuned, cv_results, binary, surface)
    tradeoff = None
    if tradeoff_figures.has_approximate(cv_results):  # a grid with hnsw or ivf
        made["speed_accuracy.png"] = tradeoff_figures.tradeoff_figure(
            cv_results, tuned.scoring, "distances"
        )
        tradeoff = tradeoff_figures.fastest_within_one_se(cv_results, tuned.scoring, "distances")
    # Why kNN erred: the configured model's most confident errors and their neighbours.
    errors = explain.explain_worst_errors(
        model, X_train, y_train, X_test, y_true, y_pred, proba, classes
    )
    if split.image_shape and len(errors):
        made["worst_errors.png"] = explanations.explanation_figure(
            errors, X_train, X_test, split.image_shape, split.display_name
        )
    # What the neighbours say about the data: prediction sets, labels, values, leaks.
    audit_summary = files.read_json(paths.AUDIT_SUMMARY)
    oof = votes.read_votes_table(files.read_parquet(paths.OUT_OF_FOLD_VOTES), y_train)
    suspicious = votes.explain_suspicious(oof, y_train)
    if split.image_shape and len(suspicious):
        made["suspicious_labels.png"] = explanations.explanation_figure(
            suspicious,
            X_train,
            X_train,
            split.image_shape,
            split.display_name,
            words=explanations.SUSPICIOUS,
        )
    data_sections = [
        *audit_report.prediction_sets_section(files.read_json(paths.CONFORMAL_FILE)),
        "",
        *audit_report.suspicious_section(
            audit_summary,
            files.read_csv(paths.SUSPICIOUS_LABELS),
            "suspicious_labels.png" in made,
        ),
        "",
        *audit_report.shapley_section(audit_summary),
        "",
        *audit_report.leaks_section(files.read_json(paths.SPLIT_LEAKS)),
    ]
    roc, pr = evaluation.curve_tables(y_true, proba, classes)
    text = report.build_report(
        split,
        Evaluation.read_metrics(paths.METRICS_FILE),
        tuned,
        model_params,
        list(made),
        binary,
        significance.read_uncertainty(paths.UNCERTAINTY_FILE),
        explanations.explanation_markdown(errors, split.display_name),
        tradeoff,
        data_sections,
    )
    confusion = confusion_frame(split, y_true, y_pred, classes)
    with stage.outputs() as outputs:
        folder = outputs.staged_dir(paths.FIGURES_DIR)
        for name, fig in made.items():
            figure_style.save(fig, folder / name)
        files.write_csv(outputs.staged(paths.ROC_PLOT), roc)
        files.write_csv(outputs.staged(paths.PRECISION_RECALL_PLOT), pr)
        files.write_csv(
            outputs.staged(paths.CV_SCORE_PLOT), evaluation.cv_curve_table(cv_results, tuned)
        )
        report_file = outputs.staged(paths.REPORT_FILE)
        files.write_text(report_file, text)
        log_to_evaluate_run(
            stage.log_artifacts,
            stage.log_table,
            [folder / name for name in made],
            report_file,
            confusion,
        )
    print(f"plot: {len(made)} figures -> {paths.FIGURES_DIR}, report -> {paths.REPORT_FILE}")
