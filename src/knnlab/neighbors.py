"""Exact, memory-bounded brute-force k-nearest-neighbour search under Minkowski distances.

The contract every search path in knnlab keeps (brute force here, the scikit-learn trees in
:mod:`knnlab.estimators`):

* distances are exact float64 Minkowski distances ``(sum_f |x_f - y_f|**p) ** (1/p)``
  (``max_f |x_f - y_f|`` for ``p = inf``);
* each row is sorted by distance, **ties go to the lower training index**;
* when the queries *are* the training set (``X_query is None``), each point's own index is
  excluded, and only its own: a duplicate elsewhere in the training set is a neighbour at
  distance 0;
* no full ``(n_queries, n_train)`` matrix: queries are processed in chunks sized so one
  chunk's work arrays fit in ``working_memory`` bytes.

For ``p = 2`` the distances of a chunk come from one matrix multiply
(``|x|^2 - 2 x.y + |y|^2`` on mean-centred data), which is fast but loses digits to
cancellation. The selection therefore keeps every training point whose approximate distance
could still be in the top k (a margin from a rounding-error bound) and re-ranks those few
candidates with distances computed directly from the differences.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_WORKING_MEMORY = 512 * 2**20  # bytes for one query chunk's work arrays
_BYTES_PER_PAIR = 3 * 8  # distance matrix, boolean mask and a temporary, float64


def _check_inputs(X_train, X_query, n_neighbors, p) -> tuple[np.ndarray, np.ndarray | None, float]:
    X_train = np.asarray(X_train, dtype=np.float64)
    if X_train.ndim != 2:
        raise ValueError(f"X_train must be 2-D (n_train, n_features), got shape {X_train.shape}")
    n_train = X_train.shape[0]
    if X_query is not None:
        X_query = np.asarray(X_query, dtype=np.float64)
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


def _chunk_size(n_train: int, working_memory: int | None) -> int:
    budget = DEFAULT_WORKING_MEMORY if working_memory is None else int(working_memory)
    if budget <= 0:
        raise ValueError(f"working_memory must be a positive number of bytes, got {budget}")
    return max(1, budget // (_BYTES_PER_PAIR * max(n_train, 1)))


def _powered_distances(Q: np.ndarray, T: np.ndarray, p: float) -> np.ndarray:
    """``sum_f |Q_f - T_f| ** p`` (or the max for p = inf) for every pair.

    Q: (m, d), T: (n, d) -> (m, n). Loops over the d features, not over samples, so each
    step is one vectorized (m, n) operation and memory stays at a few (m, n) arrays.
    """
    out = np.zeros((Q.shape[0], T.shape[0]))
    diff = np.empty_like(out)
    for f in range(Q.shape[1]):
        np.subtract.outer(Q[:, f], T[:, f], out=diff)
        np.abs(diff, out=diff)
        if math.isinf(p):
            np.maximum(out, diff, out=out)
            continue
        if p == 2:
            np.multiply(diff, diff, out=diff)
        elif p != 1:
            np.power(diff, p, out=diff)
        out += diff
    return out


def _pair_powered_distances(Q_rows: np.ndarray, T_rows: np.ndarray, p: float) -> np.ndarray:
    """Same as :func:`_powered_distances` for matched pairs: (c, d), (c, d) -> (c,)."""
    diff = np.abs(Q_rows - T_rows)
    if math.isinf(p):
        return diff.max(axis=1, initial=0.0)
    if p == 1:
        return diff.sum(axis=1)
    if p == 2:
        return np.einsum("ij,ij->i", diff, diff)
    return (diff**p).sum(axis=1)


def _to_distance(powered: np.ndarray, p: float) -> np.ndarray:
    if math.isinf(p) or p == 1:
        return powered
    if p == 2:
        return np.sqrt(powered)
    return powered ** (1.0 / p)


def _top_k_of_candidates(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, n_rows: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pick, per row, the k candidates with the smallest value, ties to the lower column.

    rows, cols, values: (c,) candidate triples, at least k per row -> (n_rows, k) values and
    columns, each row sorted ascending.
    """
    order = np.lexsort((cols, values, rows))  # by row, then value, then column
    counts = np.bincount(rows, minlength=n_rows)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    take = order[starts[:, None] + np.arange(k)]  # (n_rows, k)
    return values[take], cols[take]


def _exclude_self(powered: np.ndarray, start: int) -> None:
    """Mask each query's own training index, for queries start..start+m of the training set."""
    m = powered.shape[0]
    powered[np.arange(m), start + np.arange(m)] = np.inf


def _search_chunk_general(Q, T, k, p, self_start):
    """Exact top-k for one chunk with direct distances. Q: (m, d) -> (m, k), (m, k)."""
    powered = _powered_distances(Q, T, p)  # (m, n)
    if self_start is not None:
        _exclude_self(powered, self_start)
    kth = np.partition(powered, k - 1, axis=1)[:, k - 1 : k]  # (m, 1)
    # Everything tied with the k-th value survives, so the index tie-break below is exact.
    rows, cols = np.nonzero(powered <= kth)
    return _top_k_of_candidates(rows, cols, powered[rows, cols], Q.shape[0], k)


def _search_chunk_euclidean(Q, T, T_sq_norms, Q_raw, T_raw, k, self_start):
    """Exact top-k for one chunk at p = 2 via a matrix multiply and an exact re-rank.

    Q: (m, d), T: (n, d) centred on the training mean, T_sq_norms: (n,) their squared
    norms; Q_raw, T_raw: the same points uncentred, for the exact re-rank.
    """
    Q_sq_norms = np.einsum("ij,ij->i", Q, Q)  # (m,)
    approx = Q @ T.T  # (m, n)
    approx *= -2.0
    approx += Q_sq_norms[:, None]
    approx += T_sq_norms[None, :]
    if self_start is not None:
        _exclude_self(approx, self_start)
    # |fl(a) - a| <= gamma * (|q|^2 + |t|^2) for the three-term formula with d-term dot
    # products (Higham, 3.1), gamma ~ (d + 3) * eps; doubled to cover the rounding of the
    # centring. The true k-th value K satisfies kth_approx <= K + tol and any true top-k
    # point has approx <= K + tol, so keeping approx <= kth_approx + 2 tol keeps every
    # point that can be in the exact top k.
    gamma = 2 * (Q.shape[1] + 4) * np.finfo(np.float64).eps
    tol = gamma * (Q_sq_norms + T_sq_norms.max(initial=0.0))  # (m,)
    kth = np.partition(approx, k - 1, axis=1)[:, k - 1]
    rows, cols = np.nonzero(approx <= (kth + 2.0 * tol)[:, None])
    exact = _pair_powered_distances(Q_raw[rows], T_raw[cols], 2.0)  # (c,)
    return _top_k_of_candidates(rows, cols, exact, Q.shape[0], k)


def kneighbors(
    X_train,
    X_query,
    n_neighbors: int,
    *,
    p: float = 2,
    working_memory: int | None = None,
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
        Bytes allowed for one chunk's work arrays; default 512 MiB. Results do not depend
        on it.

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
    n_queries = queries.shape[0]
    distances = np.empty((n_queries, n_neighbors))
    indices = np.empty((n_queries, n_neighbors), dtype=np.int64)
    chunk = _chunk_size(X_train.shape[0], working_memory)

    if p == 2:
        # Distances do not change under translation, but the rounding error of the
        # |x|^2 - 2xy + |y|^2 formula grows with |x|^2: centring keeps it small.
        centre = X_train.mean(axis=0)
        T = X_train - centre
        T_sq_norms = np.einsum("ij,ij->i", T, T)
    for start in range(0, n_queries, chunk):
        stop = min(start + chunk, n_queries)
        self_start = start if is_self_query else None
        if p == 2:
            Q_raw = queries[start:stop]
            powered, cols = _search_chunk_euclidean(
                Q_raw - centre, T, T_sq_norms, Q_raw, X_train, n_neighbors, self_start
            )
        else:
            Q = queries[start:stop]
            powered, cols = _search_chunk_general(Q, X_train, n_neighbors, p, self_start)
        distances[start:stop] = _to_distance(powered, p)
        indices[start:stop] = cols
    return distances, indices
