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


def value_range(X: np.ndarray) -> list[float]:
    """Smallest and largest feature value of the training rows X (n, d) (images: 0..16 for
    digits, 0..255 for MNIST), so ``knnlab predict`` can bring an image to the same range."""
    return [float(X.min()), float(X.max())]


def model_card(split: SplitInfo, model: KNNClassifier, X_train: np.ndarray) -> ModelCard:
    """What the model file keeps beside the fitted model (X_train: (n_train, d), the rows
    ``model`` was fitted on)."""
    return ModelCard(
        dataset=split.name,
        feature_columns=split.feature_columns,
        image_shape=split.image_shape,
        value_range=value_range(X_train),
        novelty_threshold=novelty_threshold(model),
    )
