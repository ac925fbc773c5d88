"""The search backends behind knnlab.search: the approximate ones (hnsw, ivf: faiss, the
``ann`` extra) against a Python-loop exact search, their determinism and stored state, and
the exact ones (brute, kd_tree, ball_tree) against scikit-learn.

Recall is measured on scikit-learn's digits (integer pixels: many exactly tied distances),
so a found row counts as a true neighbour when it is within the k-th exact distance.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.neighbors import NearestNeighbors

from knnlab import KNNClassifier, search
from knnlab.algorithms import EXACT_ALGORITHMS
from knnlab.backends._faiss import IVF_WIDTH
from knnlab.pipeline.io.params import ParamsError, parse_params

from ..conftest import REPO_ROOT
from ..support.blocked_imports import without_package

APPROXIMATE = ("hnsw", "ivf")


def loop_distance(a, b) -> float:
    """Euclidean distance, a plain Python loop over the features."""
    return math.sqrt(sum((float(x) - float(y)) ** 2 for x, y in zip(a, b, strict=True)))


def loop_distances(X_train, query) -> list[float]:
    """The distance of ``query`` to every training row, in row order."""
    return [loop_distance(query, row) for row in X_train.tolist()]


def recall_at_k(found, exact) -> float:
    """The share of found neighbours that are true ones. found : (n_queries, k) indices;
    exact : per query, its loop distances to every training row. A found row is a true
    neighbour when its distance is at most the query's k-th smallest (ties either way)."""
    k = found.shape[1]
    hits = 0
    for row, distances in zip(found.tolist(), exact, strict=True):
        assert len(set(row)) == k, f"a neighbour is returned twice: {row}"
        kth = sorted(distances)[k - 1]
        hits += sum(distances[j] <= kth for j in row)
    return hits / found.size


@pytest.fixture(scope="module")
def digits():
    """Every 18th digit is a query (100), the other 1697 rows the training set."""
    X = load_digits().data.astype(np.float64)
    is_query = np.arange(len(X)) % 18 == 0
    X_train, X_query = X[~is_query], X[is_query]
    return X_train, X_query, [loop_distances(X_train, q) for q in X_query.tolist()]


@pytest.fixture(scope="module")
def few_digits():
    """700 training rows and 100 queries, for what is not recall."""
    X = load_digits().data.astype(np.float64)
    return X[100:800], X[:100]


def digits_recall(digits, algorithm: str, options: dict, k: int) -> float:
    X_train, X_query, exact = digits
    index = search.build_index(algorithm, X_train, p=2, options=options, seed=0)
    _, found = index.kneighbors(X_query, k)
    return recall_at_k(found, exact)


# --- recall ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("algorithm", "least"), [("hnsw", 0.99), ("ivf", 0.95)])
def test_default_options_reach_high_recall_on_digits(digits, algorithm, least):
    # Measured: hnsw 1.0, ivf 0.99-1.0 over several splits and seeds.
    recall = digits_recall(digits, algorithm, {}, k=10)
    assert recall >= least, f"{algorithm} defaults: recall@10 {recall:.3f} < {least}"


@pytest.mark.parametrize(
    ("algorithm", "options", "k"),
    [
        # ef_search acts through max(k, ef_search): k = 1 leaves a greedy walk of one.
        ("hnsw", {"ef_search": 1}, 1),  # measured 0.67-0.80
        ("ivf", {"nprobe": 1}, 10),  # measured 0.75-0.84
    ],
)
def test_less_search_effort_lowers_recall(digits, algorithm, options, k):
    default = digits_recall(digits, algorithm, {}, k)
    recall = digits_recall(digits, algorithm, options, k)
    assert 0.5 < recall < 0.95, f"{algorithm} {options}: recall@{k} {recall:.3f}"
    assert recall < default, f"{options} must lose recall ({recall:.3f} vs {default:.3f})"


# --- answers ----------------------------------------------------------------------------------


def _data(rng, kind: str, n: int, d: int) -> np.ndarray:
    if kind == "continuous":
        return rng.normal(size=(n, d))
    return rng.integers(0, 3, size=(n, d)).astype(float)  # grid: many tied distances


@pytest.mark.parametrize("algorithm", APPROXIMATE)
@pytest.mark.parametrize("kind", ["continuous", "grid"])
@pytest.mark.parametrize("self_query", [False, True])
def test_distances_are_exact_and_sorted_by_distance_then_index(rng, algorithm, kind, self_query):
    X_train = _data(rng, kind, 300, 5)
    X_query = None if self_query else _data(rng, kind, 40, 5)
    index = search.build_index(
        algorithm, X_train, p=2, options={"nlist": 8} if algorithm == "ivf" else {}
    )
    dist, ind = index.kneighbors(X_query, 12)
    queries = X_train if self_query else X_query
    assert dist.shape == ind.shape == (len(queries), 12), "one row per query, k columns"
    assert dist.dtype == np.float64, f"distances are float64, got {dist.dtype}"
    for q, (d_row, i_row) in enumerate(zip(dist.tolist(), ind.tolist(), strict=True)):
        assert len(set(i_row)) == 12 and min(i_row) >= 0, f"query {q}: bad rows {i_row}"
        expected = [loop_distance(queries[q], X_train[j]) for j in i_row]
        np.testing.assert_allclose(
            d_row, expected, rtol=1e-12, atol=0, err_msg=f"query {q}: not the exact distances"
        )
        pairs = list(zip(d_row, i_row, strict=True))
        assert pairs == sorted(pairs), f"query {q}: not sorted by (distance, index): {pairs}"


@pytest.mark.parametrize("algorithm", APPROXIMATE)
@pytest.mark.parametrize("k", [1, 5, IVF_WIDTH + 8])  # also beyond the candidate width
def test_self_query_never_returns_the_query_row(rng, algorithm, k):
    X = rng.normal(size=(200, 4))
    X[10:16] = X[0]  # duplicates: faiss may rank another copy before the row itself
    _, ind = search.build_index(algorithm, X, p=2).kneighbors(None, k)
    own = np.flatnonzero((ind == np.arange(len(X))[:, None]).any(axis=1))
    assert not own.size, f"rows {own.tolist()} are returned as their own neighbour"
    assert all(len(set(row)) == k for row in ind.tolist()), "a neighbour is returned twice"
    copies = {0, *range(10, 16)}
    for q in sorted(copies):  # at 200 rows the defaults find a copy (distance 0)
        assert ind[q, 0] in copies - {q}, f"row {q}: nearest {ind[q, 0]}, not another copy"


def test_ivf_queries_in_cells_too_small_for_k_still_get_k_neighbours(rng):
    # One cell per row and one cell scanned: faiss alone finds one or two rows a query.
    X_train = rng.normal(size=(150, 3))
    X_query = rng.normal(size=(30, 3))
    index = search.build_index("ivf", X_train, p=2, options={"nlist": 150, "nprobe": 1})
    assert index.index.nlist == 150, "the index must really have a cell per row"
    for queries in (X_query, None):
        for k in (10, IVF_WIDTH + 5):
            dist, ind = index.kneighbors(queries, k)
            assert (ind >= 0).all() and (ind < 150).all(), f"k={k}: invalid rows returned"
            assert all(len(set(row)) == k for row in ind.tolist()), f"k={k}: a row twice"
            rows = X_train if queries is None else queries
            for q in (0, len(rows) - 1):
                expected = [loop_distance(rows[q], X_train[j]) for j in ind[q]]
                np.testing.assert_allclose(dist[q], expected, rtol=1e-12, atol=0)


# --- determinism, and the grid search's prefix promise -----------------------------------


@pytest.mark.parametrize("algorithm", APPROXIMATE)
def test_same_seed_same_index_and_answers_other_seed_other_index(few_digits, algorithm):
    X_train, X_query = few_digits
    first = search.build_index(algorithm, X_train, p=2, seed=7)
    again = search.build_index(algorithm, X_train, p=2, seed=7)
    other = search.build_index(algorithm, X_train, p=2, seed=8)
    assert first.state().dtype == np.uint8, "a state is bytes (uint8)"
    assert np.array_equal(first.state(), again.state()), "same seed: the same bytes"
    for queries in (X_query, None):
        for got, expected in zip(
            again.kneighbors(queries, 9), first.kneighbors(queries, 9), strict=True
        ):
            np.testing.assert_array_equal(got, expected, err_msg="same index, same answers")
    assert not np.array_equal(first.state(), other.state()), (
        f"{algorithm}: another seed must draw another index (HNSW levels, k-means start)"
    )


@pytest.mark.parametrize("algorithm", APPROXIMATE)
def test_the_build_is_the_same_on_one_or_two_threads(few_digits, algorithm):
    X_train = few_digits[0]
    one = search.build_index(algorithm, X_train, p=2, seed=3, n_jobs=1).state()
    two = search.build_index(algorithm, X_train, p=2, seed=3, n_jobs=2).state()
    assert np.array_equal(one, two), f"{algorithm}: n_jobs=2 built other bytes than n_jobs=1"


@pytest.mark.parametrize(
    ("algorithm", "options", "width"),
    [("hnsw", {"ef_search": 16}, 16), ("ivf", {"nprobe": 2}, IVF_WIDTH)],
)
def test_every_k_up_to_the_width_reranks_a_prefix_of_the_same_candidates(
    few_digits, algorithm, options, width
):
    """What _faiss.py's docstring promises: for every k up to ``width`` faiss is asked the
    same question, and a search at k re-ranks its first k candidates. So the rows found at
    k' <= k are among those found at k, and ``kneighbors_each`` (the grid search's one
    faiss call for all its k) answers each k exactly as a search at k alone. (Not promised,
    and not true: that the first k' columns at k equal a search at k'. The re-rank of k
    candidates can move a float32-misordered one into the first k'.)"""
    X_train, X_query = few_digits
    index = search.build_index(algorithm, X_train, p=2, options=options)
    ks = [1, 3, width // 2, width]
    for queries in (X_query, None):
        each = index.kneighbors_each(queries, ks)
        alone = {k: index.kneighbors(queries, k) for k in ks}
        for k in ks:
            for got, expected in zip(each[k], alone[k], strict=True):
                np.testing.assert_array_equal(got, expected, err_msg=f"k={k}: differs alone")
        for small, large in itertools.pairwise(ks):
            outside = [
                q
                for q, (a, b) in enumerate(zip(alone[small][1], alone[large][1], strict=True))
                if not set(a) <= set(b)
            ]
            assert not outside, f"queries {outside}: rows found at k={small} not at k={large}"


# --- stored state --------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", APPROXIMATE)
def test_a_stored_state_loads_the_same_index(few_digits, algorithm):
    X_train, X_query = few_digits
    built = search.build_index(algorithm, X_train, p=2, seed=5)
    assert built.nbytes == built.state().size > 0, "nbytes: the serialized index's size"
    loaded = search.build_index(algorithm, X_train, p=2, state=built.state().copy())
    assert np.array_equal(loaded.state(), built.state()), "loading keeps the bytes"
    for queries in (X_query, None):
        for got, expected in zip(
            loaded.kneighbors(queries, 7), built.kneighbors(queries, 7), strict=True
        ):
            np.testing.assert_array_equal(got, expected, err_msg="a loaded index answers alike")
    y = np.arange(len(X_train)) % 3
    model = KNNClassifier(n_neighbors=7, algorithm=algorithm, random_state=5).fit(X_train, y)
    again = KNNClassifier(n_neighbors=7, algorithm=algorithm, random_state=99).fit(
        X_train, y, index_state=model.index_state()
    )
    np.testing.assert_array_equal(
        again.kneighbors(X_query)[1], model.kneighbors(X_query)[1], err_msg="through fit"
    )


def _fails_with_one_line(call, *fragments: str) -> str:
    with pytest.raises(ValueError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message, f"one line expected, got {message!r}"
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from {message!r}"
    return message


def test_a_state_of_another_index_or_training_set_is_refused(rng):
    X = rng.normal(size=(120, 6))
    hnsw, ivf = (search.build_index(a, X, p=2).state() for a in APPROXIMATE)

    def load(algorithm, X_load, state, **options):
        return lambda: search.build_index(algorithm, X_load, p=2, options=options, state=state)

    _fails_with_one_line(load("hnsw", X, ivf), "stored hnsw index", "IndexIVFFlat")
    _fails_with_one_line(load("ivf", X, hnsw), "stored ivf index", "IndexHNSWFlat")
    _fails_with_one_line(load("hnsw", X[1:], hnsw), "120 rows", "119")
    _fails_with_one_line(load("ivf", X[:, 1:], ivf), "x 6", "x 5")
    _fails_with_one_line(load("hnsw", X, hnsw, M=8), "M = 8")
    _fails_with_one_line(load("ivf", X, ivf, nlist=3), "cells", "not 3")


# Run in a child process: a corrupted index that crashed faiss must fail this test, not
# the whole session; the address-space limit makes an absurd length fail to allocate on any
# machine (never an attempt to fill a terabyte).
_CORRUPTED = """
import json, resource, sys
import faiss, numpy as np
from knnlab import search

resource.setrlimit(resource.RLIMIT_AS, (8 * 2**30, resource.RLIM_INFINITY))
X = np.random.default_rng(0).normal(size=(120, 6))
states = {a: search.build_index(a, X, p=2).state() for a in ("hnsw", "ivf")}

def header_length(state, value):  # the first vector's length, after the 37-byte header
    state = state.copy()
    state[37:45] = np.frombuffer(np.uint64(value).tobytes(), np.uint8)
    return state

def untrained(state):  # Index::is_trained, byte 32 of the header
    state = state.copy()
    state[32] = 0
    return state

def foreign_ids():  # a well-formed IVF index of 120 rows whose ids are not 0..119
    quantizer = faiss.IndexFlatL2(6)
    index = faiss.IndexIVFFlat(quantizer, 6, 11)
    rows = np.ascontiguousarray(X - X.mean(axis=0), dtype=np.float32)
    index.train(rows)
    index.add_with_ids(rows, np.arange(120, dtype=np.int64) + 1000)
    return faiss.serialize_index(index)

cases = {}
for a, state in states.items():
    cases[a + ": truncated"] = (a, state[: len(state) // 2])
    cases[a + ": empty"] = (a, state[:0])
    cases[a + ": zeros"] = (a, np.zeros(200, np.uint8))
    cases[a + ": huge length"] = (a, header_length(state, 2**37 - 1))
    cases[a + ": untrained"] = (a, untrained(state))
cases["ivf: foreign ids"] = ("ivf", foreign_ids())
outcome = {}
for name, (a, state) in cases.items():
    try:
        options = {"nlist": 11} if "ids" in name else {}
        index = search.build_index(a, X, p=2, options=options, state=state)
        index.kneighbors(X[:5], 3)
        index.kneighbors(None, 3)
        outcome[name] = ["loaded", ""]
    except Exception as error:
        outcome[name] = [type(error).__name__, str(error)]
print(json.dumps(outcome))
"""


def test_corrupted_state_bytes_give_one_clear_value_error():
    done = subprocess.run(
        [sys.executable, "-c", _CORRUPTED],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert done.returncode == 0, f"the loads crashed (rc {done.returncode}): {done.stderr[-2000:]}"
    outcome = json.loads(done.stdout)
    wrong = {
        name: result
        for name, result in outcome.items()
        if result[0] != "ValueError" or "\n" in result[1] or "stored" not in result[1]
    }
    assert not wrong, f"expected one ValueError line naming the stored index: {wrong}"


# --- options -------------------------------------------------------------------------------

BAD_OPTIONS = [
    # (model settings, key, value as shown, what is allowed)
    (
        {"algorithm": "hnsw", "index": {"nprobe": 4}},
        "index.nprobe",
        "4",
        "M, ef_construction, ef_search",
    ),
    ({"algorithm": "ivf", "index": {"M": 16}}, "index.M", "16", "nlist, nprobe"),
    ({"algorithm": "hnsw", "index": {"bogus": 3}}, "index.bogus", "3", "M, ef_construction"),
    ({"algorithm": "hnsw", "index": {"M": 1}}, "index.M", "1", "an integer >= 2"),
    ({"algorithm": "hnsw", "index": {"ef_search": 0}}, "index.ef_search", "0", "an integer >= 1"),
    ({"algorithm": "ivf", "index": {"nlist": 0}}, "index.nlist", "0", "an integer >= 1"),
    ({"algorithm": "ivf", "index": {"nprobe": "x"}}, "index.nprobe", "'x'", "an integer >= 1"),
    ({"algorithm": "ivf", "index": {"nprobe": True}}, "index.nprobe", "True", "an integer >= 1"),
    ({"algorithm": "hnsw", "p": 1}, "p", "1", "set p: 2, or an exact algorithm"),
    ({"algorithm": "ivf", "p": 3}, "p", "3", "set p: 2, or an exact algorithm"),
    ({"algorithm": "brute", "index": {"M": 16}}, "index.M", "16", "none (it builds no index)"),
    ({"algorithm": "kd_tree", "index": {"nprobe": 2}}, "index.nprobe", "2", "none"),
]


@pytest.mark.parametrize(("model", "key", "value", "allowed"), BAD_OPTIONS)
def test_a_bad_option_names_key_value_and_what_is_allowed(model, key, value, allowed):
    X, y = np.arange(40.0).reshape(20, 2), np.arange(20) % 2
    _fails_with_one_line(lambda: KNNClassifier(**model).fit(X, y), f"{key} = {value}", allowed)
    with pytest.raises(ParamsError) as caught:
        parse_params({"model": model})
    message = str(caught.value)
    assert message.startswith(f"params.yaml: model.{key} = {value} "), f"got {message!r}"
    assert allowed in message and "\n" not in message, f"got {message!r}"


# A child Python in which faiss is not installed, as far as imports can tell: the path
# finder skips it, so importlib.util.find_spec("faiss") is None and `import faiss` fails.
_WITHOUT_FAISS = without_package("faiss")


def _run_without_faiss(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_FAISS + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        timeout=120,
    )


def test_without_faiss_an_approximate_algorithm_says_to_install_the_ann_extra():
    done = _run_without_faiss(
        """
        import importlib.util, json
        import numpy as np
        from knnlab import KNNClassifier
        from knnlab.pipeline.io.params import parse_params
        try:
            import faiss
            blocked = False
        except ImportError:
            blocked = importlib.util.find_spec("faiss") is None
        messages = {}
        try:
            parse_params({"model": {"algorithm": "hnsw"}})
        except Exception as error:
            messages["params"] = [type(error).__name__, str(error)]
        try:
            KNNClassifier(algorithm="ivf").fit(np.eye(3), [0, 1, 1])
        except Exception as error:
            messages["fit"] = [type(error).__name__, str(error)]
        exact = KNNClassifier(algorithm="kd_tree", n_neighbors=1).fit(np.eye(3), [0, 1, 1])
        messages["exact"] = exact.predict(np.eye(3)).tolist()
        print(json.dumps({"blocked": blocked, **messages}))
        """
    )
    assert done.returncode == 0, f"the child failed: {done.stderr[-2000:]}"
    result = json.loads(done.stdout)
    assert result["blocked"], "the child must not be able to import or find faiss"
    expected = {
        "params": ("ParamsError", "model.algorithm = 'hnsw'"),
        "fit": ("MissingBackendError", "algorithm = 'ivf'"),
    }
    for where, (kind, setting) in expected.items():
        error, message = result[where]
        assert error == kind, f"{where}: {kind} expected, got {error}: {message}"
        for fragment in (setting, "faiss", "'ann' extra", "pip install 'knnlab[ann]'"):
            assert fragment in message, f"{where}: {fragment!r} missing from {message!r}"
        assert "\n" not in message, f"{where}: one line expected: {message!r}"
    assert result["params"][1].startswith("params.yaml: model.algorithm"), result["params"]
    assert result["exact"] == [0, 1, 1], "exact search works without faiss"


# --- the exact backends --------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", EXACT_ALGORITHMS)
@pytest.mark.parametrize("p", [1, 2, 3])
def test_exact_backends_match_scikit_learn(rng, algorithm, p):
    X_train = rng.normal(size=(400, 6))  # continuous: no tied distances
    X_query = rng.normal(size=(60, 6))
    index = search.build_index(algorithm, X_train, p=p)
    assert index.state() is None, "an exact backend keeps no state beyond the training set"
    nn = NearestNeighbors(n_neighbors=8, algorithm="brute", p=p).fit(X_train)
    for queries in (X_query, None):
        dist, ind = index.kneighbors(queries, 8)
        sk_dist, sk_ind = nn.kneighbors(queries)
        np.testing.assert_array_equal(ind, sk_ind, err_msg=f"{algorithm} p={p}: other rows")
        np.testing.assert_allclose(dist, sk_dist, rtol=1e-10, err_msg=f"{algorithm} p={p}")
