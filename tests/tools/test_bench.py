"""The search benchmark: its MNIST-like data, its agreement check and a tiny end-to-end run."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from ..conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))  # the benchmark is not part of the package
from searchbench import compare_neighbors, faiss_version, main
from synthetic import make_mnist_like


def test_make_mnist_like_shapes_and_values():
    X_train, y_train, X_test, y_test = make_mnist_like(300, 60, seed=3)
    assert X_train.shape == (300, 784) and X_test.shape == (60, 784), "28x28 images as rows"
    assert y_train.shape == (300,) and y_test.shape == (60,)
    assert X_train.dtype == X_test.dtype == np.float32
    assert y_train.dtype == y_test.dtype == np.int64
    for X in (X_train, X_test):
        np.testing.assert_array_equal(X, np.rint(X), err_msg="grey levels must be integers")
        assert X.min() == 0 and 200 < X.max() <= 255, "grey levels span 0..255"
        assert 0.3 < (X == 0).mean() < 0.9, "mostly background, as in MNIST"
    assert len(np.unique(X_train, axis=0)) == 300, "every sample is distorted differently"
    assert set(np.unique(y_train)) == set(range(10))
    assert set(np.unique(y_test)) <= set(range(10))


def test_make_mnist_like_is_seeded():
    first = make_mnist_like(200, 40, seed=1)
    again = make_mnist_like(200, 40, seed=1)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b, err_msg="the same seed must give the same arrays")
    other = make_mnist_like(200, 40, seed=2)
    assert not np.array_equal(first[0], other[0]), "another seed, other images"
    more_train = make_mnist_like(500, 40, seed=1)
    np.testing.assert_array_equal(more_train[2], first[2], err_msg="test set depends on n_train")
    np.testing.assert_array_equal(more_train[3], first[3])


def test_compare_neighbors_leaves_ties_out():
    ref_dist = np.array([[1.0, 2.0, 2.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    ref_ind = np.array([[0, 1, 2], [0, 1, 2], [0, 1, 2], [0, 1, 2]])
    dist = ref_dist.copy()
    ind = np.array([[0, 2, 1], [0, 1, 2], [0, 1, 7], [0, 1, 8]])
    dist[3, 2] = 3.5  # row 3 is wrong: a farther point; row 2 is another point at 3.0
    checks = compare_neighbors(dist, ind, ref_dist, ref_ind)
    assert checks["n_tied"] == 2, "row 0 (order of a tie) and row 2 (tie at the k-th place)"
    assert checks["agree"] == 0.5, "of rows 1 and 3, only row 1 agrees"
    assert checks["max_rel_dist_diff"] == pytest.approx(0.5 / 3.0)


def test_quick_run_writes_json(tmp_path, capsys):
    path = tmp_path / "b.json"
    argv = [
        "--quick",
        "--data",
        "synthetic",
        "--n-train",
        "2000",
        "--n-test",
        "200",
        "--query-subset",
        "3=50",
    ]
    assert main([*argv, "--json", str(path)]) == 0
    record = json.loads(path.read_text())
    assert record["config"]["queries"] == {"1": 200, "2": 200, "3": 50}
    rows = record["rows"]
    searches = {row["p"]: row for row in rows if row["method"] == "knnlab"}
    assert set(searches) == {"1", "2", "3"}, "one knnlab search row per p"
    assert searches["3"]["n_queries"] == 50, "the query subset is used"
    for row in rows:
        assert row["seconds"] > 0 and min(row["seconds_all"]) == row["seconds"]
        assert row["peak_mib"] >= 0
    for p, row in searches.items():
        checks = row["checks"]
        assert checks["agree"] == 1.0, f"knnlab differs from scikit-learn at p={p}"
        assert checks["n_untied"] > 0.9 * row["n_queries"]
        assert checks["max_rel_dist_diff"] < 1e-12
        assert row["speedup_vs_sklearn"] > 0
    (classifier,) = [row for row in rows if row["method"] == "knnlab-clf"]
    assert classifier["checks"]["agree"] == 1.0, "same predictions as scikit-learn"
    faiss_rows = [row for row in rows if row["method"] == "faiss"]
    assert len(faiss_rows) == (faiss_version() is not None)
    for row in faiss_rows:
        assert row["checks"]["max_rel_dist_diff"] < 1e-5, "float32, but exact search"
    table = capsys.readouterr().out
    assert "knnlab kneighbors" in table and "vs sklearn" in table and "peak MiB" in table


def test_the_latency_benchmark_times_every_contender_one_call_at_a_time(tmp_path, capsys):
    import bench_latency

    out = tmp_path / "latency.json"
    assert bench_latency.main(["--quick", "--no-serve", "--calls", "20", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    methods = {(row["method"], row["rows_per_call"]) for row in rows}
    assert {("knnlab fitted kneighbors", 1), ("knnlab fitted predict", 1)} <= methods
    assert {("knnlab fitted kneighbors", 16), ("sklearn brute kneighbors", 16)} <= methods
    for row in rows:
        assert 0 < row["p50_ms"] <= row["p99_ms"], row
        if row["method"].startswith(("knnlab fitted kneighbors", "sklearn")):
            assert row["agree"] == 1.0, f"{row['method']}: exact searches give the same rows"
    if faiss_version() is not None:
        flat = [row for row in rows if row["method"] == "faiss IndexFlatL2"]
        assert len(flat) == 2 and all(row["agree"] >= 0.9 for row in flat)
    printed = capsys.readouterr().out
    assert "p50 ms" in printed and "knnlab fitted kneighbors" in printed
