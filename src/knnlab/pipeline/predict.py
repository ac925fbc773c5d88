"""``knnlab predict``: labels and class probabilities for new inputs from a saved model.

Inputs: PNG/JPEG images (made grey, resized to the model's image shape, dark-on-light turned
light-on-dark as the training images are, scaled to the training value range), ``.npy``
arrays, CSV rows, or ``-`` for CSV on standard input. Each prediction is flagged ``unusual``
when the query's mean distance to its neighbours exceeds the training set's 99th percentile
(stored in the model file at training time).

Inputs are sized before they are decoded: an image may have at most ``MAX_IMAGE_PIXELS``
(4096 x 4096) pixels, read from its header (a small PNG can declare 20000 x 20000 pixels and
decode to gigabytes), and a ``.npy`` array at most ``MAX_NPY_BYTES`` as float64, read from
its header; arrays of Python objects are refused, never unpickled.
"""

from __future__ import annotations

import io as _io
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np

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
        raise InputError(f"{path}: cannot be read as an image ({error})") from None
    pixels = np.asarray(grey, dtype=np.float64) / 255.0  # (height, width), 0 = black
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    if border.mean() > pixels.mean():
        pixels = 1.0 - pixels  # dark on light -> light on dark, as in digits and MNIST
    low, high = value_range
    return (low + pixels * (high - low)).ravel()


def read_inputs(
    sources: list[str], n_features: int, image_shape, value_range
) -> tuple[np.ndarray, list[str]]:
    """Feature rows from every source: X of shape (n_rows, n_features) and a name per row."""
    rows, names = [], []
    for source in sources:
        if source == "-":
            block = _csv_rows(sys.stdin.read(), "<stdin>")
            rows.append(block)
            names += [f"<stdin>:{i + 1}" for i in range(len(block))]
            continue
        path = Path(source)
        if not path.is_file():
            raise InputError(f"{source}: no such file")
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
            block = _csv_rows(path.read_text(encoding="utf-8"), source)
            rows.append(block)
            names += [f"{source}:{i + 1}" for i in range(len(block))]
        else:
            raise InputError(
                f"{source}: unsupported input; give an image ({', '.join(sorted(IMAGE_SUFFIXES))}),"
                " a .npy array, CSV rows (.csv) or - for CSV on standard input"
            )
    X = np.vstack(rows) if rows else np.empty((0, n_features))
    if X.shape[1] != n_features:
        raise InputError(
            f"inputs have {X.shape[1]} features but the model expects {n_features}"
            + (f" (a {image_shape[0]}x{image_shape[1]} image)" if image_shape else "")
        )
    if not np.isfinite(X).all():
        raise InputError("inputs contain NaN or infinite values")
    return X, names


def _npy_rows(path: Path, n_features: int) -> np.ndarray:
    from knnlab.pipeline.model_io import npy_header

    # Shape and dtype from the header first: nothing is allocated for what the file claims.
    try:
        with path.open("rb") as fh:
            shape, _, dtype, offset = npy_header(fh)
    except (ValueError, OSError) as error:
        raise InputError(f"{path}: not a readable .npy array ({error})") from None
    if dtype.hasobject or dtype.kind not in "biuf":
        raise InputError(f"{path}: holds {dtype} values; give an array of numbers")
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
        raise InputError(f"{path}: not a readable .npy array ({error})") from None
    array = np.asarray(array, dtype=np.float64)
    if array.ndim == 1 or (array.ndim == 2 and array.size == n_features):
        return array.reshape(1, -1)  # one row, or one image
    if array.ndim == 2:
        return array
    if array.ndim == 3:
        return array.reshape(array.shape[0], -1)  # a stack of images
    raise InputError(f"{path}: expected 1-D to 3-D data, got shape {array.shape}")


def _csv_rows(text: str, name: str) -> np.ndarray:
    import pandas as pd  # here: an image or .npy prediction should not pay for it

    try:
        frame = pd.read_csv(_io.StringIO(text), header=None)
    except (ValueError, pd.errors.ParserError) as error:
        raise InputError(f"{name}: not CSV rows ({error})") from None
    # A header row of names makes every column text: drop it.
    if not all(pd.api.types.is_numeric_dtype(t) for t in frame.dtypes):
        frame = pd.read_csv(_io.StringIO(text))
    try:
        return frame.to_numpy(dtype=np.float64)
    except ValueError:
        raise InputError(f"{name}: every CSV value must be a number") from None


class SavedModel:
    """A saved model ready to answer queries. Brute-force models (what ``auto`` picks for
    images) answer from the file's arrays with knnlab's search and voting, exactly as
    :class:`~knnlab.estimators.KNNClassifier` does, without importing scikit-learn (1.6 s of
    the command's time); a tree model is rebuilt as the estimator, an approximate one
    loaded with its stored index.

    header, arrays : as :func:`knnlab.pipeline.model_io.read_model` returns them.
    """

    def __init__(self, header: dict, arrays: dict[str, np.ndarray]) -> None:
        from knnlab.algorithms import resolve_algorithm
        from knnlab.options import fit_scaling

        params = header["params"]
        X = arrays["X"]
        self.classes_ = arrays["classes"]
        self.n_features_in_ = X.shape[1]
        self._params = params
        self._y = arrays["y"]
        self._estimator = None
        if resolve_algorithm(params["algorithm"], *X.shape, params["n_neighbors"]) != "brute":
            from knnlab.pipeline.model_io import model_from

            self._estimator = model_from(header, arrays)  # a tree, or the stored index
            return
        self._centre, self._factor = fit_scaling(X, params["scale"])
        self._X = self._transform(X)

    def _transform(self, X: np.ndarray) -> np.ndarray:
        # The estimator's own transform, operation for operation: the same bits.
        if self._params["scale"] == "none":
            return X
        return (X - self._centre) / self._factor

    def neighbors_and_proba(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distances (n, k) to the k nearest training rows and class probabilities
        (n, n_classes) of queries X (n, n_features), from one search."""
        if self._estimator is not None:
            return self._estimator.kneighbors(X)[0], self._estimator.predict_proba(X)
        from knnlab.neighbors import kneighbors
        from knnlab.voting import class_probabilities

        k = self._params["n_neighbors"]
        distances, indices = kneighbors(
            self._X,
            self._transform(np.asarray(X, dtype=np.float64)),
            k,
            p=float(self._params["p"]),
            n_jobs=self._params["n_jobs"],
        )
        labels = self._y[indices]
        proba = class_probabilities(
            distances, labels, len(self.classes_), self._params["weights"], [k]
        )
        return distances, proba[0]


def predict_rows(model: SavedModel, X: np.ndarray, names: list[str], novelty: float, top: int = 3):
    """Label, top class probabilities, mean neighbour distance and the unusual flag, per row."""
    distances, proba = model.neighbors_and_proba(X)
    results = []
    for name, row, d in zip(names, proba, distances.mean(axis=1), strict=True):
        order = np.argsort(-row, kind="stable")[:top]
        label = model.classes_[order[0]]
        results.append(
            {
                "input": name,
                "label": label.item() if hasattr(label, "item") else label,
                "probabilities": {str(model.classes_[i]): round(float(row[i]), 4) for i in order},
                "mean_neighbor_distance": round(float(d), 4),
                "unusual": bool(d > novelty),
            }
        )
    return results


def format_results(results: list[dict], as_json: bool) -> str:
    if as_json:
        return json.dumps(results, indent=2) + "\n"
    lines = []
    for r in results:
        probabilities = ", ".join(f"{k}: {v:.2f}" for k, v in r["probabilities"].items())
        flag = "  UNUSUAL: unlike the training data" if r["unusual"] else ""
        lines.append(f"{r['input']}: {r['label']}  ({probabilities}){flag}")
    return "\n".join(lines) + "\n"


def main(model_path: str, sources: list[str], as_json: bool, top: int) -> int:
    from knnlab.pipeline.model_io import read_model

    header, arrays = read_model(model_path)
    extra = header["extra"]
    model = SavedModel(header, arrays)
    X, names = read_inputs(
        sources,
        model.n_features_in_,
        extra.get("image_shape"),
        extra.get("value_range", [0.0, 1.0]),
    )
    results = predict_rows(model, X, names, extra.get("novelty_threshold", float("inf")), top)
    sys.stdout.write(format_results(results, as_json))
    return 0
