"""A local CSV or Parquet table (``data.dataset: file``), checked and normalised at fetch so
that no later stage (which writes labels to CSV and JSON and reads them back) meets a
surprise:

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
* Labels: the canonical rule of :mod:`knnlab.pipeline.data.labels`.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from knnlab.pipeline.data.dataset import LABEL, DataError, Dataset, open_regular_file
from knnlab.pipeline.data.labels import canonical_labels, value_kind
from knnlab.pipeline.io.formats import HEAD_BYTES, Format, excerpt, excerpt_list, one_line, sniff


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


def read_parquet(handle: BinaryIO, where: str) -> pd.DataFrame:
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
    with open_regular_file(path, where) as handle:
        _check_format(handle, path, where)
        try:
            if path.suffix.lower() == ".parquet":
                frame = read_parquet(handle, where)
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
    return assemble(path.stem, frame, labels, where)


def assemble(
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
                    f"{where}: feature column {excerpt(name)} holds {value_kind(value)}s "
                    f"({excerpt(value)} in row {row}); kNN needs one number per cell: expand it "
                    "into columns or drop it"
                )
    raise DataError(
        f"{where}: feature column {excerpt(name)} is not numeric (dtype {dtype}); kNN needs "
        "numeric features: encode or drop it"
    )
