"""fetch: the configured dataset -> ``data/raw/dataset.parquet`` and ``data/raw/meta.json``."""

from __future__ import annotations

from knnlab.pipeline.data import datasets
from knnlab.pipeline.io import files, paths
from knnlab.pipeline.io.params import Params


def run(params: Params) -> None:
    dataset = datasets.load(params.data)
    with files.atomic_dir(paths.RAW_DIR) as folder:
        files.write_parquet(folder / paths.RAW_DATASET.name, dataset.frame)
        dataset.info().write(folder / paths.RAW_META.name)
    print(
        f"fetch: {dataset.name}: {len(dataset.frame)} rows, "
        f"{len(dataset.feature_columns)} features -> {paths.RAW_DATASET}"
    )
