"""Model files: pickle-free round trip, and clear errors for damaged files."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from knnlab import KNNClassifier
from knnlab.model_io import ModelFileError, load_model, read_header, save_model


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
