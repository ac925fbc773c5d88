"""Model files: pickle-free round trip, and clear errors for damaged, crafted and oversized
files (zip bombs and lying headers refused in bounded memory)."""

from __future__ import annotations

import io
import json
import re
import zipfile
import zlib

import numpy as np
import pytest

from knnlab import KNNClassifier
from knnlab.pipeline.io.model_io import ModelFileError, _digest, load_model, read_header, save_model

from ..support.memory import peak_growth


@pytest.fixture
def fitted(rng):
    X = rng.normal(size=(60, 3))
    y = np.array(["a", "b", "c"])[rng.integers(0, 3, 60)]
    return KNNClassifier(4, p=3, weights="distance", algorithm="ball_tree").fit(X, y), X


def test_round_trip_predicts_the_same(tmp_path, fitted):
    model, X = fitted
    path = tmp_path / "model.npz"
    save_model(path, model, extra={"dataset": "test"})
    loaded = load_model(path)
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert read_header(path)["extra"] == {"dataset": "test"}


def test_file_holds_no_pickled_objects(tmp_path, fitted):
    path = tmp_path / "model.npz"
    save_model(path, fitted[0])
    with np.load(path, allow_pickle=False) as archive:
        assert all(archive[name].dtype != object for name in archive.files)


def test_altered_arrays_fail_the_checksum(tmp_path, fitted):
    path = tmp_path / "model.npz"
    save_model(path, fitted[0])
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["X"] = arrays["X"] + 1.0
    np.savez(path, **arrays)
    with pytest.raises(ModelFileError, match="fails its SHA-256 check"):
        load_model(path)


def test_truncated_file_is_reported(tmp_path, fitted):
    path = tmp_path / "model.npz"
    save_model(path, fitted[0])
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ModelFileError, match="not a readable knnlab model"):
        load_model(path)


def test_pickled_payload_is_refused_not_executed(tmp_path):
    path = tmp_path / "model.npz"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("header.npy", b"\x80\x04not-a-numpy-array")
    with pytest.raises(ModelFileError):
        load_model(path)


def test_missing_file_says_how_to_make_it(tmp_path):
    with pytest.raises(ModelFileError, match="dvc repro train"):
        load_model(tmp_path / "none.npz")


# --- crafted files: every one a clear ModelFileError ----------------------------------------
# An attacker can recompute the checksum, so these files carry a valid one: what stops them
# is the check of their header and contents.


def _parts(path):
    """A saved model's header (without its checksum) and arrays, as an attacker sees them."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(arrays.pop("header").tobytes())
    del header["sha256"]
    return header, arrays


def _craft(path, header, arrays, *, checksum=True):
    """Write a model file from parts, with a correct checksum unless told otherwise."""
    header = {**header, "sha256": _digest(header, arrays) if checksum else "0" * 64}
    raw = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, header=raw, **arrays)


@pytest.fixture
def saved(tmp_path, fitted):
    path = tmp_path / "model.npz"
    save_model(path, fitted[0], extra={"dataset": "test"})
    return path


def test_checksum_covers_the_header(saved):
    header, arrays = _parts(saved)
    original = json.loads(np.load(saved)["header"].tobytes())["sha256"]
    for key, value in [("extra", {"dataset": "other"}), ("params", {"n_neighbors": 5})]:
        altered = {**header, key: {**header[key], **value}}
        _craft(saved, {**altered, "sha256": None}, arrays, checksum=False)
        raw = json.dumps({**altered, "sha256": original}).encode()
        np.savez(saved, header=np.frombuffer(raw, dtype=np.uint8), **arrays)
        with pytest.raises(ModelFileError, match="fails its SHA-256 check"):
            load_model(saved)


def _params(**changes):
    return lambda header, arrays: header["params"].update(changes)


def _array(name, make):
    return lambda header, arrays: arrays.__setitem__(name, make(arrays[name]))


def _with_nan(X):
    X = X.copy()
    X[3, 1] = np.nan
    return X


CRAFTED = {
    "k = 0": (_params(n_neighbors=0), "params.n_neighbors = 0 is not allowed"),
    "k above n_samples": (_params(n_neighbors=61), "expected n_neighbors <= n_samples"),
    "k not an int": (_params(n_neighbors=2.5), "expected an integer >= 1"),
    "k a bool": (_params(n_neighbors=True), "expected an integer >= 1"),
    "unknown weights": (_params(weights="magic"), "expected one of uniform, distance"),
    "unknown algorithm": (_params(algorithm="quantum"), "one of auto, brute, kd_tree"),
    "p below 1": (_params(p=0.5), "params.p = 0.5 is not allowed"),
    "p text": (_params(p="2"), "params.p = '2' is not allowed"),
    "unknown scale": (_params(scale="log"), "params.scale = 'log' is not allowed"),
    "n_jobs text": (_params(n_jobs="all"), "params.n_jobs = 'all' is not allowed"),
    "extra param": (_params(metric="cosine"), "header params are"),
    "missing param": (lambda h, a: h["params"].pop("weights"), "header params are"),
    "missing extra": (lambda h, a: h.pop("extra"), "header lacks ['extra']"),
    "other estimator": (lambda h, a: h.update(estimator="Evil"), "holds a 'Evil'"),
    "old format": (lambda h, a: h.update(format="knnlab.model/1"), "dvc repro train"),
    "unknown format": (lambda h, a: h.update(format="other/9"), "this knnlab reads"),
    "fewer labels": (_array("y", lambda y: y[:-1]), "60 training rows but 59 labels"),
    "code out of range": (_array("y", lambda y: y + 1), "label codes span 1..3 but there are 3"),
    "negative code": (_array("y", lambda y: y - 1), "label codes span -1..1"),
    "NaN feature": (_array("X", _with_nan), "NaN or infinite"),
    "infinite feature": (_array("X", lambda X: X * np.inf), "NaN or infinite"),
    "int features": (_array("X", lambda X: X.astype(np.int64)), "has dtype int64"),
    "1-D features": (_array("X", np.ravel), "expected 2 dimension(s)"),
    "repeated classes": (_array("classes", lambda c: np.array(["a", "a", "c"])), "repeat"),
    "float codes": (_array("y", lambda y: y.astype(np.float64)), "member y.npy has dtype"),
}


@pytest.mark.parametrize("change", CRAFTED.values(), ids=CRAFTED.keys())
def test_crafted_model_files_are_refused_clearly(saved, change):
    alter, message = change
    header, arrays = _parts(saved)
    alter(header, arrays)
    _craft(saved, header, arrays)
    with pytest.raises(ModelFileError, match=re.escape(message)):
        load_model(saved)


def test_object_arrays_are_refused_before_unpickling(saved):
    header, arrays = _parts(saved)
    arrays["classes"] = np.array(["a", "b", "c"], dtype=object)  # np.savez pickles it
    _craft(saved, header, arrays)
    with pytest.raises(ModelFileError, match=r"member classes\.npy has dtype object"):
        load_model(saved)


def test_unexpected_members_are_refused(saved):
    with zipfile.ZipFile(saved, "a") as zf:
        zf.writestr("evil.npy", b"")
    with pytest.raises(ModelFileError, match=r"'evil\.npy'"):
        load_model(saved)


def test_the_size_limit_comes_from_the_environment(saved, monkeypatch):
    monkeypatch.setenv("KNNLAB_MAX_MODEL_BYTES", "1000")
    with pytest.raises(ModelFileError, match=r"more than the limit of 1,000 bytes.*raise KNN"):
        load_model(saved)
    monkeypatch.setenv("KNNLAB_MAX_MODEL_BYTES", "lots")
    with pytest.raises(ModelFileError, match="KNNLAB_MAX_MODEL_BYTES = 'lots'"):
        load_model(saved)
    monkeypatch.setenv("KNNLAB_MAX_MODEL_BYTES", str(saved.stat().st_size))
    assert load_model(saved).n_features_in_ == 3


# --- bombs: refused from the zip directory and the .npy headers, in bounded memory ----------

_LOAD = "from knnlab.pipeline.io.model_io import load_model"
_ZEROS = bytes(2**20)


class _RepeatedZeros:
    """A raw-deflate compressor for a stream written as one header, then ``_ZEROS`` chunks.

    After a full flush deflate starts afresh, so every chunk of zeros compresses to the same
    bytes: computed once, a gigabyte of zeros is deflated in milliseconds, not seconds.
    """

    def __init__(self):
        self._zlib = zlib.compressobj(9, zlib.DEFLATED, -15)
        self._zeros = None

    def compress(self, data):
        if data is _ZEROS and self._zeros is not None:
            return self._zeros
        out = self._zlib.compress(data) + self._zlib.flush(zlib.Z_FULL_FLUSH)
        if data is _ZEROS:
            self._zeros = out
        return out

    def flush(self):
        return self._zlib.flush()


def _npy_prefix(shape, dtype="<f8") -> bytes:
    buffer = io.BytesIO()
    header = {"descr": dtype, "fortran_order": False, "shape": shape}
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.getvalue()


def _model_members(saved) -> dict[str, bytes]:
    with zipfile.ZipFile(saved) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def _zip_bomb(path, members) -> None:
    """The model's members with X.npy replaced by 2 GiB of deflated zeros (under the 4 GiB
    limit) behind a valid .npy header of shape (262144, 1024): a file of about 2 MB."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            if name != "X.npy":
                zf.writestr(zipfile.ZipInfo(name), content)  # stored, as np.savez writes
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(zipfile, "_get_compressor", lambda *args: _RepeatedZeros())
            with zf.open("X.npy", "w", force_zip64=True) as fh:
                fh.write(_npy_prefix((2**18, 1024)))
                for _ in range(2048):
                    fh.write(_ZEROS)


def _lying_header(path, members) -> None:
    """The model's members, X.npy's header claiming shape (100000, 100000): 80 GB."""
    members = {**members, "X.npy": _npy_prefix((100_000, 100_000)) + members["X.npy"][128:]}
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)


@pytest.fixture(scope="module")
def bombs(tmp_path_factory):
    """Each crafted file and what loading it did, measured in one fresh interpreter."""
    root = tmp_path_factory.mktemp("bombs")
    X = np.random.default_rng(0).normal(size=(60, 3))
    save_model(root / "model.npz", KNNClassifier(4).fit(X, np.arange(60) % 3))
    members = _model_members(root / "model.npz")
    files = {"zip bomb": root / "bomb.npz", "lying header": root / "liar.npz"}
    _zip_bomb(files["zip bomb"], members)
    _lying_header(files["lying header"], members)
    calls = [f"load_model({str(path)!r})" for path in files.values()]
    results = peak_growth("from knnlab.pipeline.io.model_io import load_model", calls)
    return {
        name: (path, result) for (name, path), result in zip(files.items(), results, strict=True)
    }


def test_zip_bomb_is_refused_quickly_in_bounded_memory(bombs):
    path, result = bombs["zip bomb"]
    assert path.stat().st_size < 3 * 2**20
    assert zipfile.ZipFile(path).getinfo("X.npy").file_size > 2**31, "a real bomb"
    assert result["error"].startswith("ModelFileError"), result
    assert "member X.npy is compressed" in result["error"], result
    assert result["growth_mib"] < 100 and result["seconds"] < 5, result


def test_a_header_claiming_1e5_by_1e5_is_refused_in_bounded_memory(bombs):
    _, result = bombs["lying header"]
    assert result["error"].startswith("ModelFileError"), result
    assert "declares shape (100000, 100000) of float64" in result["error"], result
    assert result["growth_mib"] < 100 and result["seconds"] < 5, result


def test_a_huge_npy_header_length_is_not_read(saved, tmp_path):
    """A version-2 .npy header may declare 4 GiB of header text; only 16 KiB are read."""
    members = _model_members(saved)
    members["X.npy"] = b"\x93NUMPY\x02\x00" + (2**32 - 1).to_bytes(4, "little") + b"{" * 64
    liar = tmp_path / "liar.npz"
    with zipfile.ZipFile(liar, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    with pytest.raises(ModelFileError, match=r"member X\.npy has no valid \.npy header"):
        load_model(liar)


# --- approximate models: the index is stored, checked and loaded ------------------------


@pytest.mark.parametrize(
    ("algorithm", "index"), [("hnsw", {"ef_search": 8}), ("ivf", {"nlist": 6, "nprobe": 2})]
)
def test_an_approximate_model_keeps_its_index(tmp_path, rng, algorithm, index):
    X = rng.normal(size=(300, 5))
    y = rng.integers(0, 3, 300)
    model = KNNClassifier(5, algorithm=algorithm, index=index, random_state=3).fit(X, y)
    path = tmp_path / "model.npz"
    save_model(path, model)
    with zipfile.ZipFile(path) as archive:
        assert "index.npy" in archive.namelist()
    loaded = load_model(path)
    assert loaded.get_params() == model.get_params()
    np.testing.assert_array_equal(loaded.index_state(), model.index_state())
    queries = rng.normal(size=(50, 5))
    for a, b in zip(loaded.kneighbors(queries), model.kneighbors(queries), strict=True):
        np.testing.assert_array_equal(a, b)


def test_an_index_that_does_not_match_the_header_is_refused(tmp_path, rng):
    X = rng.normal(size=(200, 4))
    y = rng.integers(0, 2, 200)
    path = tmp_path / "model.npz"
    save_model(path, KNNClassifier(3, algorithm="hnsw", index={"M": 8}).fit(X, y))
    header, arrays = _parts(path)
    other = KNNClassifier(3, algorithm="ivf").fit(X, y).index_state()  # an ivf index
    _craft(path, header, {**arrays, "index": other})
    with pytest.raises(ModelFileError, match="stored hnsw index is a IndexIVFFlat"):
        load_model(path)
    header["params"]["index"] = {"M": 12}  # a graph built with M = 8
    _craft(path, header, arrays)
    with pytest.raises(ModelFileError, match="not built with M = 12"):
        load_model(path)
    _craft(
        path, header | {"params": {**header["params"], "algorithm": "brute", "index": None}}, arrays
    )
    with pytest.raises(ModelFileError, match="has no use for a stored index"):
        load_model(path)
    del arrays["index"]
    _craft(path, header, arrays)
    with pytest.raises(ModelFileError, match="needs a stored index, and the file lacks one"):
        load_model(path)
