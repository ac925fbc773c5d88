"""The dataset record every source returns (a table of numeric features and a ``label``
column), the checks every stage relies on, and the steps common to all sources."""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from knnlab.pipeline.io.artifacts import DatasetInfo
from knnlab.pipeline.io.files import release_arrow_memory
from knnlab.pipeline.io.formats import excerpt, excerpt_list

LABEL = "label"


class DataError(ValueError):
    """The data cannot be used: missing column, non-numeric features, NaN, too few rows."""


@dataclass(frozen=True)
class Dataset:
    """A table of features and labels, plus what a report needs to describe it.

    frame : DataFrame of shape (n_samples, n_features + 1), features then ``label``.
    image_shape : (height, width) when each row is an image, else None.
    class_names : display name of each label, in sorted label order, when the labels are
        codes for names (iris: 0 -> setosa).
    """

    name: str
    frame: pd.DataFrame
    image_shape: tuple[int, int] | None = None
    class_names: dict[str, str] = field(default_factory=dict)

    @property
    def feature_columns(self) -> list[str]:
        return [c for c in self.frame.columns if c != LABEL]

    def info(self) -> DatasetInfo:
        return DatasetInfo(
            name=self.name,
            n_samples=len(self.frame),
            n_features=len(self.feature_columns),
            n_classes=int(self.frame[LABEL].nunique()),
            feature_columns=list(self.feature_columns),
            label_column=LABEL,
            image_shape=list(self.image_shape) if self.image_shape else None,
            class_names=dict(self.class_names),
        )


@contextlib.contextmanager
def open_regular_file(
    path: Path, where: str, expected: str = "a .csv or .parquet file"
) -> Iterator[BinaryIO]:
    """``path`` opened for reading, once it is known to be a regular file (symlinks are
    followed: the file is the user's choice, and it is only read). A fifo must not block
    the stage, so the file is opened without blocking and checked before any read.
    ``expected`` says what the file should be, in the message for a folder or a device."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise DataError(f"{where}: no such file") from None
    except PermissionError:
        raise DataError(f"{where}: permission denied; make the file readable") from None
    except OSError as error:
        raise DataError(f"{where}: cannot be opened ({error.strerror})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a pipe, socket or device)"
        raise DataError(f"{where}: is {kind}; expected {expected}")
    with contextlib.suppress(AttributeError, OSError):
        os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as handle:
        yield handle


def validate(dataset: Dataset) -> Dataset:
    """Check what every stage relies on: finite features, labels present, >= 2 classes."""
    features = dataset.frame[dataset.feature_columns].to_numpy()
    if not dataset.feature_columns:
        raise DataError(f"dataset {dataset.name!r} has no feature columns")
    bad = ~np.isfinite(features)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(
            f"dataset {dataset.name!r}: feature {excerpt(dataset.feature_columns[col])} is "
            f"{features[row, col]} in row {row}; features must be finite (drop or impute it)"
        )
    labels = dataset.frame[LABEL]
    if labels.isna().any():
        row = int(labels.isna().to_numpy().argmax())
        raise DataError(f"dataset {dataset.name!r}: the label is missing in row {row}")
    if labels.nunique() < 2:
        raise DataError(
            f"dataset {dataset.name!r}: needs at least 2 classes, found {labels.nunique()}"
        )
    return dataset


def sample_rows(dataset: Dataset, max_rows: int | None, seed: int) -> Dataset:
    """A stratified sample of ``max_rows`` rows (every class keeps its share), or all rows."""
    if max_rows is None or max_rows >= len(dataset.frame):
        return dataset
    labels = dataset.frame[LABEL]
    if max_rows < labels.nunique():
        raise DataError(
            f"data.max_rows = {max_rows} is fewer than the {labels.nunique()} classes; a "
            "stratified sample needs at least one row per class"
        )
    kept, _ = train_test_split(
        dataset.frame, train_size=max_rows, random_state=seed, stratify=labels
    )
    return Dataset(
        dataset.name, kept.reset_index(drop=True), dataset.image_shape, dataset.class_names
    )


def select_features(dataset: Dataset, features: tuple[str, ...] | None) -> Dataset:
    """Keep only ``features`` (in that order), or every feature when None."""
    if features is None:
        return dataset
    missing = [f for f in features if f not in dataset.feature_columns]
    if missing:
        raise DataError(
            f"data.features: {missing[0]!r} is not a feature of {dataset.name!r}; its features "
            f"are {excerpt_list(dataset.feature_columns)}"
        )
    frame = dataset.frame[[*features, LABEL]]
    # A subset of pixels is no longer an image.
    return Dataset(dataset.name, frame, None, dataset.class_names)


def features_and_labels(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """X of shape (n_samples, n_features) float64 and y of shape (n_samples,)."""
    return frame.drop(columns=[LABEL]).to_numpy(dtype=np.float64), frame[LABEL].to_numpy()


def read_features_and_labels(path: Path | str) -> tuple[np.ndarray, np.ndarray]:
    """:func:`features_and_labels` of a split's Parquet table, the same arrays, read column
    by column into X (n_samples, n_features) float64: the table, a frame of it and the
    frame's copy without the label would each be as large as X (on Fashion-MNIST 376 MB),
    and Arrow's memory pool keeps what it once held unless told to give it back."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    names = [name for name in table.column_names if name != LABEL]
    X = np.empty((table.num_rows, len(names)))
    for j, name in enumerate(names):
        X[:, j] = table.column(name).to_numpy()
    y = features_and_labels(table.select([LABEL]).to_pandas())[1]
    del table
    release_arrow_memory()
    return X, y
