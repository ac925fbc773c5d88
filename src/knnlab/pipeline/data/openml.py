"""Any OpenML dataset by name (``data.dataset: openml:<name>``), downloaded once with
scikit-learn's ``fetch_openml`` into ``data/cache/openml/`` and read from there after."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from sklearn import datasets as sk_datasets

from knnlab.pipeline.data.dataset import LABEL, DataError, Dataset, open_regular_file
from knnlab.pipeline.data.tables import assemble, read_parquet
from knnlab.pipeline.io import files, paths
from knnlab.pipeline.io.formats import one_line


class OpenMLDownloadError(DataError):
    """OpenML could not be reached or refused the name, and nothing was cached. ``reason``
    is the download's own error, for a caller that had other places to look first."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def openml_cache_path(name: str) -> Path:
    """Where the fetch stage keeps an OpenML dataset once downloaded (one parquet table:
    feature columns and a ``label`` column). Always a file directly in the cache folder."""
    folder = paths.DOWNLOAD_CACHE / "openml"
    # params.py refuses such names; this guards every other caller: the file must sit
    # directly in the cache folder, whatever "..", separators or a leading "." say.
    resolved = Path(os.path.normpath(folder.resolve() / f"{name}.parquet"))
    if not name or name.startswith(".") or resolved.parent != folder.resolve():
        raise DataError(
            f"OpenML dataset name {name!r} would leave the cache folder {folder}; OpenML "
            "names are letters, digits, _, -, . and ( )"
        )
    return folder / f"{name}.parquet"


# MNIST-like OpenML datasets whose rows are square images.
_IMAGE_SHAPES = {"mnist_784": (28, 28), "Fashion-MNIST": (28, 28)}


def load_openml(name: str, fetch=None) -> Dataset:
    """An OpenML dataset by name, from the local cache if present, else downloaded once with
    scikit-learn's ``fetch_openml`` and cached. Offline with no cache it fails within
    seconds, saying where to put the file.

    fetch : the download function (``sklearn.datasets.fetch_openml`` by default).
    """
    cache = openml_cache_path(name)
    if cache.is_file():
        with open_regular_file(cache, str(cache)) as handle:
            try:
                frame = read_parquet(handle, str(cache))
            except DataError:
                raise
            except (ValueError, OSError) as error:
                raise DataError(
                    f"{cache}: cannot be read as parquet ({one_line(error)}); delete it"
                ) from None
        frame.columns = [str(c) for c in frame.columns]
        if LABEL not in frame.columns:
            raise DataError(f"{cache}: needs a {LABEL!r} column with the labels")
        labels = frame.pop(LABEL)
        return assemble(name, frame, labels, str(cache), _IMAGE_SHAPES.get(name))
    fetch = fetch or sk_datasets.fetch_openml
    try:
        bunch = fetch(name, as_frame=True, n_retries=1, delay=0.5, parser="auto")
    except (OSError, ValueError) as error:  # URLError is an OSError
        raise OpenMLDownloadError(
            f"data.dataset = {name!r}: could not download it from OpenML ({error}). Put the "
            f"data at {cache} (a parquet table of numeric feature columns and a {LABEL!r} "
            "column), or choose an embedded dataset: data.dataset: digits",
            reason=one_line(error),
        ) from None
    where = f"OpenML dataset {name!r}"
    if not isinstance(bunch.target, pd.Series):
        raise DataError(
            f"{where} has {0 if bunch.target is None else bunch.target.shape[1]} target "
            "columns; knnlab classifies one: save it as a file and use data.dataset: file"
        )
    dataset = assemble(name, bunch.data, bunch.target, where, _IMAGE_SHAPES.get(name))
    cache.parent.mkdir(parents=True, exist_ok=True)
    files.write_parquet(cache, dataset.frame)
    return dataset
