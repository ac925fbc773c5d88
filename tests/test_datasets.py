"""Datasets: embedded, local files, OpenML through its cache, sampling and feature choice."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from knnlab import datasets
from knnlab.params import parse_params


def data_params(**values):
    return parse_params({"data": values}).data


def test_embedded_datasets_load_without_network():
    digits = datasets.load(data_params(dataset="digits"))
    assert digits.frame.shape == (1797, 65) and digits.image_shape == (8, 8)
    iris = datasets.load(data_params(dataset="iris"))
    assert iris.class_names == {"0": "setosa", "1": "versicolor", "2": "virginica"}
    moons = datasets.load(data_params(dataset="moons", moons={"n_samples": 100, "seed": 3}))
    assert moons.frame.shape == (100, 3)
    again = datasets.load(data_params(dataset="moons", moons={"n_samples": 100, "seed": 3}))
    pd.testing.assert_frame_equal(moons.frame, again.frame)


def test_iris_on_two_features():
    iris = datasets.load(
        data_params(dataset="iris", features=["sepal length (cm)", "sepal width (cm)"])
    )
    assert iris.feature_columns == ["sepal length (cm)", "sepal width (cm)"]


def test_unknown_feature_is_named():
    with pytest.raises(datasets.DataError, match="'petal size' is not a feature of 'iris'"):
        datasets.load(data_params(dataset="iris", features=["petal size"]))


def test_max_rows_is_a_stratified_seeded_sample():
    full = datasets.load(data_params(dataset="digits"))
    sample = datasets.load(data_params(dataset="digits", max_rows=500, seed=1))
    assert len(sample.frame) == 500
    shares = sample.frame["label"].value_counts(normalize=True).sort_index()
    expected = full.frame["label"].value_counts(normalize=True).sort_index()
    np.testing.assert_allclose(shares, expected, atol=0.01)
    same = datasets.load(data_params(dataset="digits", max_rows=500, seed=1))
    pd.testing.assert_frame_equal(sample.frame, same.frame)


def test_local_csv_with_a_named_label_column(tmp_path):
    path = tmp_path / "points.csv"
    pd.DataFrame({"a": [0.0, 1, 2, 3], "b": [1.0, 0, 1, 0], "kind": ["x", "y", "x", "y"]}).to_csv(
        path, index=False
    )
    loaded = datasets.load(data_params(dataset="file", path=str(path), label_column="kind"))
    assert loaded.feature_columns == ["a", "b"]
    assert loaded.frame["label"].tolist() == ["x", "y", "x", "y"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a,b,kind\n1,2,x\n1,NaN,y\n", "feature 'b' is nan in row 1"),
        ("a,b,kind\n1,zz,x\n2,3,y\n", "feature column 'b' is not numeric"),
        ("a,b,other\n1,2,x\n", "data.label_column = 'kind' is not a column"),
        ("a,b,kind\n1,2,x\n3,4,x\n", "needs at least 2 classes"),
        ("a,b,kind\n", "the table has no rows"),
    ],
)
def test_bad_local_files_get_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(datasets.DataError, match=message):
        datasets.load(data_params(dataset="file", path=str(path), label_column="kind"))


def test_mnist_offline_without_cache_fails_fast_and_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/cache here; this machine has no route to OpenML
    start = time.perf_counter()
    with pytest.raises(datasets.DataError) as raised:
        datasets.load(data_params(dataset="mnist_784"))
    assert time.perf_counter() - start < 30, "offline failure must come within seconds"
    message = str(raised.value)
    assert "could not download it from OpenML" in message
    assert "data/cache/openml/mnist_784.parquet" in message
    assert "data.dataset: digits" in message


def test_mnist_loads_from_the_cache_without_downloading(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache = datasets.openml_cache_path("mnist_784")
    cache.parent.mkdir(parents=True)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.integers(0, 256, (40, 784)).astype(float))
    frame.columns = [f"pixel{i + 1}" for i in range(784)]
    frame["label"] = np.tile(np.arange(10), 4)
    frame.to_parquet(cache)

    def no_download(*args, **kwargs):
        raise AssertionError("the cache exists: nothing may be downloaded")

    dataset = datasets.load_openml("mnist_784", fetch=no_download)
    assert dataset.image_shape == (28, 28) and len(dataset.frame) == 40
    via_params = datasets.load(data_params(dataset="mnist_784"))  # the real fetch_openml path
    assert len(via_params.frame) == 40


def test_openml_download_is_cached_as_parquet(tmp_path, monkeypatch):
    """What the fetch stage does with a download: a small bunch stands in for OpenML."""
    monkeypatch.chdir(tmp_path)

    class Bunch:
        data = pd.DataFrame({"f1": [0.0, 1.0, 2.0, 3.0], "f2": [1.0, 1.0, 0.0, 0.0]})
        target = pd.Series(["1", "0", "1", "0"], dtype="category")

    dataset = datasets.load_openml("tiny", fetch=lambda *a, **k: Bunch())
    assert dataset.frame["label"].tolist() == [1, 0, 1, 0]
    assert datasets.openml_cache_path("tiny").is_file()
