"""Fashion-MNIST (``data.dataset: fashion_mnist``) from its four IDX files: in the folder
``data.path``, else ``data/input``, else where Debian's ``dataset-fashion-mnist`` puts them,
else from OpenML (see :func:`load_fashion_mnist`)."""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from knnlab.pipeline.data.dataset import LABEL, DataError, Dataset, open_regular_file
from knnlab.pipeline.data.openml import OpenMLDownloadError, load_openml, openml_cache_path
from knnlab.pipeline.io import paths
from knnlab.pipeline.io.formats import HEAD_BYTES, one_line, sniff
from knnlab.pipeline.io.params import (
    DEFAULT_DATA_PATH,
    FASHION_MNIST,
)

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
    with open_regular_file(path, where, expected="an IDX file") as handle:
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
