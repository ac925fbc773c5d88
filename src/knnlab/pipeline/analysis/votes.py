"""The configured model's out-of-fold votes on the train split: computed by train (they
calibrate the model's prediction sets) and kept as ``models/out_of_fold.parquet`` for the
audit stage and plot (suspicious labels)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from knnlab import label_issues
from knnlab.estimators import KNNClassifier
from knnlab.out_of_fold import N_FOLDS, OutOfFold, fold_ids, out_of_fold
from knnlab.pipeline.analysis.explain import Explanation
from knnlab.pipeline.io.params import ParamsError

# Suspicious training rows drawn with their neighbours (plot).
SUSPICIOUS_DRAWN = 6


def out_of_fold_votes(model_params: dict, X_train: np.ndarray, y_train: np.ndarray) -> OutOfFold:
    """The configured model's (``model_params``: its constructor arguments) out-of-fold
    votes on the train split (X_train: (n, d), y_train: (n,)). A k larger than the rows one
    fold model fits on is refused, naming the key."""
    n = len(y_train)
    if n < N_FOLDS:
        raise ParamsError(
            f"the train split has {n} rows; the out-of-fold votes that calibrate the "
            f"prediction sets need at least {N_FOLDS} (one per fold): use more data or a "
            "smaller split.test_size"
        )
    folds = fold_ids(y_train)
    fitted_on = n - int(np.bincount(folds).max())
    k = model_params.get("n_neighbors", 5)
    if k > fitted_on:
        raise ParamsError(
            f"params.yaml: model.n_neighbors = {k} is larger than the {fitted_on} training "
            f"rows each out-of-fold model fits on ({N_FOLDS - 1} of {N_FOLDS} folds of the "
            f"train split's {n}: they calibrate the prediction sets); expected at most "
            f"{fitted_on}"
        )
    return out_of_fold(KNNClassifier(**model_params), X_train, y_train, folds)


def votes_table(oof: OutOfFold) -> pd.DataFrame:
    """One row per training row: ``fold``, ``vote_<class code>`` (n_classes columns),
    ``neighbor_<j>`` and ``distance_<j>`` (k each)."""
    columns = {"fold": oof.folds}
    columns |= {f"vote_{c}": oof.proba[:, c] for c in range(oof.proba.shape[1])}
    columns |= {f"neighbor_{j}": oof.neighbors[:, j] for j in range(oof.neighbors.shape[1])}
    columns |= {f"distance_{j}": oof.distances[:, j] for j in range(oof.distances.shape[1])}
    return pd.DataFrame(columns)


def read_votes_table(table: pd.DataFrame, y_train: np.ndarray) -> OutOfFold:
    """The inverse of :func:`votes_table`, for the labels ``y_train`` (n,) it was made of;
    a table of another length is refused."""
    if len(table) != len(y_train):
        raise ValueError(
            f"the out-of-fold votes hold {len(table)} rows, the train split {len(y_train)}; "
            "re-run `dvc repro train`"
        )
    classes, y_code = np.unique(y_train, return_inverse=True)

    def block(prefix: str) -> np.ndarray:
        names = [c for c in table.columns if c.startswith(prefix)]
        return table[sorted(names, key=lambda c: int(c.removeprefix(prefix)))].to_numpy()

    return OutOfFold(
        proba=block("vote_").astype(np.float64),
        neighbors=block("neighbor_").astype(np.int64),
        distances=block("distance_").astype(np.float64),
        folds=table["fold"].to_numpy(dtype=np.int64),
        classes=classes,
        y_code=y_code.astype(np.int64),
    )


def explain_suspicious(votes: OutOfFold, y_train: np.ndarray, limit: int = SUSPICIOUS_DRAWN):
    """The most suspicious training rows (at most ``limit``, only rows with some vote against
    their label) as an :class:`~knnlab.pipeline.analysis.explain.Explanation`: ``y_true``
    the given label, ``y_pred`` the class the out-of-fold neighbours favour most among the
    others, ``confidence`` its vote, and the neighbours that voted."""
    order = label_issues.most_suspicious(votes)
    against = label_issues.suspicion(votes)[order] > 0
    rows = order[against][:limit]
    suggested_code = label_issues.suggested_code(votes)[rows]
    suggested = votes.classes[suggested_code]
    neighbor_label = y_train[votes.neighbors[rows]]
    return Explanation(
        rows=rows,
        y_true=y_train[rows],
        y_pred=suggested,
        confidence=votes.proba[rows, suggested_code],
        neighbor_index=votes.neighbors[rows],
        neighbor_label=neighbor_label,
        neighbor_distance=votes.distances[rows],
        predicted_votes=(neighbor_label == suggested[:, None]).sum(axis=1),
    )
