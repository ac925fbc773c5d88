"""Labels, the canonical rule: each distinct label is written as text (numbers and
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
``"true"``)."""

from __future__ import annotations

import csv
import io as text_io
import numbers

import numpy as np
import pandas as pd

from knnlab.pipeline.data.dataset import DataError
from knnlab.pipeline.io.formats import excerpt

# --- labels -----------------------------------------------------------------------------------


def _is_missing(value) -> bool:
    return (
        value is None
        or value is pd.NA
        or value is pd.NaT
        or (isinstance(value, float | np.floating) and np.isnan(value))
    )


def value_kind(value) -> str:
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
        f"{where}: label {excerpt(value)} in row {row} is a {value_kind(value)}; labels must be "
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
