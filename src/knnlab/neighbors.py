"""Exact, memory-bounded, multi-threaded k-nearest-neighbour search under Minkowski distances.

The contract every search path in knnlab keeps (brute force here, the scikit-learn trees in
:mod:`knnlab.estimators`):

* distances are exact float64 Minkowski distances ``(sum_f |x_f - y_f|**p) ** (1/p)``
  (``max_f |x_f - y_f|`` for ``p = inf``), the p-th powers summed in feature order;
* each row is sorted by distance, **ties go to the lower training index**;
* when the queries *are* the training set (``X_query is None``), each point's own index is
  excluded, and only its own: a duplicate elsewhere in the training set is a neighbour at
  distance 0;
* no full ``(n_queries, n_train)`` matrix: queries are processed in chunks sized so one
  chunk's work arrays fit in ``working_memory`` bytes; results do not depend on the chunk
  size or the number of threads.

How (see :mod:`knnlab._kernels`): float32 finds candidates fast (one BLAS matrix multiply
``|x|^2 - 2 x.y + |y|^2`` per chunk at p = 2, a blocked SIMD kernel at other p), a rigorous
bound on float32 rounding says which candidates could still be in the exact top k, and
those are re-ranked with float64 distances computed directly from the differences. Data are
centred on the training mean first: distances do not change, rounding errors shrink.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numba
import numpy as np
from threadpoolctl import threadpool_limits

from knnlab import _kernels

DEFAULT_WORKING_MEMORY = 512 * 2**20  # bytes for one query chunk's work arrays
_EPS32 = float(np.finfo(np.float32).eps)
# Safety factor on the rounding-error bounds below (they are worst cases already).
_BOUND_SAFETY = 2.0


def _check_inputs(X_train, X_query, n_neighbors, p) -> tuple[np.ndarray, np.ndarray | None, float]:
    X_train = np.ascontiguousarray(X_train, dtype=np.float64)  # kernels read rows
    if X_train.ndim != 2:
        raise ValueError(f"X_train must be 2-D (n_train, n_features), got shape {X_train.shape}")
    n_train = X_train.shape[0]
    if X_query is not None:
        X_query = np.ascontiguousarray(X_query, dtype=np.float64)
        if X_query.ndim != 2 or X_query.shape[1] != X_train.shape[1]:
            raise ValueError(
                f"X_query must have shape (n_queries, {X_train.shape[1]}) to match X_train, "
                f"got shape {X_query.shape}"
            )
    available = n_train - (1 if X_query is None else 0)
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, int | np.integer):
        raise TypeError(f"n_neighbors must be an integer, got {n_neighbors!r}")
    if not 1 <= n_neighbors <= available:
        raise ValueError(
            f"Expected 1 <= n_neighbors <= {available} (the number of training points"
            f"{' other than the query itself' if X_query is None else ''}), "
            f"but n_neighbors = {n_neighbors}"
        )
    p = float(p)
    if not p >= 1:
        raise ValueError(f"Minkowski p must be >= 1 (or inf), got p = {p}")
    for name, X in (("X_train", X_train), ("X_query", X_query)):
        if X is not None and not np.isfinite(X).all():
            raise ValueError(f"{name} contains NaN or infinite values; kNN needs finite features")
    return X_train, X_query, p


def _chunk_rows(n_train: int, uses_gram: bool, working_memory: int | None) -> int:
    """Queries per chunk: the (chunk, n_train) float32 product dominates at p = 2; the
    other kernels hold only per-query buffers, so their chunks are a fixed, large size."""
    budget = DEFAULT_WORKING_MEMORY if working_memory is None else int(working_memory)
    if budget <= 0:
        raise ValueError(f"working_memory must be a positive number of bytes, got {budget}")
    per_row = 4 * max(n_train, 1) if uses_gram else 64 * 1024
    return max(4, (budget // per_row) // 4 * 4)


@contextlib.contextmanager
def _threads(n_jobs: int | None) -> Iterator[None]:
    """Run numba kernels and BLAS on ``n_jobs`` threads (None or -1: every core)."""
    if n_jobs is None or n_jobs == -1:
        yield
        return
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive integer, -1 or None, got {n_jobs!r}")
    n = min(n_jobs, numba.config.NUMBA_NUM_THREADS)
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        with threadpool_limits(limits=n, user_api="blas"):
            yield
    finally:
        numba.set_num_threads(previous)


def _buffer_width(n_available: int, n_neighbors: int) -> int:
    """Buffer slots per query: k plus a margin, so the buffer can prove it saw every
    near-tie (else the query falls back to an exact scan)."""
    return min(n_available, n_neighbors + max(8, n_neighbors))


def _candidate_threshold(
    best_v: np.ndarray, n_neighbors: int, q_norms: np.ndarray, t_norm_max: float, p: float, d: int
) -> np.ndarray:
    """Per query (m,): the approximate value below which every possible exact top-k point
    lies, the approximate k-th value plus twice the rounding bound (see _rounding_bound)."""
    kth = np.partition(best_v, n_neighbors - 1, axis=1)[:, n_neighbors - 1]
    return kth + 2.0 * _rounding_bound(q_norms, t_norm_max, p, d)


def _rounding_bound(q_norms: np.ndarray, t_norm_max: float, p: float, d: int) -> np.ndarray:
    """Largest error of a float32 approximate p-th-power distance, per query (m,).

    With M_f = |q_f| + |t_f| on centred data: rounding the inputs to float32 and subtracting
    moves |q_f - t_f| by at most 2 eps M_f, so its p-th power by at most (3p + 1) eps M_f^p,
    and summing d terms adds d eps sum M_f^p; sum_f M_f^p <= 2^(p-1) (|q|_p^p + |t|_p^p).
    At p = 2 the product q.t of the matrix multiply errs by at most d eps |q| |t|, twice.
    """
    if math.isinf(p):
        bound = 4 * _EPS32 * (q_norms + t_norm_max)
    elif p == 2:
        bound = (2 * d + 8) * _EPS32 * (q_norms + t_norm_max)
    else:
        bound = (d + 3 * p + 4) * _EPS32 * 2 ** (p - 1) * (q_norms + t_norm_max)
    return _BOUND_SAFETY * bound


def kneighbors(
    X_train,
    X_query,
    n_neighbors: int,
    *,
    p: float = 2,
    working_memory: int | None = None,
    n_jobs: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest training points of each query under the Minkowski distance.

    Parameters
    ----------
    X_train : array-like of shape (n_train, n_features)
    X_query : array-like of shape (n_queries, n_features), or None
        None means the queries are the training points themselves; each point's own index
        is then never returned (its duplicates are).
    n_neighbors : int
        k, with ``1 <= k <= n_train`` (``n_train - 1`` when ``X_query`` is None).
    p : float, default 2
        Minkowski exponent, ``p >= 1``; ``float("inf")`` for the Chebyshev distance.
    working_memory : int, optional
        Bytes allowed for one chunk's work arrays; default 512 MiB.
    n_jobs : int, optional
        Threads for the kernels and BLAS; None or -1 uses every core.

    Returns
    -------
    distances : ndarray of shape (n_queries, n_neighbors), float64
        Sorted ascending along each row.
    indices : ndarray of shape (n_queries, n_neighbors), int64
        Training-row indices; among equal distances the lower index comes first.
    """
    X_train, X_query, p = _check_inputs(X_train, X_query, n_neighbors, p)
    is_self_query = X_query is None
    queries = X_train if is_self_query else X_query
    n_queries, n_features = queries.shape
    n_train = X_train.shape[0]
    kind = _kernels.power_kind(p)
    uses_gram = kind == 2
    width = _buffer_width(n_train - int(is_self_query), n_neighbors)

    centre = X_train.mean(axis=0)
    # float32 copies (C order: the kernels read rows) and their p-th-power norms, one pass.
    T32, t_norms = _kernels.centred_float32(X_train, centre, kind, p)  # (n, d), (n,)
    t_norm_max = float(t_norms.max(initial=0.0))
    distances = np.empty((n_queries, n_neighbors))
    indices = np.empty((n_queries, n_neighbors), dtype=np.int64)
    chunk = _chunk_rows(n_train, uses_gram, working_memory)
    gram = np.empty((min(chunk, n_queries), n_train), dtype=np.float32) if uses_gram else None

    with _threads(n_jobs):
        for start in range(0, n_queries, chunk):
            stop = min(start + chunk, n_queries)
            Q_raw = queries[start:stop]
            Q32, q_norms = _kernels.centred_float32(Q_raw, centre, kind, p)
            self_offset = start if is_self_query else -1
            if uses_gram:
                # One preallocated (chunk, n_train) buffer: reusing it spares the page
                # faults of a fresh 0.5 GB allocation per chunk.
                block = np.matmul(Q32, T32.T, out=gram[: stop - start])
                best_v, best_j = _kernels.approx_candidates_gram(
                    block, t_norms.astype(np.float32), width, self_offset
                )
            else:
                padded = -(-len(Q32) // 4) * 4  # the kernel takes queries four at a time
                Q32 = np.vstack([Q32, np.zeros((padded - len(Q32), Q32.shape[1]), np.float32)])
                # 16 queries per task (measured best at 784 features), fewer on small
                # problems so every thread gets work.
                threads = numba.get_num_threads()
                query_chunk = max(4, min(16, -(-padded // (4 * threads)) // 4 * 4))
                best_v, best_j = _kernels.approx_candidates_minkowski(
                    Q32, T32, kind, p, width, self_offset, query_chunk
                )
                best_v, best_j = best_v[: stop - start], best_j[: stop - start]
            threshold = _candidate_threshold(
                best_v, n_neighbors, q_norms, t_norm_max, p, n_features
            )
            _kernels.exact_rerank(
                np.ascontiguousarray(Q_raw),
                X_train,
                best_v,
                best_j,
                threshold,
                n_neighbors,
                kind,
                p,
                self_offset,
                distances[start:stop],
                indices[start:stop],
            )
    return distances, indices


def warm_up(p: float = 2, n_features: int = 4) -> None:
    """Compile (or load from numba's cache) the kernels a search at ``p`` uses, so a timed
    search measures the search and not the one-time compilation."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, n_features))
    kneighbors(X, X[:4], 2, p=p)
    kneighbors(X, None, 2, p=p)


def cross_fold_kneighbors(
    X,
    folds: list[tuple[np.ndarray, np.ndarray]],
    n_neighbors: int,
    *,
    working_memory: int | None = None,
) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Euclidean neighbours of every validation fold among its training folds: for each
    fold, the same result as ``kneighbors(X[train], X[valid], n_neighbors)``, with half the
    multiply work, because the product of folds a and b serves a's queries against b's
    points and b's queries against a's.

    X : (n, d); folds : (train_indices, valid_indices) pairs whose validation parts
    partition the rows and whose training parts are their sorted complements (as
    scikit-learn's KFold and StratifiedKFold give). Returns one (distances, indices into
    train_indices) pair per fold, each (n_valid, n_neighbors), or None when the folds are
    not such a partition (callers then search fold by fold).
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    n, d = X.shape
    valid = [np.asarray(v, dtype=np.int64) for _, v in folds]
    owner = np.full(n, -1)
    for a, rows in enumerate(valid):
        owner[rows] = a
    if (owner < 0).any() or sum(len(v) for v in valid) != n or not np.isfinite(X).all():
        return None
    for a, (train, _) in enumerate(folds):
        if not np.array_equal(train, np.flatnonzero(owner != a)):
            return None
        if n_neighbors > len(train):
            return None
    X32, norms = _kernels.centred_float32(X, X.mean(axis=0), 2, 2.0)
    norms32 = norms.astype(np.float32)
    width = _buffer_width(min(len(t) for t, _ in folds), n_neighbors)
    best_v = np.full((n, width), np.inf)
    best_j = np.full((n, width), -1, dtype=np.int64)  # global row indices
    worst = np.full(n, np.inf)
    for a in range(len(valid)):
        for b in range(a + 1, len(valid)):
            cols = valid[b]
            step = _chunk_rows(len(cols), True, working_memory)
            for start in range(0, len(valid[a]), step):
                rows = valid[a][start : start + step]
                block = X32[rows] @ X32[cols].T  # (rows, n_b) float32, used both ways
                _kernels.update_candidates_block(
                    block,
                    norms32[rows],
                    norms32[cols],
                    rows,
                    cols,
                    rows,
                    cols,
                    best_v,
                    best_j,
                    worst,
                )
    threshold = _candidate_threshold(
        best_v, n_neighbors, norms, float(norms.max(initial=0.0)), 2.0, d
    )
    results = []
    for (train, _), rows in zip(folds, valid, strict=True):
        # Buffers hold global rows; the exact re-rank works on this fold's training rows.
        local_j = np.searchsorted(train, best_j[rows])
        distances = np.empty((len(rows), n_neighbors))
        indices = np.empty((len(rows), n_neighbors), dtype=np.int64)
        _kernels.exact_rerank(
            X[rows],
            X[train],
            best_v[rows],
            local_j,
            threshold[rows],
            n_neighbors,
            2,
            2.0,
            -1,
            distances,
            indices,
        )
        results.append((distances, indices))
    return results
