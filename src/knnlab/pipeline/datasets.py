"""Datasets as one table: numeric feature columns and a ``label`` column.

Embedded datasets need no network: scikit-learn ships digits and iris, and moons is
generated from a seed. A local CSV or parquet file works too (``data.dataset: file``), and
so does any OpenML dataset, downloaded once into ``data/cache/openml/``. Fashion-MNIST
(``data.dataset: fashion_mnist``) is read from its four IDX files: in the folder
``data.path``, else ``data/input``, else where Debian's ``dataset-fashion-mnist`` puts them,
else from OpenML (see :func:`load_fashion_mnist`).

Files and downloads are checked and normalised here, at fetch, so that no later stage
(which writes labels to CSV and JSON and reads them back) meets a surprise:

* Format: the first bytes must agree with the suffix (a gzip file, a zip archive or Excel
  workbook, or a Parquet file named .csv is refused, saying what it is), CSV is UTF-8 and
  comma-separated: a header of one column (another separator, or no table at all, such as
  a password file) is refused without being quoted. Messages quote column names and
  values only as short, printable excerpts.
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
  missing, such as ``"NA"`` or an empty cell; named with the column and the first rows), a
  number that is not whole (``0.5``: classification needs class labels), a list or other
  non-scalar, a mix of kinds (``"a"`` and ``1``), and two different labels that read back
  as one (``"1"`` and ``"01"``, ``"a"`` and ``"a "``, ``1`` and ``"1"``, ``"True"`` and
  ``"true"``).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io as text_io
import math
import numbers
import os
import stat
import zlib
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
from knnlab.pipeline.formats import HEAD_BYTES, Format, excerpt, excerpt_list, one_line, sniff
from knnlab.pipeline.params import (
    DEFAULT_DATA_PATH,
    FASHION_MNIST,
    FILE_DATASET,
    OPENML_PREFIX,
    DataParams,
    ParamsError,
    SplitParams,
)

LABEL = "label"


class DataError(ValueError):
    """The data cannot be used: missing column, non-numeric features, NaN, too few rows."""


class OpenMLDownloadError(DataError):
    """OpenML could not be reached or refused the name, and nothing was cached. ``reason``
    is the download's own error, for a caller that had other places to look first."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


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
def _open_regular_file(
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
                f"{where}: column {excerpt(name)} appears more than once; column names must "
                "be unique: rename or drop the copies"
            )
        seen.add(name)


# What to do with a file that is not what data.path's suffix says (formats.sniff); a
# compressed file is told by its compressor (see _fix).
_NOT_A_TABLE = "set data.path to a CSV or Parquet table"
_SHEET_FIX = "save the sheet as CSV (comma-separated, UTF-8) and set data.path to it"
_FIXES = {
    "zip": "extract the table and set data.path to it",
    "xlsx": _SHEET_FIX,
    "xls": _SHEET_FIX,
    "parquet": "name it .parquet and set data.path to that name",
    "npy": _NOT_A_TABLE + " with named columns",
}


def _fix(found: Format, name: str) -> str:
    """What to do with ``found``, the file ``name``, to fetch a table from it."""
    if found.compressor is not None:
        stem = name.rsplit(".", 1)[0]
        return (
            f"decompress it (e.g. `{found.compressor} -dc {name} > {stem}-plain.csv`) and set "
            "data.path to the result"
        )
    return _FIXES.get(found.key, _NOT_A_TABLE)


def _one_column(name: str, where: str) -> DataError:
    """Why a header of one column is refused; never quotes it (the file may be no table at
    all: a key, a password file), and a table needs a feature and a label column anyway."""
    for separator, called in ((";", "';'"), ("\t", "tabs"), ("|", "'|'")):
        if separator in name:
            return DataError(
                f"{where}: looks separated by {called} (its header line is one column with "
                f"{name.count(separator)} of them); knnlab reads comma-separated CSV: save it "
                "with commas (pandas: to_csv(path, index=False))"
            )
    return DataError(
        f"{where}: is not a CSV table: its first line holds one column; expected a header "
        "line naming the feature columns and the label column, separated by commas"
    )


def _read_csv(handle: BinaryIO, label_column: str, where: str) -> pd.DataFrame:
    # The raw header, before pandas renames a repeated "a" to "a.1".
    header = pd.read_csv(handle, header=None, nrows=1, dtype=str, keep_default_na=False)
    names = header.iloc[0].tolist()
    if len(names) < 2:
        raise _one_column(str(names[0]), where)
    _check_names(names, where)
    handle.seek(0)
    # Labels as text: read_csv would turn "01" and "1" both into 1; the label rule decides.
    frame = pd.read_csv(handle, dtype={label_column: str})
    if not frame.index.equals(pd.RangeIndex(len(frame))):
        raise DataError(
            f"{where}: rows have more fields than the header has names ({len(frame.columns)}); "
            "give every column a name"
        )
    if label_column in frame.columns and frame[label_column].isna().any():
        # What the missing cells held ("", NA, null, ...), for the message about them.
        handle.seek(0)
        cells = pd.read_csv(handle, usecols=[label_column], dtype=str, keep_default_na=False)
        frame[label_column] = frame[label_column].fillna(cells[label_column])
    return frame


def _read_parquet(handle: BinaryIO, where: str) -> pd.DataFrame:
    import pyarrow.parquet as pq

    # pandas cannot read a parquet file with a repeated column name; say which one.
    _check_names(pq.read_schema(handle).names, where)
    handle.seek(0)
    return pd.read_parquet(handle)


def _check_format(handle: BinaryIO, path: Path, where: str) -> None:
    """Refuse, from its first bytes, a file that is not what its suffix says: a gzip file
    named .csv, a workbook, a CSV named .parquet, ..."""
    parquet = path.suffix.lower() == ".parquet"
    head = handle.read(HEAD_BYTES)
    handle.seek(0)
    if not head:
        raise DataError(
            f"{where}: is empty; expected a "
            + ("Parquet table" if parquet else "CSV table: a header line, then one row per sample")
        )
    found = sniff(head, archive=handle)
    if parquet and found is not None and found.key == "parquet":
        return
    if found is not None:
        what = found.what
        if found.compressor is not None:
            what += f" (it starts with the {found.compressor} magic bytes {found.magic.hex(' ')})"
        raise DataError(
            f"{where}: is {what}, not {'a Parquet file' if parquet else 'CSV text'}; "
            f"{_fix(found, path.name)}"
        )
    if parquet:
        raise DataError(
            f"{where}: is not a Parquet file (it does not start with the Parquet magic bytes "
            "PAR1); if it is a CSV table, name it .csv"
        )


def load_table(path: Path | str, label_column: str) -> Dataset:
    """A local CSV or parquet file: ``label_column`` holds labels, every other column must
    be a numeric feature (see the module docstring for what is checked)."""
    path = Path(path)
    where = f"data.path = {str(path)!r}"
    with _open_regular_file(path, where) as handle:
        _check_format(handle, path, where)
        try:
            if path.suffix.lower() == ".parquet":
                frame = _read_parquet(handle, where)
            else:
                frame = _read_csv(handle, label_column, where)
        except DataError:
            raise
        except UnicodeDecodeError:
            raise DataError(
                f"{where}: is not UTF-8 text; save it as UTF-8 CSV (a spreadsheet: CSV UTF-8)"
            ) from None
        except pd.errors.EmptyDataError:
            raise DataError(f"{where}: holds blank lines only; expected a CSV table") from None
        except (ValueError, OSError, pd.errors.ParserError) as error:
            raise DataError(f"{where}: cannot be read as a table: {one_line(error)}") from None
    if frame.empty:
        raise DataError(f"{where}: the table has no rows")
    frame.columns = [str(c) for c in frame.columns]
    if label_column not in frame.columns:
        raise DataError(
            f"data.label_column = {label_column!r} is not a column of {path}; columns are "
            f"{excerpt_list(frame.columns)}"
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
                    f"{where}: feature column {excerpt(name)} holds {_kind(value)}s "
                    f"({excerpt(value)} in row {row}); kNN needs one number per cell: expand it "
                    "into columns or drop it"
                )
    raise DataError(
        f"{where}: feature column {excerpt(name)} is not numeric (dtype {dtype}); kNN needs "
        "numeric features: encode or drop it"
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
        f"{where}: label {excerpt(value)} in row {row} is a {_kind(value)}; labels must be "
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
    read_csv reads that text; ``shown`` names it in messages. Labels that read back as
    missing were refused before, by :func:`_refuse_missing_labels`."""
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
            f"{where}: {shown} reads back from a CSV file as {excerpt(back)}, not as itself; "
            "rename that class"
        )
    if text.lstrip("-").isdigit():
        raise DataError(
            f"{where}: {shown} looks like a whole number but does not read back as one (too "
            "large, or not ASCII digits); rename that class"
        )
    return ("text", text)


_SHOWN_MISSING = 3  # rows a message about missing labels names


def _refuse_missing_labels(labels: pd.Series, where: str) -> None:
    """Refuse rows without a label: a missing value, or text that reads back from a CSV file
    as missing (empty, NA, N/A, null, None, nan, ...; the later stages read labels from CSV
    files). Names the column (the Series' name) and the first rows, with what each holds."""
    values = labels.to_numpy(dtype=object)
    absent = labels.isna().to_numpy()
    texts = sorted({v.strip() for v in values[~absent] if isinstance(v, str)})
    read_as_missing = {
        text
        for text, back in zip(texts, _read_back(texts) if texts else [], strict=True)
        if _is_missing(back)
    }
    rows = np.flatnonzero(
        absent | np.array([isinstance(v, str) and v.strip() in read_as_missing for v in values])
    )
    if not rows.size:
        return
    held = [
        "missing" if absent[r] else "empty" if not values[r].strip() else excerpt(values[r])
        for r in rows[:_SHOWN_MISSING]
    ]
    shown = ", ".join(f"row {r} ({h})" for r, h in zip(rows, held, strict=False))
    more = f" and {rows.size - _SHOWN_MISSING} more" if rows.size > _SHOWN_MISSING else ""
    column = (
        f"label column {excerpt(labels.name)}"
        if isinstance(labels.name, str)
        else "the label column"
    )
    raise DataError(
        f"{where}: {column} has no label in {shown}{more}; pandas reads an empty cell and the "
        "texts NA, N/A, null, None, nan (and its other NA markers) as missing, here and in "
        "the CSV files the later stages write: fill those labels in or drop those rows; if "
        "such a text names a real class, rename it (e.g. to 'unlabelled')"
    )


def canonical_labels(labels: pd.Series, where: str) -> np.ndarray:
    """Labels (n_samples,) in their canonical form: int64, or str (the rule is in the module
    docstring). Refuses, naming the row and the value, what would not come back unchanged
    and distinct from the later stages' CSV and JSON files."""
    _refuse_missing_labels(labels, where)
    codes, distinct = _distinct_labels(labels, where)
    first_rows = np.unique(codes, return_index=True)[1]
    texts = [v.strip() if isinstance(v, str) else str(v) for v in distinct]
    shown = [f"label {excerpt(v)} in row {r}" for v, r in zip(distinct, first_rows, strict=True)]
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
                f"both read back from a CSV file as {excerpt(value)}; make them one label or "
                "rename one"
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
                    f"{cache}: cannot be read as parquet ({one_line(error)}); delete it"
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
    dataset = _assemble(name, bunch.data, bunch.target, where, _IMAGE_SHAPES.get(name))
    cache.parent.mkdir(parents=True, exist_ok=True)
    files.write_parquet(cache, dataset.frame)
    return dataset


# --- IDX files and Fashion-MNIST ------------------------------------------------------------

# IDX type codes (the header's third byte) and the big-endian type of the values they announce.
IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: Path | str) -> np.ndarray:
    """One IDX file (the MNIST format), gunzipped first when it starts with the gzip magic
    bytes 1f 8b, whatever its name.

    The format: two zero bytes, a type code (:data:`IDX_DTYPES`), the number of dimensions d,
    d sizes (big-endian uint32), then the values, big-endian, in C order.

    Returns
    -------
    ndarray of shape (size_1, ..., size_d), of the type code's dtype in native byte order.

    Raises
    ------
    DataError
        Naming the file, what was found and what was expected: not a regular file, gzip that
        does not decompress, a wrong magic, an unknown type code, 0 dimensions, or data
        shorter (truncated) or longer (trailing bytes) than the sizes say.
    """
    path = Path(path)
    where = str(path)
    with _open_regular_file(path, where, expected="an IDX file") as handle:
        try:
            raw = handle.read()
        except OSError as error:
            raise DataError(f"{where}: cannot be read ({error.strerror})") from None
    found = sniff(raw[:HEAD_BYTES])
    if found is not None and found.key == "gzip":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:  # bad header, cut short, corrupt
            raise DataError(
                f"{where}: starts with the gzip magic bytes 1f 8b but does not decompress "
                f"({one_line(error)}); expected a complete gzip file: fetch it again"
            ) from None
    if len(raw) < 4 or raw[:2] != b"\0\0":
        # Bytes that read as text are not shown: they would quote the file.
        head = "text" if raw[:4].isascii() and raw[:4].decode().isprintable() and raw else None
        raise DataError(
            f"{where}: is not an IDX file: starts with "
            f"{head or 'bytes ' + (raw[:4].hex(' ') or '(none)')}; expected 00 00, a type code "
            "and the number of dimensions"
        )
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X} ({dtype.name})" for c, dtype in IDX_DTYPES.items())
        raise DataError(f"{where}: unknown IDX type code 0x{code:02X}; expected one of {known}")
    if ndim == 0:
        raise DataError(f"{where}: the IDX header declares 0 dimensions; expected at least 1")
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise DataError(
            f"{where}: ends inside the IDX header: {ndim} dimensions need {start:,} header "
            f"bytes, found {len(raw):,}"
        )
    shape = tuple(int(size) for size in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize  # Python ints: no overflow on wild sizes
    found = len(raw) - start
    if found != expected:
        what = "the file is truncated" if found < expected else "bytes trail the data"
        raise DataError(
            f"{where}: expected {expected:,} bytes of data after the header "
            f"({' x '.join(map(str, shape))} {dtype.name} values), found {found:,} ({what})"
        )
    # A copy in native order: writable, and what numpy and the kernels expect.
    return np.frombuffer(raw, dtype, offset=start).reshape(shape).astype(dtype.newbyteorder("="))


FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
# The four files as Zalando names them (Debian adds .gz), in the standard order of the rows.
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_OPENML = "Fashion-MNIST"
_FASHION_MNIST_SHAPE = (28, 28)
# OpenML's names, so the IDX files and the OpenML download give the same columns.
_FASHION_MNIST_COLUMNS = [f"pixel{i + 1}" for i in range(math.prod(_FASHION_MNIST_SHAPE))]
_GET_FASHION_MNIST = (
    f"get the files with `apt-get install dataset-fashion-mnist` (into {FASHION_MNIST_DIR}), "
    f"or put the four IDX files ({', '.join(FASHION_MNIST_FILES)}, each with or without .gz) "
    "in a folder and set data.path to it"
)


def _find_idx_files(folder: Path) -> tuple[list[Path], list[str]]:
    """The Fashion-MNIST files present in ``folder`` (each by its name, else with .gz) and
    the names of those missing; read_idx tells gzip from the first bytes either way."""
    found, missing = [], []
    for name in FASHION_MNIST_FILES:
        path = next((p for p in (folder / name, folder / f"{name}.gz") if p.exists()), None)
        if path is None:
            missing.append(name)
        else:
            found.append(path)
    return found, missing


def _absent(folder: Path, missing: list[str]) -> str:
    """Why ``folder`` does not hold the four files, for a message."""
    if not folder.is_dir():
        return "no such folder"
    return f"missing {', '.join(missing)}"


def _fashion_mnist_part(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images of shape (n, 28, 28) and labels of shape (n,) in 0..9, from one pair of files."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != _FASHION_MNIST_SHAPE:
        raise DataError(
            f"{images_path}: holds an array of shape {images.shape}; expected (n, 28, 28): "
            "Fashion-MNIST images of 28 x 28 pixels"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DataError(
            f"{labels_path}: holds {labels.dtype.name} values of shape {labels.shape}; "
            "expected (n,) integer labels 0..9"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images):,} images but {labels_path} holds "
            f"{len(labels):,} labels; expected one label per image"
        )
    outside = np.flatnonzero((labels < 0) | (labels > 9))
    if outside.size:
        row = int(outside[0])
        raise DataError(
            f"{labels_path}: label {labels[row]} at position {row}; expected 0..9 (the ten "
            "Fashion-MNIST classes)"
        )
    return images, labels


def _fashion_mnist_from_idx(found: list[Path]) -> Dataset:
    train_images, train_labels = _fashion_mnist_part(found[0], found[1])
    test_images, test_labels = _fashion_mnist_part(found[2], found[3])
    n_train = len(train_labels)
    # One float64 block filled in place: 70,000 x 784 in one allocation, no per-column copy.
    pixels = np.empty((n_train + len(test_labels), len(_FASHION_MNIST_COLUMNS)), np.float64)
    pixels[:n_train] = train_images.reshape(n_train, -1)
    pixels[n_train:] = test_images.reshape(len(test_labels), -1)
    frame = pd.DataFrame(pixels, columns=_FASHION_MNIST_COLUMNS, copy=False)
    frame[LABEL] = np.concatenate([train_labels, test_labels]).astype(np.int64)
    return _fashion_mnist(frame)


def _fashion_mnist(frame: pd.DataFrame) -> Dataset:
    names = {str(label): name for label, name in enumerate(FASHION_MNIST_CLASSES)}
    return Dataset(FASHION_MNIST, frame, _FASHION_MNIST_SHAPE, names)


def _fashion_mnist_from_openml(fetch) -> Dataset:
    dataset = load_openml(FASHION_MNIST_OPENML, fetch)
    labels = dataset.frame[LABEL]
    # The class names are only right for OpenML's table of 784 pixels and labels 0..9.
    if (
        dataset.feature_columns != _FASHION_MNIST_COLUMNS
        or labels.dtype.kind not in "iu"
        or not labels.between(0, 9).all()
    ):
        raise DataError(
            f"{openml_cache_path(FASHION_MNIST_OPENML)}: is not Fashion-MNIST "
            f"({len(dataset.feature_columns)} features, labels of dtype {labels.dtype}); "
            "expected pixel1..pixel784 and labels 0..9: delete it"
        )
    return _fashion_mnist(dataset.frame)


def load_fashion_mnist(folder: Path | str | None = None, fetch=None) -> Dataset:
    """Zalando's Fashion-MNIST: 70,000 grey 28x28 images of 10 kinds of clothing.

    Rows are the 60,000 training images then the 10,000 test images (the standard order);
    features ``pixel1``..``pixel784`` (OpenML's names) as float64 values 0..255; labels int64
    0..9, named in ``class_names`` ("0" -> "T-shirt/top", ..., "9" -> "Ankle boot").

    folder : the folder holding the four IDX files (:data:`FASHION_MNIST_FILES`, each with or
        without .gz); then only there. None: ``data/input`` under the repository root if it
        holds all four, else :data:`FASHION_MNIST_DIR`, else OpenML's ``Fashion-MNIST``
        through :func:`load_openml` (its cache, or one download).
    fetch : the download function for OpenML (``sklearn.datasets.fetch_openml`` by default).

    Raises
    ------
    DataError
        Files missing (naming every place looked and how to get them), or a file that is not
        Fashion-MNIST (naming it).
    """
    if folder is not None:
        folder = Path(folder)
        found, missing = _find_idx_files(folder)
        if missing:
            raise DataError(
                f"data.path = {str(folder)!r}: {_absent(folder, missing)}; with data.dataset: "
                f"{FASHION_MNIST}, data.path is a folder holding the four Fashion-MNIST IDX "
                f"files: {_GET_FASHION_MNIST}"
            )
        return _fashion_mnist_from_idx(found)
    looked = []
    for place in (paths.repository_root() / DEFAULT_DATA_PATH, FASHION_MNIST_DIR):
        found, missing = _find_idx_files(place)
        if not missing:
            return _fashion_mnist_from_idx(found)
        looked.append(f"{place} ({_absent(place, missing)})")
    try:
        return _fashion_mnist_from_openml(fetch)
    except OpenMLDownloadError as error:  # a broken cache is reported as load_openml says
        looked.append(
            f"OpenML {FASHION_MNIST_OPENML!r} (no cache at "
            f"{openml_cache_path(FASHION_MNIST_OPENML)}; download failed: {error.reason})"
        )
    raise DataError(
        f"data.dataset = {FASHION_MNIST!r}: Fashion-MNIST not found; looked in "
        f"{'; '.join(looked)}. To use it, {_GET_FASHION_MNIST}"
    )


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


def load(params: DataParams) -> Dataset:
    """The dataset ``params`` names, validated."""
    if params.dataset == "digits":
        dataset = load_digits()
    elif params.dataset == "iris":
        dataset = load_iris()
    elif params.dataset == "moons":
        m = params.moons
        dataset = load_moons(m.n_samples, m.noise, m.seed)
    elif params.dataset == FASHION_MNIST:
        # data.path names the folder of the IDX files only when the user changed it.
        folder = params.path if params.path != DEFAULT_DATA_PATH else None
        dataset = load_fashion_mnist(folder)
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
            f"classes are {excerpt_list(classes)} (or null for none)"
        )
    return matches[0]


def stratified_split(frame: pd.DataFrame, params: SplitParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows so each class keeps its share in both parts; same seed, same split.
    ``params.test_size`` is a fraction (ceil(fraction * n) test rows) or a count of test rows,
    as in scikit-learn's ``train_test_split``."""
    counts = frame[LABEL].value_counts()
    if counts.min() < 2:
        raise DataError(
            f"class {excerpt(counts.idxmin())} has {counts.min()} sample(s); a stratified "
            "split needs at least 2 per class: remove the class or add samples"
        )
    test_size = params.test_size
    if isinstance(test_size, numbers.Integral) and not isinstance(test_size, bool):
        n_test = int(test_size)
        if n_test >= len(frame):
            raise DataError(
                f"split.test_size = {test_size} test rows is not fewer than the {len(frame)} "
                "rows of the dataset; give a smaller count, or a fraction in (0, 1)"
            )
    else:
        n_test = int(np.ceil(test_size * len(frame)))
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
