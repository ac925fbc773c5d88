"""The early-exit kernel (p = 3 and general p, rows of more than two exit blocks): it drops
a training row once its partial sums rule it out. Checked against the Python-loop
reference, and, at the kernel, against the property the exact re-rank relies on."""

from __future__ import annotations

import numpy as np
import pytest

from knnlab import _kernels, neighbors
from knnlab.neighbors import PreparedSearch, kneighbors

from ..support import reference

WIDE = 2 * neighbors._EXIT_BLOCK + 44  # 300 features: three blocks, the last one partial


def _pixel_like(rng, n: int, d: int = WIDE) -> np.ndarray:
    """Rows of a few prototypes plus noise, with features of very unequal spread (so the
    column order matters), integer-valued (many exact ties) and some duplicated rows."""
    prototypes = rng.integers(0, 17, size=(6, d)) * (rng.random(d) < 0.4)
    X = prototypes[rng.integers(0, 6, n)] + rng.integers(-2, 3, size=(n, d)) * (rng.random(d) < 0.5)
    X = X.astype(float)
    X[n // 2 : n // 2 + 5] = X[0]
    return X


@pytest.mark.parametrize("p", [3, 1.5])
def test_early_exit_matches_the_loop_reference(rng, p):
    X_train = _pixel_like(rng, 400)
    # 70 queries: calls of fewer than neighbors._FEW_QUERIES run without exits.
    X_query = np.vstack([_pixel_like(rng, 67), X_train[:3]])  # exact copies too
    assert (
        neighbors._exit_columns(X_train, X_train.mean(axis=0), _kernels.power_kind(p), p)
        is not None
    )
    dist, ind = kneighbors(X_train, X_query, 6, p=p)
    ref_dist, ref_ind = reference.kneighbors(X_train, X_query, 6, p)
    np.testing.assert_array_equal(ind, ref_ind, err_msg=f"neighbour order differs at p={p}")
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12, atol=0)


@pytest.mark.parametrize("p", [3, 1.5])
def test_early_exit_self_query_matches_the_loop_reference(rng, p):
    X = _pixel_like(rng, 300)
    dist, ind = kneighbors(X, None, 4, p=p)
    ref_dist, ref_ind = reference.kneighbors(X, None, 4, p)
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12, atol=0)


def test_a_kept_search_uses_the_column_order_and_gives_the_same_bits(rng):
    X_train, X_query = _pixel_like(rng, 500), _pixel_like(rng, 20)
    kept = PreparedSearch(X_train, p=3).prepare()
    assert kept._prepared.training.columns is not None, "the early-exit layout is in use"
    np.testing.assert_array_equal(
        np.sort(kept._prepared.training.columns), np.arange(WIDE), err_msg="a permutation"
    )
    for one in range(3):  # one request at a time, as a server asks
        got = kept.kneighbors(X_query[one : one + 1], 5)
        want = kneighbors(X_train, X_query[one : one + 1], 5, p=3)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize("kind, p", [(3, 3.0), (_kernels.KIND_GENERAL, 1.5)])
def test_the_buffer_keeps_every_row_that_can_belong(rng, kind, p):
    """What the re-rank relies on: no row left out of a query's buffer is nearer, beyond the
    rounding bound, than a row kept in it. Early exits must never break this."""
    X_train = _pixel_like(rng, 600)
    X_query = _pixel_like(rng, 8)
    centre = X_train.mean(axis=0)
    columns = neighbors._exit_columns(X_train, centre, kind, p)
    T32, _, _ = _kernels.centred_float32_columns(X_train, columns, centre, kind, p)
    Q32, _, _ = _kernels.centred_float32_columns(X_query, columns, centre, kind, p)
    width = 12
    best_v, best_j = _kernels.approx_candidates_minkowski(
        Q32, T32, kind, p, width, np.full(8, -1, dtype=np.int64), 4, neighbors._EXIT_BLOCK
    )
    exact = (np.abs(X_query[:, None, :] - X_train[None, :, :]) ** p).sum(axis=2)  # (8, 600)
    tolerance = 1e-4 * exact.max()  # far above float32 rounding, far below the value gaps
    for q in range(8):
        kept = best_j[q]
        assert (kept >= 0).all() and len(set(kept.tolist())) == width, "the buffer is full"
        assert np.isfinite(best_v[q]).all()
        left_out = np.setdiff1d(np.arange(600), kept)
        assert exact[q, kept].max() <= exact[q, left_out].min() + tolerance, (
            f"query {q}: a row left out of the buffer is nearer than one kept in it"
        )


@pytest.mark.parametrize("p", [1, 3, 1.5, np.inf])
def test_overflowed_buffers_are_collected_by_a_float32_pass(rng, monkeypatch, p):
    """Near-ties wider than the buffer, away from p = 2: the second float32 pass
    (minkowski_candidates_under) collects them, no query scans every point in float64, and
    the answer equals the loop reference. Many rows at one distance plus noise far below
    the rounding bound, so the bound spans the whole tie."""
    calls, full_scans = [], []
    real_collect, real_rerank = _kernels.minkowski_candidates_under, _kernels.exact_rerank

    def collect(*args):
        calls.append(len(args[2]))
        return real_collect(*args)

    def rerank(*args):
        full_scans.append(real_rerank(*args))
        return full_scans[-1]

    monkeypatch.setattr(_kernels, "minkowski_candidates_under", collect)
    monkeypatch.setattr(_kernels, "exact_rerank", rerank)
    X_train = np.vstack([np.full((60, WIDE), 3.0), _pixel_like(rng, 200) + 50.0])
    X_train[:60] += rng.normal(scale=1e-9, size=(60, WIDE))
    X_query = np.zeros((4, WIDE))
    dist, ind = kneighbors(X_train, X_query, 5, p=p)
    assert sum(calls) == 4, "every query's buffer overflowed and was collected"
    assert sum(full_scans) == 0, "no query needed the all-points float64 scan"
    ref_dist, ref_ind = reference.kneighbors(X_train, X_query, 5, p)
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12, atol=0)
