"""The brute-force search against a Python-loop reference and scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from knnlab.neighbors import kneighbors

from ..conftest import REPO_ROOT
from ..support import reference

P_VALUES = [1, 1.5, 2, 3, np.inf]


@pytest.mark.parametrize("p", P_VALUES)
@pytest.mark.parametrize("k", [1, 4, 29])
def test_matches_loop_reference_on_continuous_data(rng, p, k):
    X_train = rng.normal(size=(30, 5))
    X_query = rng.normal(size=(12, 5))
    dist, ind = kneighbors(X_train, X_query, k, p=p)
    ref_dist, ref_ind = reference.kneighbors(X_train, X_query, k, p)
    assert dist.shape == ind.shape == (12, k), "one row per query, one column per neighbour"
    np.testing.assert_array_equal(ind, ref_ind, err_msg=f"neighbour order differs at p={p}")
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12, atol=0, err_msg="distances differ")


@pytest.mark.parametrize("p", P_VALUES)
def test_ties_go_to_the_lower_training_index(rng, p):
    # Small integer grid: many exactly equal distances, and duplicated training rows.
    X_train = rng.integers(0, 3, size=(40, 3)).astype(float)
    X_train[20:25] = X_train[0]
    X_query = rng.integers(0, 3, size=(15, 3)).astype(float)
    dist, ind = kneighbors(X_train, X_query, 7, p=p)
    ref_dist, ref_ind = reference.kneighbors(X_train, X_query, 7, p)
    np.testing.assert_array_equal(ind, ref_ind, err_msg="ties must resolve to lower index")
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("p", P_VALUES)
def test_self_query_excludes_only_the_point_itself(rng, p):
    X = rng.normal(size=(25, 2))
    X[5] = X[6]  # a duplicate: each is the other's neighbour at distance 0
    dist, ind = kneighbors(X, None, 3, p=p)
    ref_dist, ref_ind = reference.kneighbors(X, None, 3, p)
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12, atol=1e-12)
    assert not (ind == np.arange(25)[:, None]).any(), "a point must not be its own neighbour"
    assert ind[5, 0] == 6 and dist[5, 0] == 0, "the duplicate is the nearest, at distance 0"
    assert ind[6, 0] == 5 and dist[6, 0] == 0, "and the other way round"


@pytest.mark.parametrize("p", P_VALUES)
def test_self_query_with_many_ties_matches_reference(rng, p):
    X = rng.integers(0, 3, size=(30, 2)).astype(float)  # 9 grid points: heavy duplication
    dist, ind = kneighbors(X, None, 5, p=p)
    ref_dist, ref_ind = reference.kneighbors(X, None, 5, p)
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("p", [1, 2, 3])
@pytest.mark.parametrize("working_memory", [1, 4096, 10**9])
def test_chunk_size_does_not_change_results(rng, p, working_memory):
    X_train = rng.normal(size=(200, 8))
    X_query = rng.normal(size=(57, 8))
    expected = kneighbors(X_train, X_query, 5, p=p, working_memory=10**9)
    got = kneighbors(X_train, X_query, 5, p=p, working_memory=working_memory)
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_array_equal(got[0], expected[0], err_msg="bitwise equal across chunks")


@pytest.mark.parametrize("p", [1, 2, 3])
def test_matches_scikit_learn_brute_force(rng, p):
    X_train = rng.normal(size=(500, 20))
    X_query = rng.normal(size=(100, 20))
    dist, ind = kneighbors(X_train, X_query, 10, p=p)
    nn = NearestNeighbors(n_neighbors=10, algorithm="brute", p=p).fit(X_train)
    sk_dist, sk_ind = nn.kneighbors(X_query)
    np.testing.assert_array_equal(ind, sk_ind)
    np.testing.assert_allclose(dist, sk_dist, rtol=1e-9)


def test_euclidean_is_exact_far_from_the_origin(rng):
    """The matrix-multiply formula cancels catastrophically for data offset by 1e6; the
    exact re-rank must still find the true neighbours and distances."""
    X_train = rng.normal(size=(300, 4)) + 1e6
    X_query = rng.normal(size=(40, 4)) + 1e6
    dist, ind = kneighbors(X_train, X_query, 5, p=2)
    ref_dist, ref_ind = reference.kneighbors(X_train, X_query, 5, 2)
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-9)


def test_k_equal_to_n_train_returns_every_point(rng):
    X = rng.normal(size=(9, 2))
    _, ind = kneighbors(X, X[:3], 9)
    assert sorted(ind[0].tolist()) == list(range(9)), "k = n_train lists every training point"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_neighbors": 0}, "Expected n_neighbors >= 1, but n_neighbors = 0"),
        ({"n_neighbors": 11}, "n_samples_fit = 10, n_neighbors = 11"),
        ({"n_neighbors": 3, "p": 0.5}, "p must be >= 1"),
    ],
)
def test_bad_arguments_say_what_is_allowed(rng, kwargs, message):
    X = rng.normal(size=(10, 3))
    with pytest.raises(ValueError, match=message):
        kneighbors(X, X, **kwargs)


def test_nan_features_are_refused(rng):
    X = rng.normal(size=(10, 3))
    Q = X.copy()
    Q[2, 1] = np.nan
    with pytest.raises(ValueError, match="X_query contains NaN"):
        kneighbors(X, Q, 3)


def test_wrong_feature_count_is_refused(rng):
    with pytest.raises(ValueError, match=r"shape \(n_queries, 3\)"):
        kneighbors(rng.normal(size=(10, 3)), rng.normal(size=(4, 2)), 3)


@pytest.mark.parametrize("p", P_VALUES)
def test_all_duplicates_fall_back_to_the_exact_scan(p):
    """Every training point at the same distance: the candidate buffer cannot hold the whole
    tie, so the exact fallback must give the k lowest indices."""
    X_train = np.ones((40, 3))
    dist, ind = kneighbors(X_train, np.zeros((2, 3)), 5, p=p)
    np.testing.assert_array_equal(ind, [[0, 1, 2, 3, 4]] * 2)
    expected = 3.0 if p == 1 else 1.0 if np.isinf(p) else 3.0 ** (1 / p)
    np.testing.assert_allclose(dist, expected, rtol=1e-12)


@pytest.mark.parametrize("p", P_VALUES)
def test_ties_wider_than_the_buffer_are_collected_in_full(monkeypatch, p):
    """A constant training set takes the float64 scan from the start (no float32 stage: its
    rounding bound would be 0); with one distinct point the float32 stage runs, and the
    39-way tie overflows the buffer: every tied point is collected by a second pass (from the
    product at p = 2, by a float32 scan elsewhere), and the re-rank gives the lower indices
    without scanning every point in float64."""
    from knnlab import _kernels

    fallbacks = []
    real = _kernels.exact_rerank

    def rerank(*args):
        fallbacks.append(real(*args))
        return fallbacks[-1]

    monkeypatch.setattr(_kernels, "exact_rerank", rerank)
    X_train = np.ones((40, 3))
    X_train[0] = 5.0
    dist, ind = kneighbors(X_train, np.zeros((2, 3)), 5, p=p)
    assert sum(fallbacks) == 0, "the tie fits the wide buffer: no full float64 scan"
    np.testing.assert_array_equal(ind, [[1, 2, 3, 4, 5]] * 2)
    expected = 3.0 if p == 1 else 1.0 if np.isinf(p) else 3.0 ** (1 / p)
    np.testing.assert_allclose(dist, expected, rtol=1e-12)


@pytest.mark.parametrize("p", [1, 2, 3])
def test_larger_problem_matches_scikit_learn_across_chunks_and_threads(rng, p):
    X_train = rng.normal(size=(3000, 40)).astype(np.float32).astype(float)
    X_query = rng.normal(size=(700, 40))
    sk_dist, sk_ind = (
        NearestNeighbors(n_neighbors=8, algorithm="brute", p=p).fit(X_train).kneighbors(X_query)
    )
    for working_memory, n_jobs in ((None, None), (200_000, 1), (3_000_000, 2)):
        dist, ind = kneighbors(
            X_train, X_query, 8, p=p, working_memory=working_memory, n_jobs=n_jobs
        )
        np.testing.assert_array_equal(ind, sk_ind, err_msg=f"{working_memory=}, {n_jobs=}")
        np.testing.assert_allclose(dist, sk_dist, rtol=1e-9)


def test_constant_features_do_not_change_the_answer(rng):
    X_train = rng.normal(size=(200, 6))
    X_train[:, [0, 3]] = 7.0  # constant over the training set (skipped in the float32 pass)
    X_query = rng.normal(size=(30, 6))
    for p in (1, 2, 3):
        dist, ind = kneighbors(X_train, X_query, 4, p=p)
        ref_dist, ref_ind = reference.kneighbors(X_train, X_query, 4, p)
        np.testing.assert_array_equal(ind, ref_ind)
        np.testing.assert_allclose(dist, ref_dist, rtol=1e-12)


def test_bad_n_jobs_is_refused(rng):
    X = rng.normal(size=(10, 2))
    with pytest.raises(ValueError, match="n_jobs must be a positive integer"):
        kneighbors(X, X, 2, n_jobs=0)


@pytest.mark.parametrize(
    ("integer_data", "working_memory"), [(False, None), (True, None), (True, 20_000)]
)
def test_cross_fold_search_equals_one_search_per_fold(rng, integer_data, working_memory):
    from sklearn.model_selection import StratifiedKFold

    from knnlab.neighbors import cross_fold_kneighbors

    X = rng.integers(0, 4, (300, 6)).astype(float) if integer_data else rng.normal(size=(300, 6))
    y = rng.integers(0, 3, 300)
    folds = list(StratifiedKFold(4, shuffle=True, random_state=0).split(X, y))
    shared = cross_fold_kneighbors(X, folds, 7, working_memory=working_memory)
    assert shared is not None and len(shared) == 4
    for (train, valid), (dist, ind) in zip(folds, shared, strict=True):
        ref_dist, ref_ind = kneighbors(X[train], X[valid], 7)
        np.testing.assert_array_equal(ind, ref_ind, err_msg="same neighbours, same ties")
        np.testing.assert_array_equal(dist, ref_dist)


def test_cross_fold_search_declines_what_is_not_a_partition(rng):
    from knnlab.neighbors import cross_fold_kneighbors

    X = rng.normal(size=(20, 3))
    overlapping = [(np.arange(10, 20), np.arange(0, 12)), (np.arange(0, 10), np.arange(10, 20))]
    assert cross_fold_kneighbors(X, overlapping, 3) is None


# --------------------------------------------------------------------------- low-rank pre-filter


def _low_rank_data(rng, *sizes, d=64, rank=6, noise=0.05):
    """Arrays of points near one rank-`rank` subspace of R^d: what the pre-filter is for."""
    basis = rng.normal(size=(rank, d))
    return [rng.normal(size=(n, rank)) @ basis + noise * rng.normal(size=(n, d)) for n in sizes]


def _spy_low_rank_counts(monkeypatch):
    """Record the candidate counts of every pre-filtered chunk (the real function runs)."""
    import knnlab.neighbors as neighbors

    counts = []
    real = neighbors._low_rank_chunk

    def recording(*args):
        result = real(*args)
        counts.append(result[-1].copy())  # (distances, indices, counts)
        return result

    monkeypatch.setattr(neighbors, "_low_rank_chunk", recording)
    return counts


@pytest.mark.parametrize("self_query", [False, True])
def test_prefilter_gives_the_plain_search_bit_for_bit(rng, monkeypatch, self_query):
    X_train, X_query = _low_rank_data(rng, 3000, 400)
    X_query = None if self_query else X_query
    counts = _spy_low_rank_counts(monkeypatch)
    dist, ind = kneighbors(X_train, X_query, 6, prefilter=True)
    plain_dist, plain_ind = kneighbors(X_train, X_query, 6, prefilter=False)
    np.testing.assert_array_equal(ind, plain_ind)
    np.testing.assert_array_equal(dist, plain_dist)
    examined = np.concatenate(counts)
    assert len(examined) == (3000 if self_query else 400), "every query went through it"
    assert (examined > 0).all() and examined.mean() < 0.05 * 3000, (
        f"the bound should rule out most points on near-low-rank data, "
        f"but {examined.mean():.0f} of 3000 were examined on average"
    )
    sk = NearestNeighbors(n_neighbors=6, algorithm="brute").fit(X_train)
    sk_dist, sk_ind = sk.kneighbors(X_query)
    np.testing.assert_array_equal(ind, sk_ind)
    np.testing.assert_allclose(dist, sk_dist, rtol=1e-9)


def test_prefilter_on_mnist_shaped_data_matches_scikit_learn(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))  # the data lives beside them
    from synthetic import make_mnist_like

    X_train, _, X_query, _ = make_mnist_like(5000, 600, seed=1)
    counts = _spy_low_rank_counts(monkeypatch)
    dist, ind = kneighbors(X_train, X_query, 5, prefilter=True)
    assert np.concatenate(counts).mean() < 0.02 * 5000
    sk_dist, sk_ind = (
        NearestNeighbors(n_neighbors=5, algorithm="brute")
        .fit(X_train.astype(float))
        .kneighbors(X_query.astype(float))
    )
    # Integer grey levels tie now and then: compare the queries whose k-th and (k+1)-th
    # scikit-learn distances differ.
    sk6_dist, _ = (
        NearestNeighbors(n_neighbors=6, algorithm="brute")
        .fit(X_train.astype(float))
        .kneighbors(X_query.astype(float))
    )
    untied = ~np.isclose(sk6_dist[:, 4], sk6_dist[:, 5], rtol=1e-12) & ~(
        np.isclose(sk_dist[:, 1:], sk_dist[:, :-1], rtol=1e-12).any(axis=1)
    )
    assert untied.mean() > 0.9
    np.testing.assert_array_equal(ind[untied], sk_ind[untied])
    np.testing.assert_allclose(dist, sk_dist, rtol=1e-9)


def test_prefilter_with_ties_duplicates_and_an_offset(rng):
    # Integer grid points far from the origin, each one duplicated: many exact ties.
    base = rng.integers(0, 3, size=(600, 12)).astype(float) + 1e6
    X_train = np.vstack([base, base[:200]])
    X_query = np.vstack([base[:30], rng.integers(0, 3, size=(30, 12)) + 1e6])
    for X_q in (X_query, None):
        dist, ind = kneighbors(X_train, X_q, 9, prefilter=True)
        plain = kneighbors(X_train, X_q, 9, prefilter=False)
        np.testing.assert_array_equal(ind, plain[1])
        np.testing.assert_array_equal(dist, plain[0])
    ref_dist, ref_ind = reference.kneighbors(X_train, X_query[:12], 9, 2)
    dist, ind = kneighbors(X_train, X_query[:12], 9, prefilter=True)
    np.testing.assert_array_equal(ind, ref_ind, err_msg="ties to the lower index")
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12)


def test_prefilter_hands_hopeless_queries_to_the_plain_search(rng, monkeypatch):
    """Isotropic noise in 160 dimensions: no low-rank bound rules anything out, every query
    overflows its candidate cap, and the plain search must still answer it exactly."""
    X = _wide_noise(rng, 9060, 160)
    X_train, X_query = X[60:], X[:60]
    counts = _spy_low_rank_counts(monkeypatch)
    dist, ind = kneighbors(X_train, X_query, 5, prefilter=True)
    assert (np.concatenate(counts) < 0).mean() > 0.9, "nearly every query should overflow"
    plain = kneighbors(X_train, X_query, 5, prefilter=False)
    np.testing.assert_array_equal(ind, plain[1])
    np.testing.assert_array_equal(dist, plain[0])


def _wide_noise(rng, n, d, clusters=False, offset=50.0):
    """Isotropic noise in d dimensions; with clusters, also two far-apart groups along a few
    features: the top components then explain most of the variance, yet within a group
    they say nothing about who is near whom."""
    X = rng.normal(size=(n, d))
    if clusters:
        X[:, :8] += offset * rng.integers(0, 2, size=(n, 1))
    return X


def test_automatic_prefilter_gives_up_when_it_rules_out_too_little(rng, monkeypatch):
    import knnlab.neighbors as neighbors

    monkeypatch.setattr(neighbors, "_LOW_RANK_MIN_PAIRS", 0)  # a smaller problem will do
    n_train, d = neighbors._LOW_RANK_MIN_TRAIN, neighbors._LOW_RANK_MIN_FEATURES
    X = _wide_noise(rng, n_train + 4 * neighbors._TASK_ROWS_LOW_RANK, d, clusters=True)
    X_train, X_query = X[:n_train], X[n_train:]
    counts = _spy_low_rank_counts(monkeypatch)
    dist, ind = kneighbors(X_train, X_query, 5, n_jobs=1)  # one worker: tasks in order
    assert len(counts) == 1, f"only the first task should try the pre-filter, {len(counts)} did"
    assert len(counts[0]) == neighbors._PILOT_ROWS, "and it is a small one"
    plain = kneighbors(X_train, X_query, 5, prefilter=False)
    np.testing.assert_array_equal(ind, plain[1])
    np.testing.assert_array_equal(dist, plain[0])


def test_automatic_prefilter_skips_data_without_dominant_directions(rng, monkeypatch):
    import knnlab.neighbors as neighbors

    monkeypatch.setattr(neighbors, "_LOW_RANK_MIN_PAIRS", 0)
    X = _wide_noise(rng, neighbors._LOW_RANK_MIN_TRAIN + 300, neighbors._LOW_RANK_MIN_FEATURES)
    counts = _spy_low_rank_counts(monkeypatch)
    dist, ind = kneighbors(X[300:], X[:300], 5)
    assert counts == [], "48 of 256 noise directions explain too little to try"
    forced = kneighbors(X[300:], X[:300], 5, prefilter=True)
    assert counts, "forced, it runs (and is still exact)"
    np.testing.assert_array_equal(ind, forced[1])
    np.testing.assert_array_equal(dist, forced[0])


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ({}, True),  # MNIST: 60,000 x 784 training points, 10,000 queries, k = 5
        ({"n_train": 8000, "n_queries": 2000}, False),  # one CV fold: set-up > saving
        ({"n_features": 64}, False),  # digits: the full multiply is already short
        ({"kind": 1}, False),  # no matrix multiply at p = 1
        ({"k": 50}, False),
        ({"n_queries": 1}, False),
        # 2,000 queries: deciding (about 0.13 s) would cost more than 5 % of the search
        ({"n_queries": 2000}, False),
        ({"prefilter": False}, False),
        ({"prefilter": True, "n_features": 3, "n_train": 10}, True),
    ],
)
def test_when_the_prefilter_is_used(shape, expected):
    from knnlab.neighbors import prefilter_applies

    args = {"prefilter": None, "kind": 2, "n_train": 60000, "n_features": 784}
    args |= {"n_queries": 10000, "k": 5} | shape
    assert prefilter_applies(**args) is expected


def test_bad_prefilter_value_is_refused(rng):
    X = rng.normal(size=(10, 3))
    with pytest.raises(ValueError, match=r"prefilter must be True, False or None .*'yes'"):
        kneighbors(X, X, 2, prefilter="yes")


def test_near_ties_wider_than_the_buffer_are_collected_not_scanned(rng, monkeypatch):
    """Two far-apart clusters of 400-dimensional noise: centring on the mean between them
    makes the float32 bound wide, so many candidates tie within it. Those queries collect
    every candidate from the product in hand (gram_candidates_under) instead of the exact
    re-rank computing all n distances, and the answer stays exact."""
    from knnlab import _kernels

    # Offset 100: 49-70 of the 100 queries overflow their buffers for every seed tried (60);
    # at 50 no query did for most seeds.
    X = _wide_noise(rng, 3100, 400, clusters=True, offset=100.0)
    X_train, X_query = X[100:], X[:100]
    collected, full_scans = [], []
    real_collect, real_rerank = _kernels.gram_candidates_under, _kernels.exact_rerank

    def collect(*args):
        collected.append(len(args[2]))
        return real_collect(*args)

    def rerank(*args):
        full_scans.append(real_rerank(*args))
        return full_scans[-1]

    monkeypatch.setattr(_kernels, "gram_candidates_under", collect)
    monkeypatch.setattr(_kernels, "exact_rerank", rerank)
    dist, ind = kneighbors(X_train, X_query, 5, prefilter=False)
    assert sum(collected) > 0, "the data should overflow some buffers"
    assert sum(full_scans) == 0, "no query should need the all-points exact scan"
    sk_dist, sk_ind = (
        NearestNeighbors(n_neighbors=5, algorithm="brute").fit(X_train).kneighbors(X_query)
    )
    np.testing.assert_array_equal(ind, sk_ind)
    np.testing.assert_allclose(dist, sk_dist, rtol=1e-9)
    ref_dist, ref_ind = reference.kneighbors(X_train, X_query[:5], 5, 2)
    np.testing.assert_array_equal(ind[:5], ref_ind)
    np.testing.assert_allclose(dist[:5], ref_dist, rtol=1e-12)


def test_prefilter_is_exact_far_from_the_origin(rng):
    """Offset by 1e8, the projection must be taken after centring: otherwise its float64
    rounding, relative to |x|, would exceed the bound the pre-filter allows for."""
    X_train, X_query = _low_rank_data(rng, 2000, 40)
    X_train, X_query = X_train + 1e8, X_query + 1e8
    dist, ind = kneighbors(X_train, X_query, 5, prefilter=True)
    ref_dist, ref_ind = reference.kneighbors(X_train, X_query[:8], 5, 2)
    np.testing.assert_array_equal(ind[:8], ref_ind)
    np.testing.assert_allclose(dist[:8], ref_dist, rtol=1e-9)
    plain = kneighbors(X_train, X_query, 5, prefilter=False)
    np.testing.assert_array_equal(ind, plain[1])
    np.testing.assert_array_equal(dist, plain[0])


def test_prefilter_answers_do_not_depend_on_the_training_rows_order(rng):
    """The pre-filter reorders the training points by cluster; the answer, ties included,
    must be the plain search's for the rows as given, in any order."""
    (X_train, X_query), perm = _low_rank_data(rng, 2500, 300), rng.permutation(2500)
    X_train = np.round(X_train, 1)  # coarse values: exact ties between distinct rows
    X_train[1000:1100] = X_train[:100]  # and duplicates
    for X in (X_train, X_train[perm]):
        for X_q in (np.round(X_query, 1), None):
            dist, ind = kneighbors(X, X_q, 7, prefilter=True)
            plain = kneighbors(X, X_q, 7, prefilter=False)
            np.testing.assert_array_equal(ind, plain[1])
            np.testing.assert_array_equal(dist, plain[0])
