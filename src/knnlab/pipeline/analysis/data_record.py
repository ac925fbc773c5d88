"""The evaluate run's record of what the neighbours say about the data: the configured
model's prediction sets on the test split (``reports/conformal.json``), and the MLflow
metrics and files of those sets, the split's leaks and the audit."""

from __future__ import annotations

import numpy as np

from knnlab import conformal
from knnlab.pipeline.io.paths import AUDIT_SUMMARY, SHAPLEY_VALUES, SPLIT_LEAKS, SUSPICIOUS_LABELS

# What the evaluate run attaches, beside its own outputs.
AUDIT_FILES = (SPLIT_LEAKS, AUDIT_SUMMARY, SUSPICIOUS_LABELS, SHAPLEY_VALUES)


def prediction_set_record(
    proba: np.ndarray,
    classes: np.ndarray,
    y_test: np.ndarray,
    card: dict,
    confidence: float,
    display_name=str,
) -> dict:
    """``reports/conformal.json``: the configured model's prediction sets on the test split
    (proba: (n_test, n_classes), columns in ``classes`` order; y_test: (n_test,)), with the
    threshold train calibrated (``card``: the model file's card): the promised coverage,
    the measured coverage with its Wilson interval at ``confidence``, set sizes, and the same
    per class (keyed by display name, so DVC shows one column each)."""
    threshold = card["conformal_threshold"]
    sets = conformal.prediction_sets(proba, threshold)
    y_code = np.searchsorted(classes, y_test)
    summary = conformal.coverage_summary(sets, y_code, classes, confidence)
    per_class = {
        display_name(label): {k: v for k, v in entry.items() if k != "class"}
        for label, entry in zip(classes, summary.pop("per_class"), strict=True)
    }
    return {
        "target": card["coverage"],
        "threshold": threshold,
        "calibration_rows": card["calibration_rows"],
        "confidence": confidence,
        **summary,
        "per_class": per_class,
    }


def tracked_metrics(conformal_record: dict, leaks: dict, audit_summary: dict) -> dict:
    """The evaluate run's MLflow metrics of the prediction sets (``conformal/``), the
    split's leaks (``leaks/``) and the audit (``audit/``)."""
    removal = audit_summary["removal"]
    logged = {
        "conformal/target": conformal_record["target"],
        "conformal/coverage": conformal_record["coverage"],
        "conformal/coverage_ci_low": conformal_record["coverage_low"],
        "conformal/coverage_ci_high": conformal_record["coverage_high"],
        "conformal/mean_set_size": conformal_record["mean_set_size"],
        "conformal/empty_share": conformal_record["empty_share"],
        "conformal/singleton_share": conformal_record["singleton_share"],
        "leaks/exact_duplicates": leaks["exact_duplicates"],
        "leaks/near_duplicates": leaks["near_duplicates"],
        "leaks/moved_to_train": leaks["moved_to_train"],
        "audit/suspicious_all_against": audit_summary["suspicious"]["all_against"],
        "audit/suspicious_most_against": audit_summary["suspicious"]["most_against"],
        "audit/shapley_harmful_rows": audit_summary["shapley"]["harmful_rows"],
        "audit/removal_cv_accuracy_before": removal["kept_accuracy_before"],
        "audit/removal_cv_accuracy_after": removal["kept_accuracy_after"],
        "audit/removal_fixed": removal["fixed"],
        "audit/removal_broken": removal["broken"],
    }
    return {k: float(v) for k, v in logged.items() if v is not None}
