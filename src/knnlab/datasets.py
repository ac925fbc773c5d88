"""Datasets as one table: numeric feature columns and a ``label`` column.

Embedded datasets need no network: scikit-learn ships digits and iris, and moons is
generated from a seed. A local CSV or parquet file works too (``data.dataset: file``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import datasets as sk_datasets
from sklearn.model_selection import train_test_split

from knnlab import io, paths
from knnlab.params import FILE_DATASET, OPENML_PREFIX, DataParams

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

    def meta(self) -> dict:
        labels = self.frame[LABEL]
        return {
            "name": self.name,
            "n_samples": len(self.frame),
            "n_features": len(self.feature_columns),
            "n_classes": int(labels.nunique()),
            "feature_columns": self.feature_columns,
            "label_column": LABEL,
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "class_names": self.class_names,
        }


def _from_bunch(name: str, bunch, image_shape=None, class_names=None) -> Dataset:
    frame = pd.DataFrame(bunch.data, columns=list(bunch.feature_names)).astype(np.float64)
    frame[LABEL] = np.asarray(bunch.target)
    return Dataset(name, frame, image_shape, class_names or {})


def load_digits() -> Dataset:
    """scikit-learn's 8x8 digits: 1797 rows, 64 pixel features with values 0..16."""
    return _from_bunch("digits", sk_datasets.load_digits(), image_shape=(8, 8))


def load_iris() -> Dataset:
    """Fisher's iris: 150 rows, 4 measurements in cm, 3 species."""
    bunch = sk_datasets.load_iris()
    names = {str(i): str(n) for i, n in enumerate(bunch.target_names)}
    return _from_bunch("iris", bunch, class_names=names)


def load_moons(n_samples: int, noise: float, seed: int) -> Dataset:
    """Two interleaving half-moons in 2-D, ``make_moons`` with a seed."""
    X, y = sk_datasets.make_moons(n_samples=n_samples, noise=noise, random_state=seed)
    frame = pd.DataFrame(X, columns=["x0", "x1"])
    frame[LABEL] = y
    return Dataset("moons", frame)


def load_table(path: Path | str, label_column: str) -> Dataset:
    """A local CSV or parquet file: ``label_column`` holds labels, every other column must
    be a numeric feature."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data.path = {str(path)!r}: no such file")
    try:
        reader = pd.read_parquet if path.suffix.lower() == ".parquet" else pd.read_csv
        frame = reader(path)
    except (ValueError, OSError, pd.errors.ParserError) as error:
        raise DataError(f"data.path = {str(path)!r}: cannot be read as a table: {error}") from None
    if frame.empty:
        raise DataError(f"data.path = {str(path)!r}: the table has no rows")
    if label_column not in frame.columns:
        raise DataError(
            f"data.label_column = {label_column!r} is not a column of {path}; columns are "
            f"{', '.join(map(str, frame.columns))}"
        )
    labels = frame.pop(label_column)
    non_numeric = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if non_numeric:
        raise DataError(
            f"{path}: feature column {non_numeric[0]!r} is not numeric (dtype "
            f"{frame[non_numeric[0]].dtype}); kNN needs numeric features: encode or drop it"
        )
    frame = frame.astype(np.float64)
    frame.columns = [str(c) for c in frame.columns]
    frame[LABEL] = labels.to_numpy()
    return Dataset(path.stem, frame)


def validate(dataset: Dataset) -> Dataset:
    """Check what every stage relies on: finite features, labels present, >= 2 classes."""
    features = dataset.frame[dataset.feature_columns].to_numpy()
    if not dataset.feature_columns:
        raise DataError(f"dataset {dataset.name!r} has no feature columns")
    bad = ~np.isfinite(features)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataError(
            f"dataset {dataset.name!r}: feature {dataset.feature_columns[col]!r} is "
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


def openml_cache_path(name: str) -> Path:
    """Where the fetch stage keeps an OpenML dataset once downloaded (one parquet table:
    feature columns and a ``label`` column)."""
    return paths.DOWNLOAD_CACHE / "openml" / f"{name}.parquet"


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
        try:
            frame = pd.read_parquet(cache)
        except (ValueError, OSError) as error:
            raise DataError(f"{cache}: cannot be read as parquet ({error}); delete it") from None
        if LABEL not in frame.columns:
            raise DataError(f"{cache}: needs a {LABEL!r} column with the labels")
        return Dataset(name, frame, _IMAGE_SHAPES.get(name))
    fetch = fetch or sk_datasets.fetch_openml
    try:
        bunch = fetch(name, as_frame=True, n_retries=1, delay=0.5, parser="auto")
    except (OSError, ValueError) as error:  # URLError is an OSError
        raise DataError(
            f"data.dataset = {name!r}: could not download it from OpenML ({error}). Put the "
            f"data at {cache} (a parquet table of numeric feature columns and a {LABEL!r} "
            "column), or choose an embedded dataset: data.dataset: digits"
        ) from None
    frame = bunch.data.astype(np.float64)
    frame.columns = [str(c) for c in frame.columns]
    frame[LABEL] = _plain_labels(bunch.target)
    cache.parent.mkdir(parents=True, exist_ok=True)
    io.write_parquet(cache, frame)
    return Dataset(name, frame, _IMAGE_SHAPES.get(name))


def _plain_labels(target: pd.Series) -> np.ndarray:
    """OpenML targets come as categories of strings ('0'..'9' for MNIST): integers when every
    label is one, text otherwise."""
    as_text = target.astype(str)
    numbers = pd.to_numeric(as_text, errors="coerce")
    if numbers.notna().all() and (numbers == numbers.round()).all():
        return numbers.astype(np.int64).to_numpy()
    return as_text.to_numpy()


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
            f"are {', '.join(dataset.feature_columns)}"
        )
    frame = dataset.frame[[*features, LABEL]]
    # A subset of pixels is no longer an image.
    return Dataset(dataset.name, frame, None, dataset.class_names)


def load(params: DataParams) -> Dataset:
    """The dataset ``params`` names, validated."""
    if params.dataset == "digits":
        dataset = load_digits()
    elif params.dataset == "iris":
        dataset = load_iris()
    elif params.dataset == "moons":
        m = params.moons
        dataset = load_moons(m.n_samples, m.noise, m.seed)
    elif params.dataset == FILE_DATASET:
        dataset = load_table(params.path, params.label_column)
    else:
        dataset = load_openml(params.dataset.removeprefix(OPENML_PREFIX))
    dataset = sample_rows(select_features(dataset, params.features), params.max_rows, params.seed)
    return validate(dataset)


def features_and_labels(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """X of shape (n_samples, n_features) float64 and y of shape (n_samples,)."""
    return frame.drop(columns=[LABEL]).to_numpy(dtype=np.float64), frame[LABEL].to_numpy()
