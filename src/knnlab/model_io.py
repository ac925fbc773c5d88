"""Saving and loading fitted models without pickle.

A model file is an ``.npz`` archive of plain arrays (training features, encoded labels,
class labels) and a JSON header stored as bytes. Loading uses ``allow_pickle=False``, so a
model file can never execute code; a SHA-256 of the arrays, kept in the header, catches a
truncated or altered file.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from knnlab.estimators import KNNClassifier
from knnlab.io import atomic_path

FORMAT = "knnlab.model/1"


class ModelFileError(ValueError):
    """A model file is missing, truncated, altered or of an unknown format."""


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
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
    # The unscaled training rows: loading refits, which reproduces the scaling exactly.
    arrays = {"X": model._X_raw, "y": model._y.astype(np.int64), "classes": classes}
    header = {
        "format": FORMAT,
        "estimator": type(model).__name__,
        "params": model.get_params(),
        "sha256": _digest(arrays),
        "extra": extra or {},
    }
    header_bytes = np.frombuffer(json.dumps(header, sort_keys=True).encode(), dtype=np.uint8)
    with atomic_path(path) as tmp, tmp.open("wb") as fh:
        np.savez(fh, header=header_bytes, **arrays)


def read_header(path: Path | str) -> dict:
    """The JSON header of a model file (params, checksum, extra facts)."""
    return _read(path)[0]


MODEL_KEYS = ("n_neighbors", "p", "weights", "algorithm", "scale")


def read_model_params(path: Path | str) -> dict:
    """The hyper-parameters that define a saved model (not its thread count)."""
    params = read_header(path)["params"]
    return {key: params[key] for key in MODEL_KEYS}


def _read(path: Path | str) -> tuple[dict, dict[str, np.ndarray]]:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file {path} does not exist; run `dvc repro train` first")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise ModelFileError(
            f"model file {path} is not a readable knnlab model ({error}); it may be truncated "
            "or not a model: rebuild it with `dvc repro train`"
        ) from None
    expected = {"header", "X", "y", "classes"}
    if set(arrays) != expected or not all(isinstance(a, np.ndarray) for a in arrays.values()):
        raise ModelFileError(
            f"model file {path} holds {sorted(arrays)}, expected the arrays {sorted(expected)}; "
            "it is not a knnlab model"
        )
    try:
        header = json.loads(arrays.pop("header").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"model file {path} has no valid header; rebuild it") from None
    if header.get("format") != FORMAT:
        raise ModelFileError(
            f"model file {path} has format {header.get('format')!r}; this knnlab reads {FORMAT!r}"
        )
    if _digest(arrays) != header.get("sha256"):
        raise ModelFileError(
            f"model file {path} fails its SHA-256 check: its arrays were altered or damaged; "
            "rebuild it with `dvc repro train`"
        )
    return header, arrays


def load_model(path: Path | str) -> KNNClassifier:
    """Read a model file and return the fitted estimator (trees are rebuilt on load)."""
    header, arrays = _read(path)
    if header.get("estimator") != "KNNClassifier":
        raise ModelFileError(f"model file {path} holds a {header.get('estimator')!r}")
    model = KNNClassifier(**header["params"])
    classes = arrays["classes"]
    return model.fit(arrays["X"], classes[arrays["y"]])
