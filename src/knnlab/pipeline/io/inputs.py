"""The inputs of ``knnlab predict`` turned into feature rows for a saved model.

Inputs: PNG/JPEG images (made grey, resized to the model's image shape, dark-on-light turned
light-on-dark as the training images are, scaled to the training value range), ``.npy``
arrays, CSV rows, or ``-`` for CSV on standard input.

Inputs are sized before they are decoded: an image may have at most ``MAX_IMAGE_PIXELS``
(4096 x 4096) pixels, read from its header (a small PNG can declare 20000 x 20000 pixels and
decode to gigabytes), and a ``.npy`` array at most ``MAX_NPY_BYTES`` as float64, read from
its header; arrays of Python objects are refused, never unpickled.

CSV rows are UTF-8 text, comma-separated, one query per row, after an optional header line
of column names (a first line with any cell that is not a number). Inputs are refused with
one line saying what they are and what to give instead: a folder, a file whose first bytes
show another format (gzip, zip, Excel, Parquet, an image named .csv, ...), text that is not
UTF-8, another separator, no rows of numbers. No message quotes an input's text; a
library's error is repeated only as a short, printable excerpt.
"""

from __future__ import annotations

import io as _io
import math
import sys
import warnings
from pathlib import Path

import numpy as np

from knnlab.pipeline.io.formats import HEAD_BYTES, Format, one_line, sniff

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
MAX_IMAGE_SIDE = 4096
MAX_IMAGE_PIXELS = MAX_IMAGE_SIDE * MAX_IMAGE_SIDE
MAX_NPY_BYTES = 2**30  # 134 million values as float64


class InputError(ValueError):
    """An input cannot be turned into feature rows for this model."""


def _grey(image):
    """An opened image as 8-bit grey ("L"), whatever it holds: transparent areas composited
    on white (paper: a black "1" on a transparent PNG is dark ink on light, not a black
    square), 16- and 32-bit grey scaled to 8 bits rather than clipped, palettes and
    colour spaces (RGB, CMYK JPEG, ...) converted by Pillow."""
    from PIL import Image

    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        # 16-bit PNGs open as "I;16" or "I"; a full 0..65535 range is the common case, and
        # an image whose values stay below 256 was 8-bit data stored wide.
        top = 65535.0 if values.max(initial=0) > 255 else 255.0
        return Image.fromarray(np.clip(np.rint(values / top * 255.0), 0, 255).astype(np.uint8))
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("L")
    return image.convert("L")


def image_to_features(
    path: Path, image_shape: tuple[int, int], value_range: tuple[float, float]
) -> np.ndarray:
    """One image file as a feature row of shape (height * width,).

    The image is made grey (:func:`_grey`: transparency on white, 16-bit scaled), resized to
    ``image_shape`` (height, width), inverted when its
    border is lighter than its centre (dark ink on light paper, where the training digits
    are light on dark), and scaled to ``value_range``.
    """
    from PIL import Image, UnidentifiedImageError

    too_large = (
        f"knnlab predict reads images of at most {MAX_IMAGE_SIDE}x{MAX_IMAGE_SIDE} "
        f"({MAX_IMAGE_PIXELS:,} pixels): scale it down first"
    )
    try:
        # Opening reads the header only. Pillow itself refuses above twice its own limit
        # and warns above it; the stricter check below comes first for the rest.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        with image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise InputError(f"{path}: the image is {width}x{height} pixels; {too_large}")
            grey = _grey(image).resize((image_shape[1], image_shape[0]), Image.Resampling.LANCZOS)
    except Image.DecompressionBombError:
        raise InputError(
            f"{path}: the image has more than {2 * Image.MAX_IMAGE_PIXELS:,} pixels; {too_large}"
        ) from None
    except (UnidentifiedImageError, OSError) as error:
        raise InputError(f"{path}: cannot be read as an image ({one_line(error)})") from None
    pixels = np.asarray(grey, dtype=np.float64) / 255.0  # (height, width), 0 = black
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if border.mean() > pixels.mean():
        pixels = 1.0 - pixels  # dark on light -> light on dark, as in digits and MNIST
    low, high = value_range
    return (low + pixels * (high - low)).ravel()


ACCEPTED = (
    f"an image ({', '.join(sorted(IMAGE_SUFFIXES))}), a .npy array, CSV rows (.csv) or - for "
    "CSV on standard input"
)


def read_inputs(
    sources: list[str], n_features: int, image_shape, value_range
) -> tuple[np.ndarray, list[str]]:
    """Feature rows from every source: X of shape (n_rows, n_features) and a name per row."""
    rows, names = [], []
    for source in sources:
        if source == "-":
            block = _csv_rows(_read_stdin(), "<stdin>", n_features)
            rows.append(block)
            names += [f"<stdin>:{i + 1}" for i in range(len(block))]
            continue
        path = Path(source)
        if path.is_dir():
            raise InputError(
                f"{source}: is a folder; knnlab predict reads files: {ACCEPTED}; give the "
                f"files in it (e.g. {Path(source, '*.png')})"
            )
        if not path.exists():
            raise InputError(f"{source}: no such file")
        if not path.is_file():  # reading a fifo would wait for a writer
            raise InputError(
                f"{source}: is not a regular file (a pipe, socket or device); give {ACCEPTED}"
            )
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            if not image_shape:
                raise InputError(
                    f"{source}: this model was not trained on images; give .npy or CSV rows "
                    f"with {n_features} features"
                )
            rows.append(image_to_features(path, tuple(image_shape), tuple(value_range))[None])
            names.append(source)
        elif suffix == ".npy":
            block = _npy_rows(path, n_features)
            rows.append(block)
            names += [source] if len(block) == 1 else [f"{source}[{i}]" for i in range(len(block))]
        elif suffix in (".csv", ".txt"):
            block = _csv_rows(path.read_bytes(), source, n_features)
            rows.append(block)
            names += [f"{source}:{i + 1}" for i in range(len(block))]
        else:
            raise InputError(f"{source}: unsupported input; give {ACCEPTED}")
    X = np.vstack(rows) if rows else np.empty((0, n_features))
    if X.shape[1] != n_features:
        raise InputError(
            f"inputs have {X.shape[1]} features but the model expects {n_features}"
            + (f" (a {image_shape[0]}x{image_shape[1]} image)" if image_shape else "")
        )
    if not np.isfinite(X).all():
        raise InputError("inputs contain NaN or infinite values")
    return X, names


def _read_stdin() -> bytes:
    """Standard input as bytes: decoding is :func:`_csv_rows`' to check (a text stream in
    place of stdin, as tests give, is taken as UTF-8)."""
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        return buffer.read()
    return sys.stdin.read().encode("utf-8", "surrogateescape")


# What to do with an input that is another format than its suffix says (formats.sniff); a
# compressed file and an image are told by their compressor and image suffix (see _fix).
_SHEET_FIX = "save the sheet as CSV (comma-separated, UTF-8)"
_FIXES = {
    "zip": "extract the CSV rows from it",
    "xlsx": _SHEET_FIX,
    "xls": _SHEET_FIX,
    "parquet": "save the rows as CSV (pandas: to_csv(path, index=False))",
    "npy": "give it as a file path ending in .npy",
}


def _fix(found: Format, name: str) -> str:
    """What to do with ``found``, read from ``name``, to predict from it."""
    if found.compressor is not None:
        command = (
            f"{found.compressor} -dc FILE | knnlab predict -"
            if name == "<stdin>"
            else f"{found.compressor} -dc {name} > plain{Path(name).suffix}"
        )
        return f"decompress it first: {command}"
    if found.image_suffix is not None:
        return (
            f"give it as a file path ending in {found.image_suffix} "
            f"(knnlab predict digit{found.image_suffix})"
        )
    return _FIXES.get(found.key, "give CSV rows of numbers")


def _npy_rows(path: Path, n_features: int) -> np.ndarray:
    from knnlab.pipeline.io.model_io import npy_header

    # Shape and dtype from the header first: nothing is allocated for what the file claims.
    try:
        with path.open("rb") as fh:
            found = sniff(fh.read(HEAD_BYTES))
            fh.seek(0)
            header = npy_header(fh) if found is not None and found.key == "npy" else None
    except (ValueError, OSError) as error:
        raise InputError(f"{path}: not a readable .npy array ({one_line(error)})") from None
    if header is None:  # numpy's own message would quote the file's first bytes
        if found is not None and found.key in ("zip", "empty zip"):
            raise InputError(
                f"{path}: is {found.what} (an .npz?), not a .npy array; save the one array to "
                "predict with numpy.save"
            )
        if found is not None:
            raise InputError(f"{path}: is {found.what}, not a .npy array; {_fix(found, str(path))}")
        raise InputError(
            f"{path}: is not a .npy array (it does not start with the .npy magic bytes "
            "\\x93NUMPY); save arrays with numpy.save"
        )
    shape, _, dtype, offset = header
    if dtype.hasobject or dtype.kind not in "biuf":
        raise InputError(f"{path}: holds {one_line(dtype)} values; give an array of numbers")
    n_values = math.prod(shape)
    declared = offset + n_values * dtype.itemsize
    if declared > path.stat().st_size:
        raise InputError(
            f"{path}: declares shape {shape} of {dtype} ({declared:,} bytes) but the file has "
            f"{path.stat().st_size:,} bytes; it is truncated or not a .npy array"
        )
    if n_values * 8 > MAX_NPY_BYTES:
        raise InputError(
            f"{path}: holds {n_values:,} values, {n_values * 8:,} bytes as float64; knnlab "
            f"predict reads at most {MAX_NPY_BYTES:,} bytes per file: split it"
        )
    try:
        array = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as error:
        raise InputError(f"{path}: not a readable .npy array ({one_line(error)})") from None
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 1 or (array.ndim == 2 and array.size == n_features):
        return array.reshape(1, -1)  # one row, or one image
    if array.ndim == 2:
        return array
    if array.ndim == 3:
        return array.reshape(array.shape[0], -1)  # a stack of images
    raise InputError(f"{path}: expected 1-D to 3-D data, got shape {array.shape}")


def _csv_rows(data: bytes, name: str, n_features: int) -> np.ndarray:
    """Rows of numbers (n_rows, n_columns) from CSV text, after an optional header line of
    column names. No message quotes the text: it may be any file."""
    rows_wanted = f"give one row of {n_features} comma-separated numbers per query"
    if name == "<stdin>":
        rows_wanted += ", and images or .npy arrays as file paths (knnlab predict digit.png)"
    text = _csv_text(data, name, rows_wanted)

    import pandas as pd  # here: an image or .npy prediction should not pay for it

    try:
        frame = pd.read_csv(_io.StringIO(text), header=None)
        header = not _all_numbers(frame) and not all(map(_is_number, frame.iloc[0]))
        if header:  # a first line of names: read again, for the rows' own types
            frame = pd.read_csv(_io.StringIO(text))
    except (ValueError, pd.errors.ParserError) as error:
        raise InputError(f"{name}: not CSV rows ({one_line(error)})") from None
    if _all_numbers(frame) and len(frame):
        return frame.to_numpy(dtype=np.float64)
    first_line = text.lstrip().split("\n", 1)[0]
    for separator, called in ((";", "';'"), ("\t", "tabs"), ("|", "'|'")):
        if separator in first_line:
            raise InputError(
                f"{name}: looks separated by {called}; knnlab reads comma-separated CSV"
                + (", with decimal points" if separator == ";" else "")
                + f": {rows_wanted}"
            )
    if not len(frame):
        raise InputError(
            f"{name}: holds no rows of numbers: its only line is text, read as a header of "
            f"column names; {rows_wanted} (a header line before them is optional)"
        )
    cell = _first_text_cell(frame)
    if cell is None:  # no text, only booleans among numbers: they count as 0 and 1
        return frame.to_numpy(dtype=np.float64)
    after = " after the header line" if header else ""
    raise InputError(
        f"{name}: row {cell[0] + 1}{after}, column {cell[1] + 1}, is not a number; every "
        f"value of a row must be a number: {rows_wanted}"
    )


def _csv_text(data: bytes, name: str, rows_wanted: str) -> str:
    """``data`` as text, refused when it is a known binary format, not UTF-8 or empty."""
    found = sniff(data, archive=data)
    if found is not None:
        raise InputError(f"{name}: is {found.what}, not CSV text; {_fix(found, name)}")
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark, as Excel writes, is not a value
    except UnicodeDecodeError as error:
        raise InputError(
            f"{name}: is not UTF-8 text (the byte at offset {error.start:,} is not UTF-8); "
            f"knnlab predict reads CSV rows as UTF-8 text: {rows_wanted}"
        ) from None
    if "\0" in text:
        raise InputError(f"{name}: holds NUL bytes: it is binary data, not CSV text; {rows_wanted}")
    if not text.strip():
        raise InputError(f"{name}: is empty; {rows_wanted}")
    return text


def _all_numbers(frame) -> bool:
    import pandas as pd

    return all(pd.api.types.is_numeric_dtype(t) for t in frame.dtypes)


def _is_number(value) -> bool:
    """Whether one cell as pandas read it is a number (or missing, refused later as NaN)."""
    import pandas as pd

    if not isinstance(value, str):
        return True
    return not pd.isna(pd.to_numeric(value, errors="coerce"))


def _first_text_cell(frame) -> tuple[int, int] | None:
    """(row, column) of the first cell, in reading order, that is text and not a number."""
    import pandas as pd

    text = np.column_stack(
        [
            frame[c].notna().to_numpy() & pd.to_numeric(frame[c], errors="coerce").isna().to_numpy()
            for c in frame.columns
        ]
    )
    found = np.argwhere(text)
    return (int(found[0][0]), int(found[0][1])) if len(found) else None
