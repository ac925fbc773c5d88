"""Search and tuning on a real Dask cluster (two worker processes on this machine) against
the single-machine functions and the loop reference: bit-identical neighbours, distances,
CV tables and picks; a worker killed mid-task; a scheduler that is not there."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

from knnlab import distributed
from knnlab.estimators import KNNClassifier, KNNRegressor
from knnlab.model_selection import grid_search_cv
from knnlab.pipeline.analysis import tuning
from knnlab.pipeline.io import files
from knnlab.pipeline.io.params import Params
from knnlab.search import kneighbors

from ..conftest import REPO_ROOT
from ..support import reference

distributed_lib = pytest.importorskip("distributed")

P_VALUES = [1, 1.5, 2, 3, np.inf]
TIME_COLUMNS = ["mean_fit_time", "std_fit_time", "mean_score_time", "std_score_time"]


@pytest.fixture(scope="module")
def cluster():
    """Two worker processes of one thread each (nannies restart a killed one); ports chosen
    by the OS, so parallel test sessions do not collide."""
    with distributed_lib.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        scheduler_port=0,
        dashboard_address=None,
    ) as local:
        yield local


@pytest.fixture
def client(cluster):
    with distributed_lib.Client(cluster, set_as_default=False) as dask_client:
        dask_client.wait_for_workers(2, timeout=60)  # after a kill, the restarted worker
        yield dask_client


def assert_identical(found, expected, what: str) -> None:
    (dist, ind), (ref_dist, ref_ind) = found, expected
    np.testing.assert_array_equal(ind, ref_ind, err_msg=f"{what}: neighbour indices differ")
    np.testing.assert_array_equal(dist, ref_dist, err_msg=f"{what}: distances not bit-identical")
    assert dist.dtype == ref_dist.dtype and ind.dtype == ref_ind.dtype, f"{what}: dtypes"


# --- the merge, on arrays ----------------------------------------------------------------


def test_merge_breaks_ties_across_shards_by_global_index():
    # Given two shards' lists with equal distances on both sides
    left = (np.array([[0.0, 1.0, 2.0]]), np.array([[4, 1, 3]]))
    right = (np.array([[0.0, 1.0]]), np.array([[5, 7]]))
    # When they are merged
    dist, ind = distributed.merge_neighbours([right, left], 4)
    # Then equal distances go to the lower global index, whichever shard holds it
    assert ind.tolist() == [[4, 5, 1, 7]], "distance first, then lower global index"
    assert dist.tolist() == [[0.0, 0.0, 1.0, 1.0]]


def test_merge_drops_only_the_query_itself():
    part = (np.array([[0.0, 0.0, 0.5]]), np.array([[2, 3, 9]]))
    dist, ind = distributed.merge_neighbours([part], 2, own_rows=np.array([2]))
    assert dist.tolist() == [[0.0, 0.5]]
    assert ind.tolist() == [[3, 9]], "the duplicate at distance 0 stays, the query goes"


def test_shards_are_contiguous_and_never_empty():
    assert distributed.shard_bounds(10, 3).tolist() == [0, 3, 7, 10]
    assert distributed.shard_bounds(2, 8).tolist() == [0, 1, 2], "no more shards than rows"


GIB = 2**30


def test_a_training_set_that_fits_a_worker_is_replicated_and_the_queries_split():
    # 60,000 x 784 float64 (376 MB) on two 12 GiB workers of one thread
    plan = distributed.plan_search(376 * 2**20, 60_000, 10_000, 2, [12 * GIB, 12 * GIB])
    assert plan == distributed.SearchPlan(n_shards=1, n_query_blocks=2)
    assert plan.replicated
    # more queries than a block holds: more blocks, still one shard
    assert distributed.plan_search(GIB, 10**6, 40_000, 2, [12 * GIB]).n_query_blocks == 3


def test_a_training_set_beyond_a_worker_is_sharded_within_its_memory():
    # 63 GB (10 M x 784) on 8 workers of 16 GiB: a quarter is 4 GiB, so 15 shards, not 8
    plan = distributed.plan_search(63 * 10**9, 10**7, 10_000, 8, [16 * GIB] * 8)
    assert plan == distributed.SearchPlan(n_shards=15, n_query_blocks=1)
    # just over the budget: one shard per thread at least
    assert distributed.plan_search(3 * GIB + 1, 10**6, 100, 2, [12 * GIB] * 2).n_shards == 2
    # the smallest worker decides; no limit anywhere means REPLICA_MAX_BYTES
    assert distributed.plan_search(GIB, 10**6, 100, 2, [12 * GIB, 2 * GIB]).n_shards == 2
    assert distributed.plan_search(GIB, 10**6, 100, 2, [0, 0]).replicated
    assert not distributed.plan_search(5 * GIB, 10**6, 100, 2, []).replicated


def test_a_search_that_does_not_prune_is_sharded_even_when_it_fits():
    # a scan of every pair: the shards split its set-up, replicas would repeat it
    plan = distributed.plan_search(GIB, 60_000, 2_000, 2, [12 * GIB] * 2, replicate=False)
    assert plan == distributed.SearchPlan(n_shards=2, n_query_blocks=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_shards": 0}, "n_shards must be a positive integer or None (plan it), got 0"),
        ({"n_shards": 2.5}, "n_shards must be a positive integer or None (plan it), got 2.5"),
        ({"query_block": -1}, "query_block must be a positive integer, got -1"),
        ({"query_block": True}, "query_block must be a positive integer, got True"),
    ],
)
def test_a_bad_shard_count_or_block_size_is_named(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        distributed.plan_search(10**4, 50, 23, 2, [], **kwargs)


def test_an_explicit_shard_count_wins_and_nothing_outnumbers_the_rows():
    plan = distributed.plan_search(10**4, 50, 23, 2, [12 * GIB], n_shards=6, query_block=10)
    assert plan == distributed.SearchPlan(n_shards=6, n_query_blocks=3)
    assert distributed.plan_search(10**4, 3, 2, 8, [], n_shards=5) == distributed.SearchPlan(3, 2)


# --- the sharded search ------------------------------------------------------------------


@pytest.mark.parametrize("p", P_VALUES)
@pytest.mark.parametrize("self_query", [False, True])
def test_sharded_search_is_bit_identical_with_ties(client, rng, p, self_query):
    # Given a small integer grid (many equal distances) with duplicated rows
    X_train = rng.integers(0, 3, size=(50, 3)).astype(float)
    X_train[20:26] = X_train[3]
    X_query = None if self_query else rng.integers(0, 3, size=(23, 3)).astype(float)
    # When 6 shards of 8 or 9 rows (fewer than k + 1) search it on the cluster
    found = distributed.sharded_kneighbors(
        client, X_train, X_query, 9, p=p, n_shards=6, query_block=10
    )
    # Then every index and every distance bit is the single machine's, and the indices are
    # the loop reference's
    assert_identical(found, kneighbors(X_train, X_query, 9, p=p), f"p={p}")
    np.testing.assert_array_equal(found[1], reference.kneighbors(X_train, X_query, 9, p)[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("p", [1, 2, 2.5, np.inf])
def test_sharded_search_is_bit_identical_on_continuous_data(client, rng, dtype, p):
    X_train = rng.normal(size=(300, 12)).astype(dtype)
    X_query = rng.normal(size=(40, 12)).astype(dtype)
    found = kneighbors(X_train, X_query, 7, p=p, scheduler=client)
    assert_identical(found, kneighbors(X_train, X_query, 7, p=p), f"{dtype.__name__} p={p}")
    np.testing.assert_array_equal(found[1], reference.kneighbors(X_train, X_query, 7, p)[1])


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [
        ({"p": 2, "prefilter": True}, "low-rank pre-filter"),
        ({"p": 2, "prefilter": False}, "plain p = 2"),
        ({"p": 1000}, "exact float64 scan (large p)"),
        ({"p": 3, "working_memory": 1}, "smallest query chunks"),
    ],
)
def test_every_search_path_is_bit_identical(client, rng, kwargs, what):
    # Image-like rows: most variance in a few directions, so the pre-filter has work to do
    basis = rng.normal(size=(6, 300))
    X = rng.normal(size=(700, 6)) @ basis + 0.01 * rng.normal(size=(700, 300))
    X_train, X_query = X[:600], X[600:]
    expected = kneighbors(X_train, X_query, 5, **kwargs)
    # the default plan (the pre-filter's search replicated, the others sharded), then both
    # layouts whatever the path
    assert_identical(kneighbors(X_train, X_query, 5, scheduler=client, **kwargs), expected, what)
    for n_shards in (1, 2):
        found = distributed.sharded_kneighbors(
            client, X_train, X_query, 5, n_shards=n_shards, **kwargs
        )
        assert_identical(found, expected, f"{what}, {n_shards} shard(s)")


def test_huge_magnitudes_take_the_same_exact_path(client, rng):
    X_train = rng.normal(size=(80, 4)) * 1e200  # beyond float32: the float64 scan
    X_query = rng.normal(size=(10, 4)) * 1e200
    for p in (1, 2, 7):
        found = kneighbors(X_train, X_query, 4, p=p, scheduler=client)
        assert_identical(found, kneighbors(X_train, X_query, 4, p=p), f"1e200 p={p}")


def test_an_address_works_as_a_client_and_k_may_take_every_other_row(cluster, client, rng):
    X = rng.integers(0, 4, size=(30, 2)).astype(float)
    expected = kneighbors(X, None, 29, p=1)  # every other row, ties everywhere
    found = kneighbors(X, None, 29, p=1, scheduler=cluster.scheduler_address)
    assert_identical(found, expected, "by address, k = n - 1")
    assert_identical(
        distributed.sharded_kneighbors(client, X, None, 29, p=1, n_shards=7), expected, "7 shards"
    )


@pytest.fixture
def scatters(client, monkeypatch) -> list[tuple[int, bool]]:
    """The client's scatter calls, as they happen: (number of inputs, to every worker?)."""
    calls = []
    original = client.scatter
    monkeypatch.setattr(
        client,
        "scatter",
        lambda data, **kw: calls.append((len(data), kw["broadcast"])) or original(data, **kw),
    )
    return calls


def test_data_is_scattered_once_per_search(client, rng, scatters):
    X = rng.normal(size=(200, 5))
    distributed.sharded_kneighbors(client, X, X[:50], 3, n_shards=4, query_block=20)
    # one call for the 3 query blocks (to every worker), one for the 4 shards (one each)
    assert scatters == [(3, True), (4, False)], f"got {scatters}"


def test_a_replicated_search_sends_the_training_set_to_every_worker_once(client, rng, scatters):
    basis = rng.normal(size=(6, 300))
    X = rng.normal(size=(900, 6)) @ basis + 0.01 * rng.normal(size=(900, 300))
    timings: dict = {}
    found = distributed.sharded_kneighbors(
        client, X[:800], X[800:], 5, prefilter=True, timings=timings
    )
    # the default plan on two one-thread workers: one shard to both, a query block each
    assert (timings["n_shards"], timings["n_query_blocks"]) == (1, 2)
    assert scatters == [(1, True), (2, False)], f"got {scatters}"
    assert_identical(found, kneighbors(X[:800], X[800:], 5, prefilter=True), "replicated")
    # and the training rows as queries: each block skips its own rows
    found = distributed.sharded_kneighbors(client, X, None, 4, prefilter=True, n_shards=1)
    assert_identical(found, kneighbors(X, None, 4, prefilter=True), "replicated, self-query")
    # a search that does not prune is sharded: one shard per worker
    timings = {}
    found = distributed.sharded_kneighbors(client, X[:800], X[800:], 5, p=1.5, timings=timings)
    assert (timings["n_shards"], timings["n_query_blocks"]) == (2, 1)
    assert_identical(found, kneighbors(X[:800], X[800:], 5, p=1.5), "sharded, p = 1.5")


def test_estimators_on_a_cluster_predict_the_same(client, rng):
    X = rng.normal(size=(250, 6))
    y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    Q = rng.normal(size=(60, 6))
    local = KNNClassifier(6, p=3, weights="distance", algorithm="brute").fit(X, y)
    regressor = KNNRegressor(4, p=1, algorithm="brute").fit(X, X[:, 2])
    expected = local.predict_proba(Q), local.predict(Q), regressor.predict(Q), local.kneighbors()
    with distributed.on_cluster(client):
        found = local.predict_proba(Q), local.predict(Q), regressor.predict(Q), local.kneighbors()
    for a, b, what in zip(found, expected, ("proba", "predict", "regress", "self"), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=what)


# --- the grid search -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X[:500], y[:500]


@pytest.mark.parametrize(
    ("grid", "scale"),
    [
        ({"n_neighbors": [1, 4, 9], "p": [1, 2, 3], "weights": ["uniform", "distance"]}, "none"),
        ({"n_neighbors": [3, 5], "p": [1.5, 2], "algorithm": ["brute", "kd_tree"]}, "standard"),
    ],
)
def test_grid_search_table_and_picks_are_identical(client, digits, grid, scale):
    X, y = digits
    local = grid_search_cv(X, y, grid, cv=3, seed=0, scale=scale)
    remote = grid_search_cv(X, y, grid, cv=3, seed=0, scale=scale, scheduler=client)
    pd.testing.assert_frame_equal(
        remote.cv_results.drop(columns=TIME_COLUMNS),
        local.cv_results.drop(columns=TIME_COLUMNS),
        check_exact=True,
    )
    assert remote.best_params == local.best_params and remote.picks == local.picks
    assert len(remote.search_timings) == len(local.search_timings), "one row per search"


def test_tune_writes_the_same_cv_table_bytes(cluster, digits, tmp_path, monkeypatch):
    # Given the pipeline's tune on the default params, once here and once on the cluster
    # by its address in DASK_SCHEDULER_ADDRESS
    X, y = digits
    params = dataclasses.replace(Params(), tune=dataclasses.replace(Params().tune, cv=3))
    local, local_summary = tuning.tune(params, X, y)
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.scheduler_address)
    remote, remote_summary = tuning.tune(params, X, y)
    # Then reports/tune/cv_results.csv and best_params.json are byte for byte the same
    runs = (("local", local, local_summary), ("dask", remote, remote_summary))
    for name, result, summary in runs:
        files.write_csv(tmp_path / f"{name}.csv", tuning.score_table(result))
        summary.write(tmp_path / f"{name}.json")
    assert (tmp_path / "dask.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()
    assert (tmp_path / "dask.json").read_bytes() == (tmp_path / "local.json").read_bytes()


# --- failures ------------------------------------------------------------------------------


def kill_a_busy_worker(client, killed: list) -> None:
    """Wait until a worker is running a task, then SIGKILL its process (its nanny starts a
    new one)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        busy = [address for address, keys in client.processing().items() if keys]
        if busy:
            pid = client.run(os.getpid, workers=[busy[0]])[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed.append(busy[0])
            return
        time.sleep(0.02)


@pytest.mark.slow
def test_worker_killed_mid_grid_search_is_retried_with_the_same_result(client, rng):
    # Given a grid of about a second, 10 (fold, p) tasks on the two workers
    X = rng.normal(size=(5000, 40))
    y = rng.integers(0, 3, size=5000)
    grid = {"n_neighbors": [1, 5, 11], "p": [1, 3], "weights": ["uniform", "distance"]}
    expected = grid_search_cv(X, y, grid, cv=5, seed=0)
    # When a worker process is killed while it runs one
    killed: list = []
    killer = threading.Thread(target=kill_a_busy_worker, args=(client, killed))
    killer.start()
    found = grid_search_cv(X, y, grid, cv=5, seed=0, scheduler=client)
    killer.join()
    # Then Dask reruns its tasks and the table is the same
    assert killed, "no worker was busy: the kill did not happen"
    pd.testing.assert_frame_equal(
        found.cv_results.drop(columns=TIME_COLUMNS),
        expected.cv_results.drop(columns=TIME_COLUMNS),
        check_exact=True,
    )
    assert found.best_params == expected.best_params


@pytest.mark.slow
@pytest.mark.parametrize("n_shards", [2, None], ids=["sharded", "replicated"])
def test_worker_killed_mid_search_loses_a_shard_and_the_result_is_the_same(client, rng, n_shards):
    # Given a search whose shards (or, replicated, query blocks) live on one worker each
    X_train = rng.normal(size=(40000, 30))
    X_query = rng.normal(size=(3000, 30))
    expected = kneighbors(X_train, X_query, 10, p=3)
    # When the worker holding a shard is killed mid-task
    killed: list = []
    killer = threading.Thread(target=kill_a_busy_worker, args=(client, killed))
    killer.start()
    found = distributed.sharded_kneighbors(client, X_train, X_query, 10, p=3, n_shards=n_shards)
    killer.join()
    # Then the lost block is scattered again, its task rerun, and the answer is identical
    assert killed, "no worker was busy: the kill did not happen"
    assert_identical(found, expected, "after a killed worker")


@pytest.mark.slow
def test_tune_with_an_unreachable_scheduler_fails_naming_it(tmp_path):
    # Given a project with a split (digits) and DASK_SCHEDULER_ADDRESS naming no scheduler
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    env = {**os.environ, "DASK_SCHEDULER_ADDRESS": "tcp://127.0.0.1:1"}
    for stage in ("fetch", "split"):
        subprocess.run([sys.executable, "-m", "knnlab", stage], cwd=tmp_path, env=env, check=True)
    # When tune runs
    done = subprocess.run(
        [sys.executable, "-m", "knnlab", "tune"], cwd=tmp_path, env=env, capture_output=True
    )
    # Then it stops (connect's wait is bounded by CONNECT_TIMEOUT), exit code 2, one line
    # naming the address, no output
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert stderr.startswith(
        "knnlab tune: error: Dask scheduler tcp://127.0.0.1:1 cannot be reached ("
    ), stderr
    assert stderr.count("\n") == 1, f"one line: {stderr!r}"
    assert not (tmp_path / "reports").exists(), "nothing written"


def test_unreachable_scheduler_message_is_one_line():
    with pytest.raises(distributed.SchedulerUnreachableError) as caught:
        distributed.connect("tcp://127.0.0.1:1", timeout=0.5)
    assert "\n" not in str(caught.value) and "tcp://127.0.0.1:1" in str(caught.value)


# --- without a scheduler -------------------------------------------------------------------


def test_without_a_scheduler_dask_is_never_imported():
    # A whole tune (grid search), estimators and kneighbors in a fresh interpreter
    code = (
        "import sys, numpy as np\n"
        "from sklearn.datasets import load_digits\n"
        "from knnlab.pipeline.analysis import tuning\n"
        "from knnlab.pipeline.io.params import Params\n"
        "from knnlab import KNNClassifier, kneighbors\n"
        "X, y = load_digits(return_X_y=True)\n"
        "tuning.tune(Params(), X[:300], y[:300])\n"
        "KNNClassifier(3, algorithm='brute').fit(X, y).predict(X[:5])\n"
        "kneighbors(X, None, 2)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed'))\n"
        "assert not loaded, loaded\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_compact_sends_the_narrowest_exact_dtype():
    pixels = np.array([[0.0, 255.0], [3.0, 17.0]])
    assert distributed.compact(pixels).dtype == np.uint8, "pixels: one byte each"
    assert distributed.compact(pixels - 300).dtype == np.int16
    assert distributed.compact(np.asfortranarray(pixels)).dtype == np.uint8, "any memory order"
    assert distributed.compact(np.array([[-0.0, 1.0]])).dtype == np.float32, "keeps -0.0"
    assert distributed.compact(np.array([[0.1, 1.0]])).dtype == np.float64, "0.1 is no float32"
    assert distributed.compact(np.array([[1e300]])).dtype == np.float64
    for X in (pixels, pixels - 300, np.array([[-0.0, 0.5]]), np.array([[0.1, 2.0**-1070]])):
        back = np.asarray(distributed.compact(X), dtype=np.float64)
        assert np.array_equal(back.view(np.int64), X.view(np.int64)), f"bits of {X}"


def test_a_scheduler_without_workers_fails_in_seconds(rng, monkeypatch):
    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT", 0.5)
    with (
        distributed_lib.LocalCluster(
            n_workers=0, processes=False, scheduler_port=0, dashboard_address=":0"
        ) as empty,
        distributed_lib.Client(empty, set_as_default=False) as client,
        pytest.raises(distributed.SchedulerUnreachableError, match="has no workers"),
    ):
        kneighbors(rng.normal(size=(20, 2)), None, 3, scheduler=client)


def test_a_task_decides_the_pre_filter_on_the_whole_search(rng, monkeypatch):
    # Given a shard of 1,000 image-like rows, too small alone for the automatic pre-filter
    from knnlab import neighbors

    basis = rng.normal(size=(6, 300))
    X = rng.normal(size=(1100, 6)) @ basis + 0.01 * rng.normal(size=(1100, 300))
    shard, queries = X[:1000], X[1000:]
    decided = []
    original = neighbors._low_rank
    monkeypatch.setattr(
        neighbors, "_low_rank", lambda *a, **kw: decided.append(1) or original(*a, **kw)
    )
    alone = distributed.search_shard(shard, 0, queries, 5, 2.0, None, None)
    assert decided == [], "alone, the shard is below the pre-filter's size"
    # When it is one task of a 60,000 x 10,000 search
    part = distributed.search_shard(shard, 0, queries, 5, 2.0, None, None, (60_000, 10_000))
    # Then it pre-filters as that search would on one machine, with the same answer
    assert decided == [1]
    assert_identical(part, alone, "pre-filtered task")
