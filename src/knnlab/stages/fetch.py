"""fetch: the configured dataset -> ``data/raw/dataset.parquet`` and ``data/raw/meta.json``."""

from __future__ import annotations

from knnlab import datasets, io, paths
from knnlab.params import Params


def run(params: Params) -> None:
    dataset = datasets.load(params.data)
    io.write_parquet(paths.RAW_DATASET, dataset.frame)
    io.write_json(paths.RAW_META, dataset.meta())
    print(
        f"fetch: {dataset.name}: {len(dataset.frame)} rows, "
        f"{len(dataset.feature_columns)} features -> {paths.RAW_DATASET}"
    )
