"""Datasets: embedded, local files, OpenML through its cache, sampling and feature choice."""

from __future__ import annotations

import faulthandler
import gzip
import io
import os
import re
import struct
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from knnlab import cli
from knnlab.pipeline.data import dataset, datasets, fashion_mnist
from knnlab.pipeline.data.dataset import DataError, features_and_labels, validate
from knnlab.pipeline.data.fashion_mnist import (
    FASHION_MNIST_DIR,
    FASHION_MNIST_FILES,
    load_fashion_mnist,
    read_idx,
)
from knnlab.pipeline.data.labels import canonical_labels
from knnlab.pipeline.data.openml import load_openml, openml_cache_path
from knnlab.pipeline.data.tables import load_table
from knnlab.pipeline.io.params import ParamsError, parse_params

from ..support.format_samples import SAMPLES


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
    with pytest.raises(DataError, match="'petal size' is not a feature of 'iris'"):
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
    with pytest.raises(DataError, match=message):
        datasets.load(data_params(dataset="file", path=str(path), label_column="kind"))


def test_mnist_offline_without_cache_fails_fast_and_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/cache here; this machine has no route to OpenML
    with pytest.raises(DataError) as raised:
        datasets.load(data_params(dataset="mnist_784"))
    message = str(raised.value)
    assert "could not download it from OpenML" in message
    assert "data/cache/openml/mnist_784.parquet" in message
    assert "data.dataset: digits" in message


def test_mnist_loads_from_the_cache_without_downloading(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache = openml_cache_path("mnist_784")
    cache.parent.mkdir(parents=True)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.integers(0, 256, (40, 784)).astype(float))
    frame.columns = [f"pixel{i + 1}" for i in range(784)]
    frame["label"] = np.tile(np.arange(10), 4)
    frame.to_parquet(cache)

    def no_download(*args, **kwargs):
        raise AssertionError("the cache exists: nothing may be downloaded")

    dataset = load_openml("mnist_784", fetch=no_download)
    assert dataset.image_shape == (28, 28) and len(dataset.frame) == 40
    via_params = datasets.load(data_params(dataset="mnist_784"))  # the real fetch_openml path
    assert len(via_params.frame) == 40


def test_openml_download_is_cached_as_parquet(tmp_path, monkeypatch):
    """What the fetch stage does with a download: a small bunch stands in for OpenML."""
    monkeypatch.chdir(tmp_path)

    class Bunch:
        data = pd.DataFrame({"f1": [0.0, 1.0, 2.0, 3.0], "f2": [1.0, 1.0, 0.0, 0.0]})
        target = pd.Series(["1", "0", "1", "0"], dtype="category")

    dataset = load_openml("tiny", fetch=lambda *a, **k: Bunch())
    assert dataset.frame["label"].tolist() == [1, 0, 1, 0]
    assert openml_cache_path("tiny").is_file()


# --- local files: columns ------------------------------------------------------------------


def load_file(path, label_column="y"):
    return datasets.load(data_params(dataset="file", path=str(path), label_column=label_column))


def write_parquet_table(path, columns: dict):
    """A parquet file written by pyarrow, which (unlike pandas) allows repeated names."""
    table = pa.table(list(columns.values()), names=[name.split("#")[0] for name in columns])
    pq.write_table(table, path)
    return path


@pytest.mark.parametrize(
    ("header", "label_column", "message"),
    [
        ("a,y,y", "y", "column 'y' appears more than once"),  # pandas would read y, y.1
        ("a,a,y", "y", "column 'a' appears more than once"),
        (",a,y", "y", "column 1 has no name; .* to_csv\\(index=False\\)"),
        ("a,b,y,", "y", "column 4 has no name"),
    ],
)
def test_csv_header_names_are_checked_before_pandas_renames_them(
    tmp_path, header, label_column, message
):
    path = tmp_path / "table.csv"
    fields = header.count(",") + 1
    rows = [",".join(str(i % 2 + j) for j in range(fields)) for i in range(6)]
    path.write_text("\n".join([header, *rows]) + "\n")
    with pytest.raises(DataError, match=r"^data\.path = '.*table\.csv': " + message):
        load_file(path, label_column)


def test_duplicate_label_column_in_parquet_is_refused(tmp_path):
    path = write_parquet_table(
        tmp_path / "dup.parquet", {"a": [0.0, 1.0], "y": [0, 1], "y#2": [0, 1]}
    )
    with pytest.raises(DataError, match="parquet': column 'y' appears more than once"):
        load_file(path)


def test_rows_longer_than_the_header_are_refused(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("a,y\n1,2,0\n3,4,1\n")  # pandas would make the first field an index
    with pytest.raises(DataError, match="csv': rows have more fields than the header"):
        load_file(path)


def test_a_feature_named_like_the_internal_label_column_is_refused(tmp_path):
    path = tmp_path / "t.csv"
    pd.DataFrame({"label": [1.0, 2, 3, 4], "x": [0.0, 1, 0, 1], "y": [0, 1, 0, 1]}).to_csv(
        path, index=False
    )
    with pytest.raises(DataError, match=r"feature column named 'label'.* rename"):
        load_file(path, "y")
    as_labels = load_file(path, "label")  # the same column as the labels is fine
    assert as_labels.feature_columns == ["x", "y"]
    assert as_labels.frame["label"].tolist() == [1, 2, 3, 4]


# --- local files: labels -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ([1, 2, 1], [1, 2, 1]),
        ([1.0, 2.0, 1.0], [1, 2, 1]),
        (["1", "2"], [1, 2]),
        (["1.0", "-2", " 3"], [1, -2, 3]),
        ([True, False], [1, 0]),
        (["True", "False"], [1, 0]),
        (np.array([1, 2.0, 1], dtype=object), [1, 2, 1]),  # one number, two spellings
        (pd.Categorical(["b", "a", "b"]), ["b", "a", "b"]),
        (pd.Categorical(["7", "3"]), [7, 3]),  # OpenML targets: categories of text
        (["cat", " dog", "cat"], ["cat", "dog", "cat"]),
        (["a,b", 'say "hi"', "x"], ["a,b", 'say "hi"', "x"]),
        (pd.array([1, 2], dtype="Int64"), [1, 2]),
    ],
)
def test_labels_take_their_canonical_form(labels, expected):
    got = canonical_labels(pd.Series(labels), "t")
    assert got.tolist() == expected
    assert got.dtype == (object if isinstance(expected[0], str) else np.int64)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (["1", "01"], "label '1' in row 0 and label '01' in row 1 are different labels"),
        ([" 1", "1"], "label ' 1' in row 0 and label '1' in row 1 .* as 1;"),
        (np.array([1, "1"], dtype=object), "label 1 in row 0 and label '1' in row 1"),
        (["a", "a "], "label 'a' in row 0 and label 'a ' in row 1 .* as 'a';"),
        (["True", "true"], "both read back from a CSV file as True;"),
        ([1.0, 0.5], "label 0.5 in row 1 is not a whole number; classification needs class"),
        ([1.0, np.inf], "label inf in row 1 is not a whole number"),
        (np.array(["a", 1], dtype=object), r"labels mix a number \(label 1 in row 1\) and text"),
        (np.array([True, 2], dtype=object), "labels mix a number .* and true/false"),
        (["x", "2"], "labels mix a number .* and text"),
        (["NA", "b"], r"the label column has no label in row 0 \('NA'\); pandas reads"),
        (["\u00b2", "b"], "label '\u00b2' in row 0 looks like a whole number"),
        (np.array([2**70, 1], dtype=object), "too large for a 64-bit integer label"),
        (pd.Series([[1], [2]]), r"label \[1\] in row 0 is a list"),
        (pd.Series([np.array([1, 2]), np.array([3])]), r"label \[1, 2\] in row 0 is a list"),
        (pd.to_datetime(["2020-01-01", "2021-01-01"]), "is a Timestamp"),
        (["a", None], r"the label column has no label in row 1 \(missing\)"),
        (["a", " null "], r"has no label in row 1 \(' null '\)"),
    ],
)
def test_labels_that_would_not_survive_csv_and_json_are_refused(labels, message):
    with pytest.raises(DataError, match=message):
        canonical_labels(pd.Series(labels), "t")


def test_canonical_labels_read_back_unchanged_alone_or_together():
    """The promise the later stages rely on: any subset of the labels, written to a CSV
    column (as predictions.csv is) and read back, gives the same values."""
    cases = [[3, -1, 0], ["1.0", "2.0"], [True, False], ["cat", "dog", "a,b", "x y"]]
    for raw in cases:
        labels = canonical_labels(pd.Series(raw), "t")
        for subset in (labels, labels[:1], labels[1:]):
            text = pd.DataFrame({"actual": subset}).to_csv(index=False)
            back = pd.read_csv(io.StringIO(text))["actual"].tolist()
            assert back == list(subset), f"{raw}: {subset!r} read back as {back!r}"


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ('y\n"1"\n"01"\n"1"\n"01"\n', "label '1' in row 0 and label '01' in row 1"),
        ("y\n0.5\n1.5\n0.5\n1.5\n", "label '0.5' in row 0 is not a whole number"),
        ("y\nNA\nb\nb\n", r"label column 'y' has no label in row 0 \('NA'\)"),
    ],
)
def test_csv_labels_are_read_as_text_so_the_rule_sees_them(tmp_path, column, message):
    path = tmp_path / "t.csv"
    lines = column.splitlines()
    path.write_text("\n".join(["x," + lines[0]] + [f"{i}," + v for i, v in enumerate(lines[1:])]))
    with pytest.raises(DataError, match=message):
        load_file(path)


def test_csv_float_and_boolean_labels_become_integers(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("x,y,b\n0,1.0,True\n1,2.0,False\n2,1.0,True\n3,2.0,False\n")
    assert load_file(path, "y").frame["label"].tolist() == [1, 2, 1, 2]
    as_bool = load_file(path, "b")
    assert as_bool.frame["label"].tolist() == [1, 0, 1, 0]
    assert as_bool.frame["label"].dtype == np.int64


def test_parquet_labels_and_features_of_every_kind(tmp_path):
    base = {"x": [0.0, 1.0, 2.0, 3.0], "flag": [True, False, True, False]}
    path = tmp_path / "t.parquet"
    pd.DataFrame({**base, "y": ["1", "2", "1", "2"]}).to_parquet(path)
    loaded = load_file(path)
    assert loaded.frame["label"].tolist() == [1, 2, 1, 2], "numeric text -> integers"
    assert loaded.frame["flag"].tolist() == [1.0, 0.0, 1.0, 0.0], "boolean features -> 0/1"
    pd.DataFrame({**base, "y": [True, False, True, False]}).to_parquet(path)
    assert load_file(path).frame["label"].tolist() == [1, 0, 1, 0]
    pd.DataFrame({**base, "y": [0.5, 1.0, 0.5, 1.0]}).to_parquet(path)
    with pytest.raises(DataError, match=r"0\.5 in row 0 is not a whole number"):
        load_file(path)
    pd.DataFrame({**base, "y": [[1], [2], [1], [2]]}).to_parquet(path)
    with pytest.raises(DataError, match=r"label \[1\] in row 0 is a list"):
        load_file(path)
    pd.DataFrame({**base, "v": [[1, 2], [3], [4], [5]], "y": [0, 1, 0, 1]}).to_parquet(path)
    with pytest.raises(DataError, match=r"feature column 'v' holds lists \(\[1, 2\]"):
        load_file(path)
    pd.DataFrame({**base, "y": pd.array([0, 1, None, 1], dtype="Int64")}).to_parquet(path)
    with pytest.raises(DataError, match=r"column 'y' has no label in row 2 \(missing"):
        load_file(path)
    pd.DataFrame(
        {**base, "n": pd.array([1, None, 2, 3], dtype="Int64"), "y": [0, 1, 0, 1]}
    ).to_parquet(path)
    with pytest.raises(DataError, match="feature 'n' is nan in row 1"):
        load_file(path)


# --- local files: paths --------------------------------------------------------------------


def test_a_folder_a_fifo_and_a_missing_file_get_one_line_each(tmp_path):
    """Checked twice: params validation stats data.path (so DVC never hashes a fifo), and
    fetch opens the file without blocking and checks it before reading (it may change)."""
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    # A regression would block on the fifo for good: end the run with a traceback instead.
    faulthandler.dump_traceback_later(120, exit=True)
    with pytest.raises(
        ParamsError, match=r"folder\.csv' .* a \.csv or \.parquet file, not a folder"
    ):
        load_file(folder)
    with pytest.raises(ParamsError, match="not a pipe, socket or device"):
        load_file(fifo)
    with pytest.raises(DataError, match=r"folder\.csv': is a folder; expected a \.csv"):
        load_table(folder, "y")
    with pytest.raises(DataError, match="is not a regular file"):
        load_table(fifo, "y")  # opening a fifo for reading would wait for a writer
    faulthandler.cancel_dump_traceback_later()
    with pytest.raises(DataError, match=r"missing\.csv': no such file"):
        load_file(tmp_path / "missing.csv")
    loop = tmp_path / "loop.csv"
    loop.symlink_to(loop)
    with pytest.raises(DataError, match="cannot be opened"):
        load_file(loop)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_is_named(tmp_path):
    path = tmp_path / "secret.csv"
    path.write_text("x,y\n1,0\n2,1\n")
    path.chmod(0)
    try:
        with pytest.raises(DataError, match=r"secret\.csv': permission denied"):
            load_file(path)
    finally:
        path.chmod(0o600)


def test_permission_denied_is_one_line_also_for_root(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(dataset.os, "open", refuse)
    with pytest.raises(DataError, match=r"t\.csv': permission denied; make the"):
        load_table(tmp_path / "t.csv", "y")


def test_a_symlinked_file_is_read_and_fetch_writes_only_data_raw(tmp_path, monkeypatch):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    real = outside / "t.csv"
    pd.DataFrame({"x": [0.0, 1, 2, 3], "y": [0, 1, 0, 1]}).to_csv(real, index=False)
    project = tmp_path / "project"
    project.mkdir()
    (project / "link.csv").symlink_to(real)
    monkeypatch.chdir(project)
    before = sorted(p.name for p in outside.iterdir())
    from knnlab.stages import fetch

    params = parse_params({"data": {"dataset": "file", "path": "link.csv", "label_column": "y"}})
    fetch.run(params)
    assert sorted(p.name for p in outside.iterdir()) == before, "nothing written beside the file"
    written = sorted(str(p.relative_to(project)) for p in project.rglob("*") if p.is_file())
    assert written == ["data/raw/dataset.parquet", "data/raw/meta.json", "link.csv"]


# --- OpenML names and downloads -------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["../../../etc/x", "a/b", "a\\b", "..", ".hidden", "a..b", "", "x y", "é"]
)
def test_openml_names_that_could_leave_the_cache_are_refused(name):
    with pytest.raises(ParamsError, match="OpenML dataset name: letters, digits"):
        parse_params({"data": {"dataset": f"openml:{name}"}})


@pytest.mark.parametrize("name", ["credit-g", "mnist_784", "Fashion-MNIST", "BNG(breast-w)", "a.b"])
def test_real_openml_names_are_accepted(name):
    assert parse_params({"data": {"dataset": f"openml:{name}"}}).data.dataset == f"openml:{name}"


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/x", ".x", ""])
def test_the_openml_cache_path_stays_in_the_cache(name):
    with pytest.raises(DataError, match="would leave the cache folder"):
        openml_cache_path(name)


def test_openml_downloads_are_checked_like_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def bunch(data, target):
        return lambda *a, **k: type("Bunch", (), {"data": data, "target": target})

    features = pd.DataFrame({"f1": [0.0, 1.0, 2.0, 3.0]})
    regression = bunch(features, pd.Series([0.5, 1.5, 2.5, 3.5]))
    with pytest.raises(DataError, match=r"0\.5 in row 0 is not a whole number"):
        load_openml("reg", fetch=regression)
    clash = bunch(features.assign(label=[1.0, 2, 3, 4]), pd.Series(["a", "b", "a", "b"]))
    with pytest.raises(DataError, match="OpenML dataset 'clash': has a feature column"):
        load_openml("clash", fetch=clash)
    two_targets = bunch(features, pd.DataFrame({"t1": [0, 1, 0, 1], "t2": [1, 0, 1, 0]}))
    with pytest.raises(DataError, match="has 2 target columns"):
        load_openml("multi", fetch=two_targets)
    assert not any((tmp_path / "data/cache/openml").glob("*.parquet")), "nothing cached"
    numeric_categories = features.assign(f2=pd.Categorical([1, 2, 1, 2]))
    flags = bunch(numeric_categories, pd.Series(["TRUE", "FALSE", "TRUE", "FALSE"]))
    first = load_openml("flags", fetch=flags)
    assert first.frame["label"].tolist() == [1, 0, 1, 0]
    assert first.frame["f2"].tolist() == [1.0, 2.0, 1.0, 2.0]
    again = load_openml("flags", fetch=None)  # from the cache: the same table
    pd.testing.assert_frame_equal(first.frame, again.frame)


def test_positive_class_must_be_a_class():
    classes = np.array([0, 1, 2])
    assert datasets.positive_class(None, np.array(["a", "b"])) == "b", "binary: the larger"
    assert datasets.positive_class(None, classes) is None, "multiclass: none unless asked"
    assert datasets.positive_class(2, classes) == 2
    with pytest.raises(ParamsError, match=r"data.positive_class = 7 is not a class .* 0, 1, 2"):
        datasets.positive_class(7, classes)


# --- IDX files --------------------------------------------------------------------------------

IDX_CODES = {
    "uint8": 0x08,
    "int8": 0x09,
    "int16": 0x0B,
    "int32": 0x0C,
    "float32": 0x0D,
    "float64": 0x0E,
}


def idx_bytes(array: np.ndarray, code: int | None = None, shape=None) -> bytes:
    """``array`` in the IDX format, spelled out here independently of read_idx: 00 00, the
    type code, the number of dimensions, big-endian uint32 sizes, big-endian values."""
    code = IDX_CODES[array.dtype.name] if code is None else code
    shape = array.shape if shape is None else shape
    header = bytes([0, 0, code, len(shape)]) + b"".join(struct.pack(">I", n) for n in shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array: np.ndarray, gzipped: bool = False):
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data, mtime=0) if gzipped else data)
    return path


def sample_array(dtype_name: str) -> np.ndarray:
    """A (2, 3, 4) array of ``dtype_name`` reaching both ends of the type's range."""
    dtype = np.dtype(dtype_name)
    if dtype.kind == "f":
        info = np.finfo(dtype)
        values = [info.min, info.max, -0.0, 1.5, -2.25, info.tiny, np.inf, -np.inf]
    else:
        info = np.iinfo(dtype)
        values = [info.min, info.max, 0, 1, -1 if info.min < 0 else 2, 7]
    return np.resize(np.array(values, dtype=dtype), (2, 3, 4))


@pytest.mark.parametrize("gzipped", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("dtype_name", list(IDX_CODES))
def test_read_idx_reads_back_every_type_code_raw_and_gzipped(tmp_path, dtype_name, gzipped):
    array = sample_array(dtype_name)
    got = read_idx(write_idx(tmp_path / "a.idx", array, gzipped))
    assert got.shape == (2, 3, 4) and got.dtype == np.dtype(dtype_name)
    assert got.dtype.isnative and got.flags.writeable
    np.testing.assert_array_equal(got, array)


def test_read_idx_tells_gzip_by_its_bytes_not_its_name(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    gzipped_no_suffix = write_idx(tmp_path / "labels-idx1-ubyte", labels, gzipped=True)
    raw_with_suffix = write_idx(tmp_path / "labels-idx1-ubyte.gz", labels, gzipped=False)
    for path in (gzipped_no_suffix, raw_with_suffix):
        np.testing.assert_array_equal(read_idx(path), labels)
    empty = read_idx(write_idx(tmp_path / "empty", np.zeros((0, 28, 28), np.uint8)))
    assert empty.shape == (0, 28, 28)


def uint8_idx(*shape: int) -> bytes:
    return idx_bytes(np.zeros(shape, np.uint8))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is not an IDX file: starts with bytes \\(none\\); expected 00 00"),
        (
            b"\x01\x00\x08\x01" + bytes(8),
            "is not an IDX file: starts with bytes 01 00 08 01; expected 00 00, a type",
        ),
        (
            b"\x00\x00\x07\x01" + bytes(8),
            r"unknown IDX type code 0x07; expected one of 0x08 \(uint8\)",
        ),
        (b"\x00\x00\x08\x00", "the IDX header declares 0 dimensions; expected at least 1"),
        (b"\x00\x00\x08\x03" + bytes(6), "ends inside the IDX header: 3 dimensions need 16 header"),
        (
            uint8_idx(60000, 28, 28)[:16] + bytes(1234),
            r"expected 47,040,000 bytes of data after the header "
            r"\(60000 x 28 x 28 uint8 values\), found 1,234 \(the file is truncated\)",
        ),
        (uint8_idx(10) + b"\x00\x00", r"expected 10 bytes .* found 12 \(bytes trail the data\)"),
        (
            idx_bytes(np.zeros(3, np.int32), shape=(4,)),
            r"expected 16 bytes of data after the header \(4 int32 values\), found 12",
        ),
        (
            gzip.compress(uint8_idx(100), mtime=0)[:-12],
            "starts with the gzip magic bytes 1f 8b but does not",
        ),
        (
            b"\x1f\x8b" + bytes(30),
            "starts with the gzip magic bytes 1f 8b but does not decompress .*expected a complete",
        ),
    ],
    ids=[
        "empty",
        "magic",
        "type-code",
        "no-dimensions",
        "header-cut",
        "truncated",
        "trailing",
        "int32-short",
        "gzip-cut",
        "gzip-corrupt",
    ],
)
def test_read_idx_errors_name_the_file_and_the_expectation(tmp_path, content, message):
    path = tmp_path / "bad-idx3-ubyte.gz"
    path.write_bytes(content)
    with pytest.raises(DataError, match="^" + re.escape(str(path)) + ": " + message):
        read_idx(path)


def test_read_idx_refuses_a_folder_and_a_missing_file(tmp_path):
    folder = tmp_path / "train-images-idx3-ubyte"
    folder.mkdir()
    with pytest.raises(DataError, match="idx3-ubyte: is a folder; expected an IDX file"):
        read_idx(folder)
    with pytest.raises(DataError, match=r"missing-ubyte: no such file"):
        read_idx(tmp_path / "missing-ubyte")


# --- Fashion-MNIST ----------------------------------------------------------------------------


def fake_fashion_mnist(folder, train_labels, test_labels, gzipped=(True, False, False, True)):
    """The four Fashion-MNIST files with small contents: image i is filled from i, so the row
    order can be checked; some files gzipped and named .gz, the others raw without it."""
    folder.mkdir(parents=True, exist_ok=True)
    base = np.arange(784, dtype=np.int64).reshape(28, 28)
    train = np.stack([(base + i) % 256 for i in range(len(train_labels))]).astype(np.uint8)
    test = np.stack([(base * 3 + 100 + i) % 256 for i in range(len(test_labels))]).astype(np.uint8)
    arrays = [train, np.asarray(train_labels, np.uint8), test, np.asarray(test_labels, np.uint8)]
    for name, array, zipped in zip(FASHION_MNIST_FILES, arrays, gzipped, strict=True):
        write_idx(folder / (name + ".gz" if zipped else name), array, zipped)
    return train, test


# 12 training and 4 test images; the first training labels are Fashion-MNIST's own.
TRAIN_LABELS = [9, 0, 0, 3, 0, 2, 7, 2, 5, 5, 1, 4]
TEST_LABELS = [9, 2, 1, 8]


def test_fashion_mnist_from_a_folder_keeps_train_then_test_rows(tmp_path):
    folder = tmp_path / "fashion"
    train, test = fake_fashion_mnist(folder, TRAIN_LABELS, TEST_LABELS)
    dataset = load_fashion_mnist(folder)
    assert dataset.name == "fashion_mnist" and dataset.image_shape == (28, 28)
    assert dataset.feature_columns == [f"pixel{i}" for i in range(1, 785)]
    assert list(dataset.frame.columns)[-1] == "label" and dataset.frame.shape == (16, 785)
    X, y = features_and_labels(dataset.frame)
    assert X.dtype == np.float64 and y.dtype == np.int64
    expected = np.concatenate([train, test]).reshape(16, 784)  # row-major: pixel29 is (1, 0)
    np.testing.assert_array_equal(X, expected)
    assert y.tolist() == TRAIN_LABELS + TEST_LABELS
    assert (dataset.frame.dtypes.iloc[:-1] == np.float64).all(), "features stored as float64"
    assert dataset.class_names["0"] == "T-shirt/top" and dataset.class_names["9"] == "Ankle boot"
    assert len(dataset.class_names) == 10
    via_params = datasets.load(data_params(dataset="fashion_mnist", path=str(folder)))
    pd.testing.assert_frame_equal(via_params.frame, dataset.frame)
    info = via_params.info()
    assert info.image_shape == [28, 28] and info.display_name(8) == "Bag"


def test_fashion_mnist_folder_without_the_files_says_where_and_how(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as raised:
        datasets.load(data_params(dataset="fashion_mnist", path=str(empty)))
    message = str(raised.value)
    assert message.startswith(f"data.path = {str(empty)!r}: missing train-images-idx3-ubyte, ")
    for name in FASHION_MNIST_FILES:
        assert name in message
    assert "with or without .gz" in message
    assert "apt-get install dataset-fashion-mnist" in message and "set data.path to it" in message
    with pytest.raises(DataError, match=r"nowhere': no such folder; with data\.dataset"):
        load_fashion_mnist(tmp_path / "nowhere")


def test_fashion_mnist_path_must_be_a_folder(tmp_path):
    table = tmp_path / "fashion.csv"
    table.write_text("x,y\n1,0\n")
    with pytest.raises(ParamsError, match=r"with data\.dataset: fashion_mnist, a folder holding"):
        data_params(dataset="fashion_mnist", path=str(table))


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (
            1,
            "train-images-idx3-ubyte.gz holds 12 images but .*train-labels-idx1-ubyte holds "
            "11 labels; expected one label per image",
        ),
        (
            0,
            r"train-images-idx3-ubyte.gz: holds an array of shape \(12, 28, 27\); expected "
            r"\(n, 28, 28\)",
        ),
        (3, "t10k-labels-idx1-ubyte.gz: label 10 at position 3; expected 0..9"),
        (2, r"t10k-images-idx3-ubyte: holds an array of shape \(4, 784\); expected"),
    ],
)
def test_fashion_mnist_files_that_do_not_fit_are_named(tmp_path, broken, message):
    train, test = fake_fashion_mnist(tmp_path, TRAIN_LABELS, TEST_LABELS)
    replacement = {
        0: train[:, :, :27],
        1: np.asarray(TRAIN_LABELS[:11], np.uint8),
        2: test.reshape(4, 784),
        3: np.asarray([9, 2, 1, 10], np.uint8),
    }[broken]
    name = FASHION_MNIST_FILES[broken]
    zipped = broken in (0, 3)
    write_idx(tmp_path / (name + ".gz" if zipped else name), replacement, zipped)
    with pytest.raises(DataError, match=message):
        load_fashion_mnist(tmp_path)


def test_fashion_mnist_labels_must_be_integers(tmp_path):
    fake_fashion_mnist(tmp_path, TRAIN_LABELS, TEST_LABELS)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.asarray(TRAIN_LABELS, np.float32))
    with pytest.raises(
        DataError, match=r"train-labels-idx1-ubyte: holds float32 values of shape \(12,\)"
    ):
        load_fashion_mnist(tmp_path)


def test_fashion_mnist_is_looked_for_in_data_input_then_debian_then_openml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no dvc.yaml above: the repository root is tmp_path
    debian = tmp_path / "usr-share-datasets-fashion-mnist"
    monkeypatch.setattr(fashion_mnist, "FASHION_MNIST_DIR", debian)
    fake_fashion_mnist(tmp_path / "data/input", TRAIN_LABELS, TEST_LABELS)
    fake_fashion_mnist(debian, TRAIN_LABELS[::-1], TEST_LABELS)
    default = data_params(dataset="fashion_mnist")
    assert datasets.load(default).frame["label"].tolist()[:12] == TRAIN_LABELS, "data/input first"
    (tmp_path / "data/input/t10k-labels-idx1-ubyte.gz").unlink()  # three of four: passed over
    assert datasets.load(default).frame["label"].tolist()[:12] == TRAIN_LABELS[::-1], "Debian's"
    for path in debian.iterdir():
        path.unlink()

    def offline(*args, **kwargs):
        raise OSError("[Errno 101] Network is unreachable")

    with pytest.raises(DataError) as raised:
        load_fashion_mnist(fetch=offline)
    message = str(raised.value)
    assert message.startswith("data.dataset = 'fashion_mnist': Fashion-MNIST not found; looked in")
    assert f"{tmp_path / 'data/input'} (missing t10k-labels-idx1-ubyte)" in message
    assert f"{debian} (missing train-images-idx3-ubyte, train-labels-idx1-ubyte, " in message
    assert (
        "OpenML 'Fashion-MNIST' (no cache at data/cache/openml/Fashion-MNIST.parquet; " in message
    )
    assert "download failed: [Errno 101] Network is unreachable" in message
    assert "apt-get install dataset-fashion-mnist" in message and "set data.path to it" in message
    # Last, OpenML's table through its cache, with the same names as the IDX files give.
    cache = openml_cache_path("Fashion-MNIST")
    cache.parent.mkdir(parents=True)
    pixels = pd.DataFrame(np.zeros((20, 784)), columns=[f"pixel{i}" for i in range(1, 785)])
    pixels.assign(label=np.tile(np.arange(10), 2)).to_parquet(cache)
    dataset = datasets.load(default)
    assert dataset.name == "fashion_mnist" and dataset.image_shape == (28, 28)
    assert dataset.class_names["8"] == "Bag" and len(dataset.frame) == 20


@pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(),
    reason=f"{FASHION_MNIST_DIR} absent: apt-get install dataset-fashion-mnist",
)
def test_the_real_fashion_mnist_from_debian_loads_whole_and_in_order():
    dataset = validate(load_fashion_mnist(FASHION_MNIST_DIR))
    X, y = features_and_labels(dataset.frame)
    assert X.shape == (70_000, 784) and X.dtype == np.float64
    assert X.min() == 0 and X.max() == 255
    assert np.bincount(y).tolist() == [7_000] * 10
    assert np.bincount(y[:60_000]).tolist() == [6_000] * 10, "the training images come first"
    assert y[0] == 9 and dataset.class_names[str(y[0])] == "Ankle boot"
    assert y[60_000:60_003].tolist() == [9, 2, 1], "then the test images, in their order"


# --- split --------------------------------------------------------------------------------------


def test_an_integer_test_size_is_the_number_of_test_rows():
    frame = datasets.load(data_params(dataset="digits")).frame
    train, test = datasets.stratified_split(frame, parse_params({"split": {"test_size": 10}}).split)
    assert len(test) == 10 and len(train) == 1797 - 10
    assert test["label"].nunique() == 10, "stratified: one row of each class"
    train, test = datasets.stratified_split(
        frame, parse_params({"split": {"test_size": 0.1}}).split
    )
    assert len(test) == 180, "a fraction: ceil(0.1 * 1797) rows"


@pytest.mark.parametrize(
    ("test_size", "message"),
    [
        (1797, "split.test_size = 1797 test rows is not fewer than the 1797 rows of the dataset"),
        (5000, "split.test_size = 5000 test rows is not fewer than the 1797 rows"),
        (9, "split.test_size = 9 gives 9 test and 1788 train rows for 10 classes; each part"),
        (1790, "split.test_size = 1790 gives 1790 test and 7 train rows for 10 classes"),
    ],
)
def test_a_test_row_count_must_leave_each_part_every_class(test_size, message):
    frame = datasets.load(data_params(dataset="digits")).frame
    split = parse_params({"split": {"test_size": test_size}}).split
    with pytest.raises(DataError, match=message):
        datasets.stratified_split(frame, split)


# --- local files: formats, separators, missing labels, nothing quoted -----------------------


def parquet_bytes() -> bytes:
    buffer = io.BytesIO()
    pd.DataFrame({"x": [0.0, 1.0], "y": [0, 1]}).to_parquet(buffer)
    return buffer.getvalue()


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("t.csv", "x,y\n0,0\n1,1\n")
    return buffer.getvalue()


TABLE = b"x,y\n0,0\n1,1\n2,0\n3,1\n"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "t.csv",
            gzip.compress(TABLE, mtime=0),
            r"t\.csv': is gzip-compressed \(it starts with the gzip magic bytes 1f 8b\), not CSV "
            r"text; decompress it \(e\.g\. `gzip -dc t\.csv > t-plain\.csv`\) and set data\.path",
        ),
        ("t.csv", zip_bytes(), r"t\.csv': is a zip archive, not CSV text; extract the table"),
        (
            "t.csv",
            SAMPLES["xlsx"],
            r"is an Excel workbook \(\.xlsx\), not CSV text; save the sheet",
        ),
        ("t.csv", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "an Excel 97-2003 workbook"),
        ("t.csv", parquet_bytes(), r"is a Parquet file, not CSV text; name it \.parquet"),
        (
            "t.parquet",
            TABLE,
            r"t\.parquet': is not a Parquet file \(it does not start with the Parquet magic "
            r"bytes PAR1\); if it is a CSV table, name it \.csv",
        ),
        ("t.parquet", gzip.compress(TABLE, mtime=0), "is gzip-compressed .*, not a Parquet file"),
        ("t.csv", b"", r"t\.csv': is empty; expected a CSV table"),
        ("t.parquet", b"", r"t\.parquet': is empty; expected a Parquet table"),
        ("t.csv", b"\n\n\n", "holds blank lines only; expected a CSV table"),
        ("t.csv", "x,y\n0,caf\u00e9\n1,b\n".encode("latin-1"), "is not UTF-8 text; save it"),
    ],
)
def test_a_file_that_is_not_what_its_suffix_says_is_named_by_its_bytes(
    tmp_path, name, content, message
):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=r"^data\.path = '.*" + message):
        load_file(path)


def test_a_utf8_csv_with_a_byte_order_mark_reads_its_header(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbf" + TABLE)
    assert load_file(path).feature_columns == ["x"]


@pytest.mark.parametrize(
    ("text", "called", "count"),
    [
        ("x;z;y\n0;1;0\n1;0;1\n", "';'", 2),
        ("x;z;y\n0,5;1,5;0\n1,5;0,5;1\n", "';'", 2),  # decimal commas, as European sheets
        ("x\tz\ty\n0\t1\t0\n1\t0\t1\n", "tabs", 2),
        ("x|y\n0|0\n1|1\n", "'|'", 1),
    ],
)
def test_another_separator_is_named_not_blamed_on_the_label_column(tmp_path, text, called, count):
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(DataError) as raised:
        load_file(path)
    assert str(raised.value) == (
        f"data.path = '{path}': looks separated by {called} (its header line is one column "
        f"with {count} of them); knnlab reads comma-separated CSV: save it with commas "
        "(pandas: to_csv(path, index=False))"
    )


def test_missing_labels_name_the_column_the_rows_and_what_they_hold(tmp_path):
    path = tmp_path / "t.csv"
    cells = ["a", "NA", "", "null", "b", "N/A", "None", "nan", "a", "b"]
    path.write_text("x,kind\n" + "".join(f"{i},{c}\n" for i, c in enumerate(cells)))
    with pytest.raises(DataError) as raised:
        load_file(path, "kind")
    assert str(raised.value) == (
        f"data.path = '{path}': label column 'kind' has no label in row 1 ('NA'), row 2 "
        "(empty), row 3 ('null') and 3 more; pandas reads an empty cell and the texts NA, "
        "N/A, null, None, nan (and its other NA markers) as missing, here and in the CSV "
        "files the later stages write: fill those labels in or drop those rows; if such a "
        "text names a real class, rename it (e.g. to 'unlabelled')"
    )
    parquet = tmp_path / "t.parquet"
    pd.DataFrame({"x": [0.0, 1, 2, 3], "kind": ["a", None, " NA ", "b"]}).to_parquet(parquet)
    with pytest.raises(
        DataError, match=r"'kind' has no label in row 1 \(missing\), row 2 \(' NA '\);"
    ):
        load_file(parquet, "kind")


def test_a_header_of_one_column_is_refused_without_quoting_it(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("root:$6$salt$SECRETHASH:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n")
    with pytest.raises(DataError) as raised:
        load_file(path)
    assert str(raised.value) == (
        f"data.path = '{path}': is not a CSV table: its first line holds one column; expected "
        "a header line naming the feature columns and the label column, separated by commas"
    )


@pytest.mark.parametrize("system_file", ["/etc/passwd", "/etc/shadow", "/etc/group"])
def test_a_system_file_behind_a_symlink_is_not_quoted(tmp_path, monkeypatch, capsys, system_file):
    """The real files, as a user pointing data.path at them would: fetch through the CLI, in
    a project whose table is a symlink out of it."""
    source = Path(system_file)
    if not os.access(source, os.R_OK):
        pytest.skip(f"{system_file} is not readable here")
    lines = [line for line in source.read_text(errors="replace").splitlines() if line.strip()]
    (tmp_path / "table.csv").symlink_to(source)
    (tmp_path / "params.yaml").write_text(
        "data:\n  dataset: file\n  path: table.csv\n  label_column: y\n"
    )
    monkeypatch.chdir(tmp_path)
    assert cli.main(["fetch"]) == 2
    error = capsys.readouterr().err
    assert error == (
        "knnlab fetch: error: data.path = 'table.csv': is not a CSV table: its first line "
        "holds one column; expected a header line naming the feature columns and the label "
        "column, separated by commas\n"
    )
    fields = {field for line in lines for field in re.split(r"[:,]", line) if len(field) >= 5}
    assert not [field for field in fields if field in error], error


def test_names_and_values_from_a_file_are_quoted_short_and_printable(tmp_path):
    long_name = "a" * 70 + "\x1b[31m" + "b" * 200
    path = tmp_path / "t.csv"
    pd.DataFrame({long_name: [0.0, 1.0], "other": [1.0, 0.0], "kind": [0, 1]}).to_csv(
        path, index=False
    )
    with pytest.raises(DataError) as raised:
        load_file(path, "y")
    message = str(raised.value)
    assert "\x1b" not in message and "b" * 20 not in message, message
    assert message.endswith("columns are " + repr("a" * 56)[:57] + "..., 'other', 'kind'")
    many = tmp_path / "many.csv"
    pd.DataFrame({f"pixel{i}": [0.0, 1.0] for i in range(784)}).to_csv(many, index=False)
    with pytest.raises(DataError, match=r"'pixel7', \.\.\. \(784 in all\)$"):
        load_file(many, "y")
    repeated = tmp_path / "dup.csv"
    repeated.write_text(f"{long_name},{long_name},y\n0,1,0\n1,0,1\n")
    with pytest.raises(DataError) as raised:
        load_file(repeated)
    assert "\x1b" not in str(raised.value) and len(str(raised.value)) < 200 + len(str(repeated))


def test_an_idx_file_that_starts_with_text_is_not_quoted(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(DataError) as raised:
        read_idx(path)
    assert str(raised.value) == (
        f"{path}: is not an IDX file: starts with text; expected 00 00, a type code and the "
        "number of dimensions"
    )
