"""What the neighbours say about the data, beside the model they explain: the configured
model's out-of-fold votes on the train split (kept by train: they calibrate its prediction
sets), the training rows whose labels those votes contradict, each training row's
kNN-Shapley value for the test split, and what dropping the most harmful rows does to
cross-validated accuracy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from knnlab import label_issues
from knnlab.estimators import KNNClassifier
from knnlab.out_of_fold import OutOfFold, out_of_fold
from knnlab.stats import mcnemar_exact
from knnlab.valuation import knn_shapley

# Rows the suspicious-labels table keeps (the report shows the first few, the figure fewer).
SUSPICIOUS_ROWS = 100
# The share of training rows dropped to test whether the most harmful ones really hurt.
HARMFUL_SHARE = 0.01
MOST_HARMFUL_LISTED = 10


# --- suspicious labels ----------------------------------------------------------------------


def suspicious_labels(oof: OutOfFold, display_name=str, limit: int = SUSPICIOUS_ROWS):
    """The ``limit`` most suspicious training rows (:func:`knnlab.label_issues.most_suspicious`)
    as a table: ``rank``, ``row`` (of the train split), ``label``, ``suspicion`` (the
    out-of-fold vote against the label), ``suggested`` (the strongest other class),
    ``suggested_vote``, ``neighbors`` (the voters' rows, nearest first), and the counts
    of the whole split: {"rows", "all_against" (suspicion 1), "most_against" (> 0.5)}."""
    suspicion = label_issues.suspicion(oof)
    order = label_issues.most_suspicious(oof)[:limit]
    suggested = label_issues.suggested_code(oof)
    table = pd.DataFrame(
        {
            "rank": np.arange(1, len(order) + 1),
            "row": order,
            "label": [display_name(oof.classes[oof.y_code[i]]) for i in order],
            "suspicion": np.round(suspicion[order], 6),
            "suggested": [display_name(oof.classes[suggested[i]]) for i in order],
            "suggested_vote": np.round(oof.proba[order, suggested[order]], 6),
            "neighbors": [" ".join(str(j) for j in oof.neighbors[i]) for i in order],
        }
    )
    counts = {
        "rows": len(suspicion),
        "all_against": int((suspicion >= 1.0).sum()),
        "most_against": int((suspicion > 0.5).sum()),
    }
    return table, counts


# --- kNN-Shapley values and the removal check -------------------------------------------------


def shapley_values(
    model_params: dict, X_train: np.ndarray, y_train: np.ndarray, X_test, y_test
) -> np.ndarray:
    """(n_train,) each training row's exact kNN-Shapley value for the test split
    (:func:`knnlab.valuation.knn_shapley`), in the configured model's space: its k, its p,
    its scaling fitted on the train split. The closed form values the plain majority vote of
    exact neighbours; a distance-weighted or approximate model is valued as that vote."""
    model = KNNClassifier(**model_params).fit(X_train, y_train)
    return knn_shapley(
        model._transform(np.asarray(X_train, dtype=np.float64)),
        y_train,
        model._transform(np.asarray(X_test, dtype=np.float64)),
        y_test,
        model.n_neighbors,
        p=float(model.p),
    )


def shapley_table(values: np.ndarray, y_train: np.ndarray, display_name=str) -> pd.DataFrame:
    """``shapley.csv``: one row per training row, most harmful (lowest value) first:
    ``rank``, ``row``, ``label``, ``value``."""
    order = np.lexsort((np.arange(len(values)), values))
    return pd.DataFrame(
        {
            "rank": np.arange(1, len(order) + 1),
            "row": order,
            "label": [display_name(y_train[i]) for i in order],
            "value": values[order],
        }
    )


def removal_effect(
    model_params: dict,
    X_train: np.ndarray,
    y_train: np.ndarray,
    oof: OutOfFold,
    values: np.ndarray,
    share: float = HARMFUL_SHARE,
) -> dict:
    """Cross-validated accuracy with and without the ``share`` of training rows of lowest
    Shapley value, on the same folds.

    Both accuracies are measured on the rows kept: dropping rows the model gets wrong from
    the scoring too would raise the accuracy without any row having helped. ``fixed`` and
    ``broken`` count the kept rows whose out-of-fold prediction turned right or wrong, and
    ``p_value`` is McNemar's exact test on them."""
    n_removed = max(1, math.ceil(share * len(values)))
    removed = np.lexsort((np.arange(len(values)), values))[:n_removed]
    folds = oof.folds.copy()
    folds[removed] = -1  # never fitted on, never scored
    kept = folds >= 0
    after = out_of_fold(KNNClassifier(**model_params), X_train, y_train, folds)
    right_before = oof.predicted_code() == oof.y_code
    right_after = after.predicted_code() == after.y_code
    fixed = int((~right_before & right_after)[kept].sum())
    broken = int((right_before & ~right_after)[kept].sum())
    return {
        "share": share,
        "removed": int(n_removed),
        "removed_label_disagrees": int((label_issues.suspicion(oof)[removed] > 0.5).sum()),
        "cv_accuracy": oof.accuracy(),
        "kept_accuracy_before": float(right_before[kept].mean()),
        "kept_accuracy_after": float(right_after[kept].mean()),
        "fixed": fixed,
        "broken": broken,
        "p_value": mcnemar_exact(fixed, broken),
    }


def shapley_summary(values: np.ndarray, n_test: int, k: int, table: pd.DataFrame) -> dict:
    """The audit's Shapley record: how many rows hurt, and the most harmful ones."""
    return {
        "n_test": int(n_test),
        "n_neighbors": int(k),
        "harmful_rows": int((values < 0).sum()),
        "helpful_rows": int((values > 0).sum()),
        "total": float(values.sum()),
        "most_harmful": [
            {"row": int(r.row), "label": r.label, "value": float(r.value)}
            for r in table.head(MOST_HARMFUL_LISTED).itertuples()
        ],
    }
