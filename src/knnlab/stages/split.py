"""split: ``data/raw`` -> stratified, seeded ``data/split/{train,test}.parquet``, and
``data/split/leaks.json``: the test rows with an exact or near duplicate among the training
rows (:mod:`knnlab.duplicates`), moved to the training side with ``split.deduplicate``."""

from __future__ import annotations

import numpy as np

from knnlab.pipeline.data.dataset import LABEL
from knnlab.pipeline.data.datasets import positive_class, stratified_split
from knnlab.pipeline.data.leaks import find_leaks
from knnlab.pipeline.io import files, paths
from knnlab.pipeline.io.artifacts import DatasetInfo, SplitInfo
from knnlab.pipeline.io.params import Params


def run(params: Params) -> None:
    frame = files.read_parquet(paths.RAW_DATASET)
    dataset = DatasetInfo.read(paths.RAW_META)
    # Checked here, before any stage logs to MLflow, though only plot uses it.
    positive_class(params.data.positive_class, np.unique(frame[LABEL].to_numpy()))
    train, test = stratified_split(frame, params.split)
    del frame  # the two parts are copies: keep one set of rows while writing them
    train, test, leaks = find_leaks(train, test, params.split)
    split = SplitInfo.of(dataset, params.split.test_size, params.split.seed, len(train), len(test))
    with files.atomic_dir(paths.SPLIT_DIR) as folder:
        files.write_parquet(folder / paths.TRAIN_SPLIT.name, train)
        files.write_parquet(folder / paths.TEST_SPLIT.name, test)
        split.write(folder / paths.SPLIT_META.name)
        files.write_json(folder / paths.SPLIT_LEAKS.name, leaks)
    print(f"split: {len(train)} train / {len(test)} test rows (seed {params.split.seed})")
    moved = f", moved to train: {leaks['moved_to_train']}" if params.split.deduplicate else ""
    print(
        f"split: test rows duplicating a training row: {leaks['exact_duplicates']} exact, "
        f"{leaks['near_duplicates']} near (distance <= "
        f"{leaks['near_duplicate_threshold']:.4g}){moved}"
    )
