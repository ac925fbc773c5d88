"""fetch: the configured dataset -> ``data/raw/dataset.parquet`` and ``data/raw/meta.json``."""

from __future__ import annotations

from knnlab import datasets, io, paths
from knnlab.params import Params


def run(params: Params) -> None:
    dataset = datasets.load(params.data)
    with io.atomic_dir(paths.RAW_DIR) as folder:
        io.write_parquet(folder / paths.RAW_DATASET.name, dataset.frame)
        io.write_json(folder / paths.RAW_META.name, dataset.meta())
    print(
        f"fetch: {dataset.name}: {len(dataset.frame)} rows, "
        f"{len(dataset.feature_columns)} features -> {paths.RAW_DATASET}"
    )
