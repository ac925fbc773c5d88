"""The configured model, built from params and described for the model file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from knnlab.estimators import KNNClassifier
from knnlab.pipeline.io import files
from knnlab.pipeline.io.artifacts import ModelCard, SplitInfo
from knnlab.pipeline.io.params import ModelParams, ParamsError


def build_model(params: ModelParams, n_train: int) -> KNNClassifier:
    """The configured estimator, checked against the size of the training split."""
    if params.n_neighbors > n_train:
        raise ParamsError(
            f"params.yaml: model.n_neighbors = {params.n_neighbors} is larger than the train "
            f"split ({n_train} rows); expected at most {n_train}"
        )
    return KNNClassifier(
        params.n_neighbors,
        p=params.p,
        weights=params.weights,
        algorithm=params.algorithm,
        scale=params.scale,
        index={k: v for k, v in params.index.items() if v is not None} or None,
        random_state=params.seed,
    )


def write_build_seconds(timings_path, model_path, seconds: float) -> None:
    """Keep the fit (an approximate index's build) seconds beside the model they belong to,
    in the git-ignored timings folder: seconds are no DVC output."""
    record = {"fit_seconds": seconds, "model": files.digest({"model": Path(model_path)})}
    files.write_json(timings_path, record)


def build_seconds(timings_path, model_path) -> float | None:
    """The fit seconds train recorded for the model file now at ``model_path``, or None when
    the record is missing, unreadable or of another model (a train run elsewhere)."""
    try:
        record = files.read_json(timings_path)
        if record.get("model") == files.digest({"model": Path(model_path)}):
            return float(record["fit_seconds"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # no usable record: the build time is simply not logged
    return None


def novelty_threshold(model: KNNClassifier, quantile: float = 0.99) -> float:
    """The ``quantile`` of the training points' mean distance to their k nearest other
    training points: a query farther than this from its neighbours looks unlike the data."""
    if model.n_samples_fit_ <= model.n_neighbors:
        return float("inf")
    distances, _ = model.kneighbors()  # (n_train, k), each point's own index excluded
    return float(np.quantile(distances.mean(axis=1), quantile))


# The test split's distance scale, kept in the model file: its mean neighbour distances at
# every 0.1 percentile (1,001 numbers, 8 kB), so ``knnlab predict`` can say "farther than
# 99.6 % of test rows" without the test split.
SCALE_PERCENTILES = np.linspace(0.0, 100.0, 1001)
# The unusual flag: farther from its neighbours than this share of the test split's rows,
# so it marks 1 % of rows like the test split's (its false alarms, measured and kept).
UNUSUAL_PERCENTILE = 99.0


def distance_scale(model: KNNClassifier, X_test: np.ndarray):
    """How far held-out rows lie from their neighbours, for ``knnlab predict``: the
    percentiles (:data:`SCALE_PERCENTILES`) of the test rows' mean distance to their k
    nearest training rows (X_test: (n_test, d)), the unusual flag's threshold (their
    :data:`UNUSUAL_PERCENTILE`-th percentile) and the share of test rows beyond it (the
    flag's false-alarm rate on them). Without test rows: ([], the training rows' own
    threshold (:func:`novelty_threshold`), nan)."""
    if len(X_test) == 0:
        return [], novelty_threshold(model), float("nan")
    distances, _ = model.kneighbors(X_test)
    mean = distances.mean(axis=1)
    scale = np.percentile(mean, SCALE_PERCENTILES)
    threshold = float(np.percentile(mean, UNUSUAL_PERCENTILE))
    return [float(v) for v in scale], threshold, float(np.mean(mean > threshold))


def value_range(X: np.ndarray) -> list[float]:
    """Smallest and largest feature value of the training rows X (n, d) (images: 0..16 for
    digits, 0..255 for MNIST), so ``knnlab predict`` can bring an image to the same range."""
    return [float(X.min()), float(X.max())]


def model_card(
    split: SplitInfo,
    model: KNNClassifier,
    X_train: np.ndarray,
    X_test: np.ndarray,
    conformal: tuple[float, float, int],
) -> ModelCard:
    """What the model file keeps beside the fitted model (X_train: (n_train, d), the rows
    ``model`` was fitted on; X_test: (n_test, d), the test split, read for the distance
    scale alone: nothing the model predicts depends on it; ``conformal``: the prediction
    sets' coverage, threshold and calibration rows)."""
    scale, threshold, false_alarms = distance_scale(model, X_test)
    return ModelCard(
        dataset=split.name,
        feature_columns=split.feature_columns,
        image_shape=split.image_shape,
        value_range=value_range(X_train),
        novelty_threshold=threshold,
        test_distance_scale=scale,
        false_alarm_rate=false_alarms,
        coverage=conformal[0],
        conformal_threshold=conformal[1],
        calibration_rows=conformal[2],
    )
