"""A training set prepared once (neighbors.PreparedSearch, a fitted brute-force model) and
searched one query at a time: the same bits as the one-off search and the loop reference,
whatever the order of calls, their sizes, k, the threads or the magnitudes."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import knnlab.neighbors as neighbors
from knnlab.estimators import KNNClassifier
from knnlab.neighbors import PreparedSearch, kneighbors

from ..support import reference

P_VALUES = [1, 1.5, 2, 3, np.inf]


def _low_rank_data(rng, *sizes, d=256, rank=6, noise=0.05):
    """Points near one rank-`rank` subspace of R^d, wide and many enough (4,096 training
    rows, 256 features) for a prepared search to build the pre-filter by itself."""
    basis = rng.normal(size=(rank, d))
    return [rng.normal(size=(n, rank)) @ basis + noise * rng.normal(size=(n, d)) for n in sizes]


def _spy_low_rank_counts(monkeypatch) -> list:
    """Record the candidate counts of every pre-filtered chunk (the real function runs)."""
    counts = []
    real = neighbors._low_rank_chunk

    def recording(*args):
        result = real(*args)
        counts.append(result[-1].copy())
        return result

    monkeypatch.setattr(neighbors, "_low_rank_chunk", recording)
    return counts


@pytest.mark.parametrize("p", P_VALUES)
def test_one_query_at_a_time_matches_the_loop_reference(rng, p):
    X_train = rng.normal(size=(60, 5))
    X_query = rng.normal(size=(12, 5))
    search = PreparedSearch(X_train, p)
    ref_dist, ref_ind = reference.kneighbors(X_train, X_query, 4, p)
    for row in range(len(X_query)):
        dist, ind = search.kneighbors(X_query[row : row + 1], 4)
        np.testing.assert_array_equal(ind[0], ref_ind[row], err_msg=f"query {row}, p={p}")
        np.testing.assert_allclose(dist[0], ref_dist[row], rtol=1e-12, atol=0)
    one_off = kneighbors(X_train, X_query, 4, p=p)
    batch = search.kneighbors(X_query, 4)
    for got, want in zip(batch, one_off, strict=True):
        np.testing.assert_array_equal(got, want, err_msg="the batch equals the one-off bits")


@pytest.mark.parametrize("p", P_VALUES)
def test_ties_and_self_queries_match_the_loop_reference(rng, p):
    X = rng.integers(0, 3, size=(40, 3)).astype(float)  # a small grid: many exact ties
    X[20:25] = X[0]
    search = PreparedSearch(X, p)
    ref_dist, ref_ind = reference.kneighbors(X, None, 6, p)
    dist, ind = search.kneighbors(None, 6)
    np.testing.assert_array_equal(ind, ref_ind, err_msg="ties go to the lower index")
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12, atol=1e-12)
    queries = X[:7] + 0.0
    ref_dist, ref_ind = reference.kneighbors(X, queries, 6, p)
    for row in range(7):
        dist, ind = search.kneighbors(queries[row : row + 1], 6)
        np.testing.assert_array_equal(ind[0], ref_ind[row])


def test_a_kept_search_prepares_the_prefilter_once_and_answers_every_call_size(rng, monkeypatch):
    X_train, X_query = _low_rank_data(rng, 4200, 300)
    counts = _spy_low_rank_counts(monkeypatch)
    search = PreparedSearch(X_train)
    assert search.nbytes == 0, "nothing is prepared before the first search"
    plain = {k: kneighbors(X_train, X_query, k, prefilter=False) for k in (5, 40)}
    first = search.kneighbors(X_query[:1], 5)
    prepared = search._prepared
    assert prepared is not None and prepared.low is not None, (
        "a kept search on wide low-rank data prepares the pre-filter for single queries"
    )
    assert search.nbytes >= X_train.size * 4, "the float32 copy is kept"
    assert counts, "a single query went through the pre-filter"
    np.testing.assert_array_equal(first[1], plain[5][1][:1])
    # One row, 16 rows, all rows, k above the pre-filter's limit, self-queries: any order.
    for rows, k in [(slice(1, 2), 5), (slice(0, 16), 5), (slice(0, 300), 5), (slice(3, 4), 40)]:
        dist, ind = search.kneighbors(X_query[rows], k)
        np.testing.assert_array_equal(ind, plain[k][1][rows], err_msg=f"rows {rows}, k={k}")
        np.testing.assert_array_equal(dist, plain[k][0][rows], err_msg="the same bits")
    for row in range(20, 40):
        dist, ind = search.kneighbors(X_query[row : row + 1], 5)
        np.testing.assert_array_equal(ind[0], plain[5][1][row])
        np.testing.assert_array_equal(dist[0], plain[5][0][row])
    self_dist, self_ind = search.kneighbors(None, 5)
    want = kneighbors(X_train, None, 5, prefilter=False)
    np.testing.assert_array_equal(self_ind, want[1])
    np.testing.assert_array_equal(self_dist, want[0])
    assert search._prepared is prepared, "prepared once, not per call"


def test_prepare_does_the_work_before_the_first_query(rng):
    X_train, X_query = _low_rank_data(rng, 4200, 5)
    search = PreparedSearch(X_train).prepare()
    prepared = search._prepared
    assert prepared is not None and prepared.low is not None
    search.kneighbors(X_query, 3)
    assert search._prepared is prepared


def test_threads_searching_one_prepared_set_get_the_sequential_answers(rng):
    X_train, X_query = _low_rank_data(rng, 4200, 64)
    want = kneighbors(X_train, X_query, 5, prefilter=False)
    search = PreparedSearch(X_train)  # unprepared: the threads race to prepare it
    results: dict[int, tuple] = {}
    failures = []

    def serve(rows: range) -> None:
        try:
            for row in rows:
                results[row] = search.kneighbors(X_query[row : row + 1], 5)
        except Exception as error:  # reported below, with the thread's rows
            failures.append((rows, error))

    threads = [threading.Thread(target=serve, args=(range(i, 64, 4),)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures
    for row in range(64):
        np.testing.assert_array_equal(results[row][1][0], want[1][row], err_msg=f"row {row}")
        np.testing.assert_array_equal(results[row][0][0], want[0][row])


def test_queries_far_beyond_the_training_magnitudes_take_the_exact_path(rng):
    X_train, _ = _low_rank_data(rng, 4200, 1)
    search = PreparedSearch(X_train).prepare()
    far = np.full((2, X_train.shape[1]), 1e150)  # squares beyond float32's range
    far[1, 0] = -1e150
    dist, ind = search.kneighbors(far, 3)
    want_dist, want_ind = kneighbors(X_train, far, 3, prefilter=False)
    np.testing.assert_array_equal(ind, want_ind)
    np.testing.assert_array_equal(dist, want_dist)
    near = search.kneighbors(X_train[:2] + 0.01, 3)  # and ordinary queries after them
    np.testing.assert_array_equal(near[1], kneighbors(X_train, X_train[:2] + 0.01, 3)[1])


@pytest.mark.parametrize(
    "args, kwargs, error, message",
    [
        ((np.array([1.0, 2.0]),), {}, ValueError, r"X_train must be 2-D"),
        ((np.array([[1.0], [np.nan]]),), {}, ValueError, r"X_train contains NaN"),
        ((np.eye(3), 0.5), {}, ValueError, r"\bp\b.*0\.5"),
        ((np.eye(3),), {"prefilter": "yes"}, ValueError, r"prefilter must be True, False or"),
        ((np.eye(3),), {"working_memory": 0}, ValueError, r"working_memory must be a positive"),
        ((np.eye(3),), {"n_jobs": 0}, ValueError, r"n_jobs must be a positive integer"),
    ],
)
def test_bad_training_sets_and_options_are_refused_at_once(args, kwargs, error, message):
    with pytest.raises(error, match=message):
        PreparedSearch(*args, **kwargs)


def test_bad_queries_and_k_are_refused_per_call(rng):
    search = PreparedSearch(rng.normal(size=(6, 3)))
    with pytest.raises(ValueError, match=r"X_query must have shape \(n_queries, 3\)"):
        search.kneighbors(np.zeros((1, 4)), 2)
    with pytest.raises(ValueError, match=r"X_query contains NaN"):
        search.kneighbors(np.full((1, 3), np.nan), 2)
    with pytest.raises(ValueError, match=r"n_neighbors"):
        search.kneighbors(np.zeros((1, 3)), 7)
    with pytest.raises(ValueError, match=r"n_neighbors"):
        search.kneighbors(None, 6)  # a point is not its own neighbour: 5 at most


def test_a_fitted_model_prepares_once_and_answers_single_rows_as_a_batch(rng):
    X_train, X_query = _low_rank_data(rng, 4200, 40)
    y = (X_train[:, 0] > 0).astype(int)
    model = KNNClassifier(5, algorithm="brute").fit(X_train, y)
    batch_dist, batch_ind = model.kneighbors(X_query)
    prepared = model._index._search._prepared
    for row in range(0, 40, 3):
        dist, ind = model.kneighbors(X_query[row : row + 1])
        np.testing.assert_array_equal(ind[0], batch_ind[row])
        np.testing.assert_array_equal(dist[0], batch_dist[row])
    assert model._index._search._prepared is prepared, "fit's preparation is reused"
    np.testing.assert_array_equal(batch_ind, kneighbors(X_train, X_query, 5)[1])


def test_a_search_first_prepared_for_a_batch_adds_the_prefilter_for_single_requests(
    rng, monkeypatch
):
    X_train, X_query = _low_rank_data(rng, 4200, 300)
    counts = _spy_low_rank_counts(monkeypatch)
    search = PreparedSearch(X_train)
    batch_dist, batch_ind = search.kneighbors(X_query, 5)  # 300 queries: too few pairs
    assert search._prepared.low is None and not counts, "a small batch does not pay the set-up"
    for row in range(5):
        dist, ind = search.kneighbors(X_query[row : row + 1], 5)
        np.testing.assert_array_equal(ind[0], batch_ind[row])
        np.testing.assert_array_equal(dist[0], batch_dist[row])
    assert search._prepared.low is not None and len(counts) == 5, "then single requests do"
    np.testing.assert_array_equal(batch_ind, kneighbors(X_train, X_query, 5)[1])


def test_a_fitted_model_and_a_prepared_search_pickle_and_answer_the_same(rng):
    import copy
    import pickle

    X_train, X_query = _low_rank_data(rng, 4200, 10)
    y = (X_train[:, 0] > 0).astype(int)
    model = KNNClassifier(5, algorithm="brute").fit(X_train, y)
    want = model.kneighbors(X_query[:1])  # prepared (with its lock) before pickling
    for again in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        got = again.kneighbors(X_query[:1])
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    search = PreparedSearch(X_train).prepare()
    restored = pickle.loads(pickle.dumps(search))
    assert restored._prepared is None, "what was prepared is derived, not stored"
    np.testing.assert_array_equal(
        restored.kneighbors(X_query, 3)[1], search.kneighbors(X_query, 3)[1]
    )
