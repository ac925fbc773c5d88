"""Saving and loading fitted models without pickle.

A model file is an ``.npz`` archive of plain arrays (training features, encoded labels,
class labels) and a JSON header stored as bytes. A SHA-256 kept in the header covers the
header itself (params and extra facts, as canonical JSON without the checksum field) and
every array, so a truncated or altered file is caught.

Reading never trusts the file. Nothing is unpickled (``allow_pickle=False``), and before
any array is read the archive's directory and each member's ``.npy`` header are checked:
every member must be stored uncompressed (``np.savez`` writes them so; a compressed member
could expand without bound, a "zip bomb"), its declared shape and dtype must account for
exactly its stored size, and all arrays together may take at most ``KNNLAB_MAX_MODEL_BYTES``
bytes (an environment variable; default 4 GiB). Then the header's params are checked with
the rules of ``params.yaml`` and the arrays' contents (finite features, label codes in
range). Any failure is a :class:`ModelFileError` saying what is wrong.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import zipfile
from dataclasses import fields
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from knnlab.algorithms import is_approximate
from knnlab.pipeline.io.files import atomic_path
from knnlab.pipeline.io.params import ModelParams, ParamsError

if TYPE_CHECKING:  # reading a model file needs no scikit-learn; building the estimator does
    from knnlab.estimators import KNNClassifier

FORMAT = "knnlab.model/2"
OLD_FORMATS = ("knnlab.model/1",)
MAX_BYTES_ENV = "KNNLAB_MAX_MODEL_BYTES"
DEFAULT_MAX_BYTES = 4 * 2**30
MAX_HEADER_BYTES = 64 * 2**20  # the JSON header: params, feature names, a few facts
_NPY_PREFIX = 16 * 2**10  # magic, version, header length and numpy's 10,000-byte header cap
MODEL_KEYS = tuple(f.name for f in fields(ModelParams))  # n_neighbors, p, weights, ...
# The estimator's name of a params.yaml key, where they differ (scikit-learn's convention).
ESTIMATOR_NAMES = {"seed": "random_state"}
HEADER_KEYS = ("format", "estimator", "params", "sha256", "extra")
REBUILD = "rebuild it with `dvc repro train`"


class ModelFileError(ValueError):
    """A model file is missing, truncated, altered, too large or of an unknown format."""


def max_model_bytes() -> int:
    """The most bytes the arrays of a model file may take: ``KNNLAB_MAX_MODEL_BYTES``, or
    4 GiB."""
    raw = os.environ.get(MAX_BYTES_ENV)
    if raw is None:
        return DEFAULT_MAX_BYTES
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ModelFileError(f"{MAX_BYTES_ENV} = {raw!r}; expected a positive number of bytes")
    return value


def _canonical(header: dict) -> bytes:
    """The header as the bytes the checksum covers: sorted keys, no spaces, no sha256."""
    body = {key: value for key, value in header.items() if key != "sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _digest(header: dict, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(_canonical(header))
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"\n{name}:{a.dtype.str}:{a.shape}\n".encode())
        h.update(a.data)  # the buffer itself: no copy of the training set
    return h.hexdigest()


def save_model(path: Path | str, model: KNNClassifier, extra: dict | None = None) -> None:
    """Write a fitted :class:`KNNClassifier` to ``path`` (atomically).

    extra : JSON-serialisable facts to keep with the model (feature names, dataset, ...).
    """
    classes = np.asarray(model.classes_)
    if classes.dtype.kind not in "iufUb":
        classes = classes.astype(str)  # object labels become text: no pickle needed
    if np.ndim(model._y) != 1:
        raise ValueError(
            "save_model stores single-output classifiers; a multilabel/multioutput model has "
            f"y of shape {np.shape(model._y)}"
        )
    # The unscaled training rows: loading refits, which reproduces the scaling exactly. In
    # C order whatever order they were read in, so the file's bytes depend on the rows only
    # (and the search reads them as they are, without a copy).
    arrays = {
        "X": np.ascontiguousarray(model._X_raw, dtype=np.float64),
        "y": model._y.astype(np.int64),
        "classes": classes,
    }
    # An approximate index is kept as built (faiss's own bytes, covered by the checksum):
    # loading it takes milliseconds where building takes seconds to minutes, and the model
    # served is the index evaluate measured (docs/performance.md compares the two).
    state = model.index_state()
    if state is not None:
        arrays["index"] = np.asarray(state, dtype=np.uint8)
    header = {
        "format": FORMAT,
        "estimator": type(model).__name__,
        "params": model.get_params(),
        "extra": extra or {},
    }
    # A round trip through JSON first, so the digest covers what a reader will parse.
    header = json.loads(json.dumps(header))
    header["sha256"] = _digest(header, arrays)
    header_bytes = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        np.savez(fh, header=header_bytes, **arrays)


def read_header(path: Path | str) -> dict:
    """The JSON header of a model file (params, checksum, extra facts), once the whole
    file has passed its checks."""
    return read_model(path)[0]


def read_model_params(path: Path | str) -> dict:
    """The hyper-parameters that define a saved model (not its thread count), as the
    estimator's arguments (``random_state`` for ``model.seed``); ``index`` is {} for an
    exact model."""
    params = read_header(path)["params"]
    found = {name: params[name] for name in (ESTIMATOR_NAMES.get(k, k) for k in MODEL_KEYS)}
    return {**found, "index": found["index"] or {}}


# --- reading: the archive, then each member's .npy header, then the contents ---------------


def npy_header(fp: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype, int]:
    """Shape, Fortran order, dtype and data offset of the ``.npy`` stream ``fp`` (at its
    start), reading at most 16 KiB: numpy's own parser would first read a header of any
    declared length. Raises ValueError for anything that is not a plain ``.npy`` header."""
    prefix = io.BytesIO(fp.read(_NPY_PREFIX))
    try:
        version = np.lib.format.read_magic(prefix)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(prefix)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(prefix)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except (SyntaxError, RecursionError, MemoryError, TypeError) as error:
        raise ValueError(f"unreadable .npy header ({type(error).__name__})") from None
    if any(n < 0 for n in shape):
        raise ValueError(f"negative shape {shape}")
    return shape, fortran, dtype, prefix.tell()


# Per member: (number of dimensions, dtype kinds allowed, the dtype's item size or None).
_MEMBERS = {
    "header.npy": (1, "u", 1),
    "X.npy": (2, "f", 8),
    "y.npy": (1, "i", 8),
    "classes.npy": (1, "iufUb", None),
    "index.npy": (1, "u", 1),  # an approximate model's index (only there)
}
_OPTIONAL = {"index.npy"}


def _check_archive(path: Path, archive: zipfile.ZipFile) -> dict[str, tuple[int, ...]]:
    """Member names, compression and declared sizes, from the zip directory and each
    member's .npy header alone. Returns each array's shape; nothing big is read."""
    members = archive.infolist()
    names = sorted(m.filename for m in members)
    required = sorted(set(_MEMBERS) - _OPTIONAL)
    if sorted(set(names) - _OPTIONAL) != required or len(set(names)) != len(names):
        raise ModelFileError(
            f"model file {path} holds {names}, expected the arrays {required} (and "
            f"{sorted(_OPTIONAL)} for an approximate index); it is not a knnlab model"
        )
    limit = max_model_bytes()
    total = sum(m.file_size for m in members)
    if total > limit:
        raise ModelFileError(
            f"model file {path} declares {total:,} bytes of arrays, more than the limit of "
            f"{limit:,} bytes; if the model is genuine, raise {MAX_BYTES_ENV}"
        )
    shapes = {}
    for member in members:
        where = f"model file {path}: member {member.filename}"
        if member.compress_type != zipfile.ZIP_STORED:
            raise ModelFileError(
                f"{where} is compressed; knnlab model files store their arrays uncompressed "
                f"(a compressed member could expand without bound); {REBUILD}"
            )
        try:
            with archive.open(member) as fp:
                shape, _, dtype, offset = npy_header(fp)
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
            raise ModelFileError(f"{where} has no valid .npy header ({error}); {REBUILD}") from None
        ndim, kinds, itemsize = _MEMBERS[member.filename]
        if dtype.hasobject or dtype.kind not in kinds or (itemsize and dtype.itemsize != itemsize):
            raise ModelFileError(f"{where} has dtype {dtype}, not a knnlab model array; {REBUILD}")
        if len(shape) != ndim:
            raise ModelFileError(
                f"{where} has shape {shape}, expected {ndim} dimension(s); {REBUILD}"
            )
        declared = offset + math.prod(shape) * dtype.itemsize  # Python ints: no overflow
        if declared != member.file_size:
            raise ModelFileError(
                f"{where} declares shape {shape} of {dtype} ({declared:,} bytes with its "
                f"header) but stores {member.file_size:,} bytes; it was altered or damaged; "
                f"{REBUILD}"
            )
        shapes[member.filename.removesuffix(".npy")] = shape
    (n_samples, n_features), (n_labels,) = shapes["X"], shapes["y"]
    if n_samples < 1 or n_features < 1 or shapes["classes"][0] < 1:
        raise ModelFileError(
            f"model file {path} holds X of shape {shapes['X']} and {shapes['classes'][0]} "
            f"classes; a model needs at least one sample, feature and class; {REBUILD}"
        )
    if n_labels != n_samples:
        raise ModelFileError(
            f"model file {path} holds {n_samples} training rows but {n_labels} labels; {REBUILD}"
        )
    if shapes["header"][0] > MAX_HEADER_BYTES:
        raise ModelFileError(
            f"model file {path} has a header of {shapes['header'][0]:,} bytes, more than "
            f"{MAX_HEADER_BYTES:,}; {REBUILD}"
        )
    return shapes


def _parse_header(path: Path, raw: np.ndarray) -> dict:
    try:
        header = json.loads(raw.tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise ModelFileError(f"model file {path} has no valid header; {REBUILD}") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"model file {path} has no valid header; {REBUILD}")
    found = header.get("format")
    if found in OLD_FORMATS:
        raise ModelFileError(
            f"model file {path} has the old format {found!r} (its checksum does not cover "
            f"its header); this knnlab reads {FORMAT!r}: {REBUILD}"
        )
    if found != FORMAT:
        raise ModelFileError(
            f"model file {path} has format {found!r}; this knnlab reads {FORMAT!r}"
        )
    missing = [key for key in HEADER_KEYS if key not in header]
    if missing:
        raise ModelFileError(f"model file {path}: header lacks {missing}; {REBUILD}")
    return header


def _check_params(path: Path, params: Any, n_samples: int) -> dict:
    """The header's params, checked with params.yaml's own rules (and k <= n_samples)."""
    expected = {*(ESTIMATOR_NAMES.get(key, key) for key in MODEL_KEYS), "n_jobs"}
    if not isinstance(params, dict) or set(params) != expected:
        got = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ModelFileError(
            f"model file {path}: header params are {got}, expected {sorted(expected)}; {REBUILD}"
        )
    checked = {}
    try:
        for f in fields(ModelParams):
            name = ESTIMATOR_NAMES.get(f.name, f.name)
            checked[name] = f.metadata["check"](f"params.{name}", params[name])
        # The rules between keys (index options of the algorithm, its p, its library).
        ModelParams(**{key: checked[ESTIMATOR_NAMES.get(key, key)] for key in MODEL_KEYS})
        if params["index"] is None:  # the estimator's default: no options
            checked["index"] = None
    except ParamsError as error:
        reason = str(error).removeprefix("params.yaml: ").replace("model.", "params.")
        raise ModelFileError(f"model file {path}: {reason}; {REBUILD}") from None
    n_jobs = params["n_jobs"]
    if n_jobs is not None and (isinstance(n_jobs, bool) or not isinstance(n_jobs, int)):
        raise ModelFileError(
            f"model file {path}: params.n_jobs = {n_jobs!r} is not allowed; expected an "
            f"integer or null; {REBUILD}"
        )
    if checked["n_neighbors"] > n_samples:
        raise ModelFileError(
            f"model file {path}: expected n_neighbors <= n_samples, but n_samples = "
            f"{n_samples}, n_neighbors = {checked['n_neighbors']}; {REBUILD}"
        )
    return {**checked, "n_jobs": n_jobs}


def _check_contents(path: Path, arrays: dict[str, np.ndarray]) -> None:
    n_classes = len(arrays["classes"])
    y = arrays["y"]
    if y.min() < 0 or y.max() >= n_classes:
        raise ModelFileError(
            f"model file {path}: label codes span {y.min()}..{y.max()} but there are "
            f"{n_classes} classes; {REBUILD}"
        )
    if len(np.unique(arrays["classes"])) != n_classes:
        raise ModelFileError(f"model file {path}: class labels repeat; {REBUILD}")
    if not np.isfinite(arrays["X"]).all():
        raise ModelFileError(
            f"model file {path}: training features hold NaN or infinite values; {REBUILD}"
        )


def read_model(path: Path | str) -> tuple[dict, dict[str, np.ndarray]]:
    """The checked header and arrays of a model file: ``X`` (n_samples, n_features) float64
    unscaled training rows, ``y`` (n_samples,) int64 label codes, ``classes`` (n_classes,)."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist; run `dvc repro train` first")
    try:
        with zipfile.ZipFile(path) as archive:
            _check_archive(path, archive)
            arrays = {}
            present = set(archive.namelist())
            for name in [m for m in _MEMBERS if m in present]:  # sizes are checked: each
                # read allocates what it declared
                with archive.open(name) as fp:
                    arrays[name.removesuffix(".npy")] = np.lib.format.read_array(
                        fp, allow_pickle=False
                    )
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        if isinstance(error, ModelFileError):
            raise
        raise ModelFileError(
            f"model file {path} is not a readable knnlab model ({error}); it may be truncated "
            f"or not a model: {REBUILD}"
        ) from None
    header = _parse_header(path, arrays.pop("header"))
    if _digest(header, arrays) != header["sha256"]:
        raise ModelFileError(
            f"model file {path} fails its SHA-256 check: its header or arrays were altered "
            f"or damaged; {REBUILD}"
        )
    if header["estimator"] != "KNNClassifier":
        raise ModelFileError(
            f"model file {path} holds a {header['estimator']!r}, expected a 'KNNClassifier'"
        )
    if not isinstance(header["extra"], dict):
        raise ModelFileError(f"model file {path}: header extra is not a mapping; {REBUILD}")
    header["params"] = _check_params(path, header["params"], len(arrays["X"]))
    _check_contents(path, arrays)
    approximate = is_approximate(header["params"]["algorithm"])
    if approximate != ("index" in arrays):
        raise ModelFileError(
            f"model file {path}: algorithm {header['params']['algorithm']!r} "
            + ("needs" if approximate else "has no use for")
            + f" a stored index, and the file {'lacks' if approximate else 'holds'} one; "
            + REBUILD
        )
    return header, arrays


def load_model(path: Path | str) -> KNNClassifier:
    """Read a model file and return the fitted estimator (trees are rebuilt on load; an
    approximate index is loaded from the file's bytes)."""
    return model_from(*read_model(path))


def model_from(header: dict, arrays: dict[str, np.ndarray]) -> KNNClassifier:
    """The fitted estimator of a model file already read by :func:`read_model`."""
    from knnlab.estimators import KNNClassifier

    model = KNNClassifier(**header["params"])
    try:
        return model.fit(
            arrays["X"], arrays["classes"][arrays["y"]], index_state=arrays.get("index")
        )
    except ValueError as error:  # a stored index that is not the one the header describes
        if "index" not in arrays:
            raise
        raise ModelFileError(f"model file: {error}; {REBUILD}") from None
