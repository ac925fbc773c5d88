"""Datasets as one table: numeric feature columns and a ``label`` column.

Embedded datasets need no network: scikit-learn ships digits and iris, and moons is
generated from a seed. A local CSV or parquet file works too (``data.dataset: file``), and
so does any OpenML dataset, downloaded once into ``data/cache/openml/``.

Files and downloads are checked and normalised here, at fetch, so that no later stage
(which writes labels to CSV and JSON and reads them back) meets a surprise:

* Columns: every name is non-empty and unique (checked in the raw CSV header, which pandas
  would otherwise rename ``a``, ``a.1``, and in the parquet schema); no feature may be
  called ``label``, the name the pipeline keeps for the labels.
* Features: numbers (booleans count, as 0 and 1), one per cell; text, lists, dates and
  complex numbers are refused. Features are stored as float64.
* Labels, the canonical rule: each distinct label is written as text (numbers and
  booleans as ``str()`` gives them, text stripped of surrounding spaces) and read back as
  ``pandas.read_csv`` would read it, which is how the later stages see it. The read-back
  values are the labels, and they must be all of one kind:

  - all whole numbers -> int64 (``1``, ``1.0`` and the text ``"1"`` become ``1``);
  - all booleans -> int64, ``False`` -> 0 and ``True`` -> 1 (``"true"`` counts);
  - all text that reads back as itself -> str.

  Refused, with the row and the value: a missing label (also text that reads back as
  missing, such as ``"NA"``), a number that is not whole (``0.5``: classification needs
  class labels), a list or other non-scalar, a mix of kinds (``"a"`` and ``1``), and two
  different labels that read back as one (``"1"`` and ``"01"``, ``"a"`` and ``"a "``,
  ``1`` and ``"1"``, ``"True"`` and ``"true"``).
"""

from __future__ import annotations

import contextlib
import csv
import io as text_io
import numbers
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
from sklearn import datasets as sk_datasets
from sklearn.model_selection import train_test_split

from knnlab.pipeline import files, paths
from knnlab.pipeline.artifacts import DatasetInfo
from knnlab.pipeline.params import (
    FILE_DATASET,
    OPENML_PREFIX,
    DataParams,
    ParamsError,
    SplitParams,
)

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


@contextlib.contextmanager
def _open_regular_file(path: Path, where: str) -> Iterator[BinaryIO]:
    """``path`` opened for reading, once it is known to be a regular file (symlinks are
    followed: the file is the user's choice, and it is only read). A fifo must not block
    the stage, so the file is opened without blocking and checked before any read."""
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
        raise DataError(f"{where}: is {kind}; expected a .csv or .parquet file")
    with contextlib.suppress(AttributeError, OSError):
        os.set_blocking(fd, True)
    with os.fdopen(fd, "rb") as handle:
        yield handle


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _check_names(names: list, where: str) -> None:
    """Column names as the file holds them: none empty, none repeated."""
    for position, name in enumerate(names):
        if not str(name).strip():
            raise DataError(
                f"{where}: column {position + 1} has no name; name it (if it is a saved row "
                "index, write the file without it, e.g. to_csv(index=False))"
            )
    seen: set[str] = set()
    for name in map(str, names):
        if name in seen:
            raise DataError(
                f"{where}: column {name!r} appears more than once; column names must be "
                "unique: rename or drop the copies"
            )
        seen.add(name)


def _read_csv(handle: BinaryIO, label_column: str, where: str) -> pd.DataFrame:
    # The raw header, before pandas renames a repeated "a" to "a.1".
    header = pd.read_csv(handle, header=None, nrows=1, dtype=str, keep_default_na=False)
    _check_names(header.iloc[0].tolist(), where)
    handle.seek(0)
    # Labels as text: read_csv would turn "01" and "1" both into 1; the label rule decides.
    frame = pd.read_csv(handle, dtype={label_column: str})
    if not frame.index.equals(pd.RangeIndex(len(frame))):
        raise DataError(
            f"{where}: rows have more fields than the header has names ({len(frame.columns)}); "
            "give every column a name"
        )
    return frame


def _read_parquet(handle: BinaryIO, where: str) -> pd.DataFrame:
    import pyarrow.parquet as pq

    # pandas cannot read a parquet file with a repeated column name; say which one.
    _check_names(pq.read_schema(handle).names, where)
    handle.seek(0)
    return pd.read_parquet(handle)


def load_table(path: Path | str, label_column: str) -> Dataset:
    """A local CSV or parquet file: ``label_column`` holds labels, every other column must
    be a numeric feature (see the module docstring for what is checked)."""
    path = Path(path)
    where = f"data.path = {str(path)!r}"
    with _open_regular_file(path, where) as handle:
        try:
            if path.suffix.lower() == ".parquet":
                frame = _read_parquet(handle, where)
            else:
                frame = _read_csv(handle, label_column, where)
        except DataError:
            raise
        except (ValueError, OSError, pd.errors.ParserError) as error:
            raise DataError(f"{where}: cannot be read as a table: {_one_line(error)}") from None
    if frame.empty:
        raise DataError(f"{where}: the table has no rows")
    frame.columns = [str(c) for c in frame.columns]
    if label_column not in frame.columns:
        raise DataError(
            f"data.label_column = {label_column!r} is not a column of {path}; columns are "
            f"{', '.join(frame.columns)}"
        )
    labels = frame.pop(label_column)
    return _assemble(path.stem, frame, labels, where)


def _assemble(
    name: str, features: pd.DataFrame, labels: pd.Series, where: str, image_shape=None
) -> Dataset:
    """Features (n_samples, n_features) and labels (n_samples,) from a file or a download,
    checked and normalised into a :class:`Dataset`."""
    columns = [str(c) for c in features.columns]
    _check_names(columns, where)
    if LABEL in columns:
        raise DataError(
            f"{where}: has a feature column named {LABEL!r}, the name knnlab keeps for the "
            f"labels; rename that column (or make it the label column: data.label_column: "
            f"{LABEL})"
        )
    values = {
        text: _feature_values(features[column], text, where)
        for text, column in zip(columns, features.columns, strict=True)
    }
    frame = pd.DataFrame(values, columns=columns, index=pd.RangeIndex(len(features)))
    frame[LABEL] = canonical_labels(labels, where)
    return Dataset(name, frame, image_shape)


def _feature_values(column: pd.Series, name: str, where: str) -> np.ndarray:
    """One feature as float64 (n_samples,); booleans become 0 and 1, missing values NaN
    (refused later by :func:`validate`, with the row)."""
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype) and dtype.categories.dtype.kind in "biuf":
        column = column.astype(dtype.categories.dtype)  # numbers stored as categories
        dtype = column.dtype
    if dtype.kind in "biuf":
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    if dtype.kind == "O":
        for row, value in enumerate(column):
            if isinstance(value, list | tuple | np.ndarray | dict | set):
                raise DataError(
                    f"{where}: feature column {name!r} holds {_kind(value)}s ({_short(value)} "
                    f"in row {row}); kNN needs one number per cell: expand it into columns or "
                    "drop it"
                )
    raise DataError(
        f"{where}: feature column {name!r} is not numeric (dtype {dtype}); kNN needs numeric "
        "features: encode or drop it"
    )


# --- labels -----------------------------------------------------------------------------------


def _is_missing(value) -> bool:
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, float | np.floating) and np.isnan(value))
    )


def _kind(value) -> str:
    """A value's type for a message: parquet gives list cells as arrays."""
    return "list" if isinstance(value, list | tuple | np.ndarray) else type(value).__name__


def _short(value) -> str:
    text = repr(value.tolist() if isinstance(value, np.ndarray) else value)
    return text if len(text) <= 40 else text[:37] + "..."


def _label_kind(value) -> str | None:
    """What makes two labels different in the user's data besides their value: ``1`` and
    ``1.0`` are one number, but ``1``, ``True`` and ``"1"`` are three labels. None: not a
    label at all (a list, a date, ...)."""
    if isinstance(value, bool | np.bool_):
        return "bool"
    if isinstance(value, numbers.Real):
        return "number"
    if isinstance(value, str):
        return "text"
    return None


def _not_a_label(value, row: int, where: str) -> DataError:
    return DataError(
        f"{where}: label {_short(value)} in row {row} is a {_kind(value)}; labels must be "
        "whole numbers, text or true/false, one per row"
    )


def _distinct_labels(labels: pd.Series, where: str) -> tuple[np.ndarray, list]:
    """codes of shape (n_samples,) into the list of distinct labels, as the user's data
    tells them apart (see :func:`_label_kind`). Refuses a label that is not a scalar."""
    if isinstance(labels.dtype, pd.CategoricalDtype):
        categories = pd.Series(labels.cat.categories.to_numpy(dtype=object), dtype=object)
        inner, distinct = _distinct_labels(categories, where)
        return inner[labels.cat.codes.to_numpy()], distinct
    if labels.dtype != object:  # one kind throughout: numbers, booleans, text or dates
        codes, uniques = pd.factorize(labels)
        if _label_kind(uniques[0]) is None:
            raise _not_a_label(uniques[0], 0, where)  # uniques come in order of appearance
        return codes, list(uniques)
    values = labels.to_numpy()
    kinds = np.array([_label_kind(v) for v in values], dtype=object)
    codes = np.empty(len(values), dtype=np.intp)
    distinct: list = []
    for kind in pd.unique(kinds):
        rows = np.flatnonzero(kinds == kind)
        if kind is None:
            raise _not_a_label(values[rows[0]], int(rows[0]), where)
        group_codes, uniques = pd.factorize(values[rows])
        codes[rows] = group_codes + len(distinct)
        distinct.extend(uniques)
    return codes, distinct


def _read_back(texts: list[str]) -> list:
    """Each text as ``pandas.read_csv`` reads it alone in a column: what a later stage sees
    when it reads a label back from a CSV file (one value per column, one row)."""
    written = text_io.StringIO()
    writer = csv.writer(written, lineterminator="\n")  # what DataFrame.to_csv writes
    writer.writerow(range(len(texts)))
    writer.writerow(texts)
    written.seek(0)
    return pd.read_csv(written).iloc[0].tolist()


def _canonical_label(value, text: str, back, shown: str, where: str) -> tuple[str, int | str]:
    """(kind, label) for one distinct label: ``text`` is how it is written, ``back`` how
    read_csv reads that text; ``shown`` names it in messages."""
    if _is_missing(back):
        raise DataError(
            f"{where}: {shown} reads back from a CSV file as missing (pandas takes "
            f"{text!r} for NA); rename that class"
        )
    if isinstance(back, bool | np.bool_):
        return ("true/false", int(back))
    if isinstance(back, numbers.Real):
        if isinstance(back, float | np.floating) and not float(back).is_integer():
            raise DataError(
                f"{where}: {shown} is not a whole number; classification needs class labels "
                "(bin a measured quantity into classes first)"
            )
        number = int(back)
        if not -(2**63) <= number < 2**63:
            raise DataError(f"{where}: {shown} is too large for a 64-bit integer label")
        return ("a number", number)
    if back != text:
        raise DataError(
            f"{where}: {shown} reads back from a CSV file as {back!r}, not as itself; rename "
            "that class"
        )
    if text.lstrip("-").isdigit():
        raise DataError(
            f"{where}: {shown} looks like a whole number but does not read back as one (too "
            "large, or not ASCII digits); rename that class"
        )
    return ("text", text)


def canonical_labels(labels: pd.Series, where: str) -> np.ndarray:
    """Labels (n_samples,) in their canonical form: int64, or str (the rule is in the module
    docstring). Refuses, naming the row and the value, what would not come back unchanged
    and distinct from the later stages' CSV and JSON files."""
    missing = labels.isna().to_numpy()
    if missing.any():
        row = int(missing.argmax())
        raise DataError(f"{where}: the label is missing in row {row}; every row needs a label")
    codes, distinct = _distinct_labels(labels, where)
    first_rows = np.unique(codes, return_index=True)[1]
    texts = [v.strip() if isinstance(v, str) else str(v) for v in distinct]
    shown = [f"label {_short(v)} in row {r}" for v, r in zip(distinct, first_rows, strict=True)]
    canonical = [
        _canonical_label(*args, where)
        for args in zip(distinct, texts, _read_back(texts), shown, strict=True)
    ]
    kinds = {}
    for code, (kind, _) in enumerate(canonical):
        kinds.setdefault(kind, shown[code])
    if len(kinds) > 1:
        raise DataError(
            f"{where}: labels mix "
            + " and ".join(f"{kind} ({example})" for kind, example in sorted(kinds.items()))
            + "; a label written as 1 or true reads back as a number, so make every label a "
            "whole number, or every label text that is not a number (e.g. 'class 1')"
        )
    seen: dict[int | str, int] = {}
    for code, (kind, label) in enumerate(canonical):
        if label in seen:
            value = bool(label) if kind == "true/false" else label
            raise DataError(
                f"{where}: {shown[seen[label]]} and {shown[code]} are different labels but "
                f"both read back from a CSV file as {value!r}; make them one label or rename "
                "one"
            )
        seen[label] = code
    dtype = object if "text" in kinds else np.int64
    return np.array([label for _, label in canonical], dtype=dtype)[codes]


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
        with _open_regular_file(cache, str(cache)) as handle:
            try:
                frame = _read_parquet(handle, str(cache))
            except DataError:
                raise
            except (ValueError, OSError) as error:
                raise DataError(
                    f"{cache}: cannot be read as parquet ({_one_line(error)}); delete it"
                ) from None
        frame.columns = [str(c) for c in frame.columns]
        if LABEL not in frame.columns:
            raise DataError(f"{cache}: needs a {LABEL!r} column with the labels")
        labels = frame.pop(LABEL)
        return _assemble(name, frame, labels, str(cache), _IMAGE_SHAPES.get(name))
    fetch = fetch or sk_datasets.fetch_openml
    try:
        bunch = fetch(name, as_frame=True, n_retries=1, delay=0.5, parser="auto")
    except (OSError, ValueError) as error:  # URLError is an OSError
        raise DataError(
            f"data.dataset = {name!r}: could not download it from OpenML ({error}). Put the "
            f"data at {cache} (a parquet table of numeric feature columns and a {LABEL!r} "
            "column), or choose an embedded dataset: data.dataset: digits"
        ) from None
    where = f"OpenML dataset {name!r}"
    if not isinstance(bunch.target, pd.Series):
        raise DataError(
            f"{where} has {0 if bunch.target is None else bunch.target.shape[1]} target "
            "columns; knnlab classifies one: save it as a file and use data.dataset: file"
        )
    dataset = _assemble(name, bunch.data, bunch.target, where, _IMAGE_SHAPES.get(name))
    cache.parent.mkdir(parents=True, exist_ok=True)
    files.write_parquet(cache, dataset.frame)
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


def positive_class(wanted: int | str | None, classes: np.ndarray):
    """The class of the binary "is it a <class>?" analysis: ``data.positive_class`` if set
    (it must be one of ``classes``), else the larger label of a binary problem, else None.
    ``split`` checks it, so a wrong value stops the pipeline before any stage logs."""
    if wanted is None:
        return classes[1] if classes.size == 2 else None
    matches = [c for c in classes if str(c) == str(wanted)]
    if not matches:
        raise ParamsError(
            f"params.yaml: data.positive_class = {wanted!r} is not a class of this dataset; "
            f"classes are {', '.join(map(str, classes))} (or null for none)"
        )
    return matches[0]


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
