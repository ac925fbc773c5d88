"""split: ``data/raw`` -> stratified, seeded ``data/split/{train,test}.parquet``."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from knnlab.pipeline import files, paths
from knnlab.pipeline.datasets import LABEL, DataError, positive_class
from knnlab.pipeline.params import Params, SplitParams


def stratified_split(frame: pd.DataFrame, params: SplitParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows so each class keeps its share in both parts; same seed, same split."""
    counts = frame[LABEL].value_counts()
    if counts.min() < 2:
        raise DataError(
            f"class {counts.idxmin()!r} has {counts.min()} sample(s); a stratified split needs "
            "at least 2 per class: remove the class or add samples"
        )
    n_test = int(np.ceil(params.test_size * len(frame)))
    if n_test < counts.size or len(frame) - n_test < counts.size:
        raise DataError(
            f"split.test_size = {params.test_size} gives {n_test} test and "
            f"{len(frame) - n_test} train rows for {counts.size} classes; each part needs at "
            "least one row per class: change split.test_size"
        )
    train, test = train_test_split(
        frame, test_size=params.test_size, random_state=params.seed, stratify=frame[LABEL]
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)


def run(params: Params) -> None:
    frame = files.read_parquet(paths.RAW_DATASET)
    meta = files.read_json(paths.RAW_META)
    # Checked here, before any stage logs to MLflow, though only plot uses it.
    positive_class(params.data.positive_class, np.unique(frame[LABEL].to_numpy()))
    train, test = stratified_split(frame, params.split)
    with files.atomic_dir(paths.SPLIT_DIR) as folder:
        files.write_parquet(folder / paths.TRAIN_SPLIT.name, train)
        files.write_parquet(folder / paths.TEST_SPLIT.name, test)
        files.write_json(
            folder / paths.SPLIT_META.name,
            {
                **meta,
                "test_size": params.split.test_size,
                "seed": params.split.seed,
                "n_train": len(train),
                "n_test": len(test),
            },
        )
    print(f"split: {len(train)} train / {len(test)} test rows (seed {params.split.seed})")
