"""train: fit the configured model on the train split -> ``models/model.npz`` (no pickle)."""

from __future__ import annotations

from knnlab import io, paths
from knnlab.datasets import features_and_labels
from knnlab.estimators import KNNClassifier
from knnlab.model_io import save_model
from knnlab.params import ModelParams, Params, ParamsError


def build_model(params: ModelParams, n_train: int) -> KNNClassifier:
    """The configured estimator, checked against the size of the training split."""
    if params.n_neighbors > n_train:
        raise ParamsError(
            f"params.yaml: model.n_neighbors = {params.n_neighbors} is larger than the train "
            f"split ({n_train} rows); expected at most {n_train}"
        )
    return KNNClassifier(
        params.n_neighbors, p=params.p, weights=params.weights, algorithm=params.algorithm
    )


def run(params: Params) -> None:
    train = io.read_parquet(paths.TRAIN_SPLIT)
    meta = io.read_json(paths.SPLIT_META)
    X, y = features_and_labels(train)
    model = build_model(params.model, len(X)).fit(X, y)
    save_model(
        paths.MODEL_FILE,
        model,
        extra={
            "dataset": meta["name"],
            "feature_columns": meta["feature_columns"],
            "image_shape": meta["image_shape"],
        },
    )
    print(f"train: {model!r} ({model.algorithm_}) on {len(X)} rows -> {paths.MODEL_FILE}")
