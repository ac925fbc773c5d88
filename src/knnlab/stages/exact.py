"""exact: the exact Euclidean neighbours of every test row among the train split, at
the grid's largest k -> ``data/neighbours/test_exact.npz``:
what evaluate measures an approximate model against (cached by DVC, so a sweep over
``model.index`` options computes it once)."""

from __future__ import annotations

from knnlab.pipeline.analysis import reference
from knnlab.pipeline.data.dataset import read_features_and_labels
from knnlab.pipeline.io import paths
from knnlab.pipeline.io.params import Params


def run(params: Params) -> None:
    X_train, _ = read_features_and_labels(paths.TRAIN_SPLIT)
    X_test, _ = read_features_and_labels(paths.TEST_SPLIT)
    k = reference.reference_k(params.tune.grid.n_neighbors, len(X_train))
    distances, indices = reference.exact_test_neighbours(X_train, X_test, k, params.model.scale)
    reference.write(paths.EXACT_NEIGHBOURS, distances, indices)
    print(f"exact: the exact {k} nearest of {len(X_test)} test rows -> {paths.EXACT_NEIGHBOURS}")
