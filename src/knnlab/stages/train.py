"""train: fit the configured model on the train split -> ``models/model.npz`` (no pickle)."""

from __future__ import annotations

import numpy as np

from knnlab.estimators import KNNClassifier
from knnlab.pipeline import files, paths
from knnlab.pipeline.datasets import features_and_labels
from knnlab.pipeline.model_io import save_model
from knnlab.pipeline.params import ModelParams, Params, ParamsError


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
    )


def novelty_threshold(model: KNNClassifier, quantile: float = 0.99) -> float:
    """The ``quantile`` of the training points' mean distance to their k nearest other
    training points: a query farther than this from its neighbours looks unlike the data."""
    if model.n_samples_fit_ <= model.n_neighbors:
        return float("inf")
    distances, _ = model.kneighbors()  # (n_train, k), each point's own index excluded
    return float(np.quantile(distances.mean(axis=1), quantile))


def value_range(X: np.ndarray) -> list[float]:
    """Smallest and largest feature value of the training rows (images: 0..16 for digits,
    0..255 for MNIST), so ``knnlab predict`` can bring an input image to the same range."""
    return [float(X.min()), float(X.max())]


def run(params: Params) -> None:
    train = files.read_parquet(paths.TRAIN_SPLIT)
    meta = files.read_json(paths.SPLIT_META)
    X, y = features_and_labels(train)
    model = build_model(params.model, len(X)).fit(X, y)
    save_model(
        paths.MODEL_FILE,
        model,
        extra={
            "dataset": meta["name"],
            "feature_columns": meta["feature_columns"],
            "image_shape": meta["image_shape"],
            "value_range": value_range(X),
            "novelty_threshold": novelty_threshold(model),
        },
    )
    print(f"train: {model!r} ({model.algorithm_}) on {len(X)} rows -> {paths.MODEL_FILE}")
