"""Compiled kernels behind :func:`knnlab.neighbors.kneighbors` (numba, multi-threaded).

The search runs in two steps wherever the data's p-th powers fit float32 (the rule is
:func:`knnlab.neighbors._float32_stage_fits`):

1. **Candidates, in float32.** Approximate p-th-power distances (a BLAS matrix multiply for
   p = 2, a blocked SIMD kernel otherwise) stream through a small per-query buffer that
   keeps the ``width`` (> k) smallest values. This is where the time goes, and float32 halves
   the memory traffic and doubles the SIMD width.
2. **Exact answer, in float64.** A rigorous bound on the float32 rounding error gives each
   query a threshold (its approximate k-th value plus twice the bound); every training point
   that can be in the exact top k is below it. Those few candidates are re-ranked with
   distances computed directly in float64, ties to the lower index. When the buffer cannot
   prove it holds every candidate (many ties, duplicates), the query falls back to an exact
   float64 scan of all training points.

Elsewhere (large p, or magnitudes near float32's limits) :func:`exact_scan` computes every
exact float64 distance, skipping the rows whose largest coordinate difference already rules
them out. Exact distances stay finite and accurate at any p (see :func:`_exact_distance`).

Powers are encoded as ``kind``: 1 (|x|), 2 (x^2), 3 (|x|^3), 0 (max, p = inf) and -1 (any
other p, through ``pow``). Integer p never calls ``pow``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

KIND_INF = 0
KIND_GENERAL = -1
# Approximate kernels may reassociate sums and fuse multiply-adds: the error bound holds for
# any summation order. No 'nnan'/'ninf': the buffers start at +inf.
_FAST = {"reassoc", "contract", "nsz", "arcp"}
_L2_TILE_BYTES = 256 * 1024  # a training tile this size stays in L2 beside its queries


def power_kind(p: float) -> int:
    if np.isinf(p):
        return KIND_INF
    if p in (1.0, 2.0, 3.0):
        return int(p)
    return KIND_GENERAL


@njit(inline="always")
def _add_power(s, a, kind, p):
    """s plus a^p (a >= 0), or max(s, a) at p = inf."""
    if kind == 1:
        return s + a
    if kind == 2:
        return s + a * a
    if kind == 3:
        return s + a * a * a
    if kind == 0:
        return max(s, a)
    return s + a**p


@njit(inline="always")
def _centre_row(x, centre, kind, p, out):
    """out[:] = x - centre in float32; returns the p-th-power norm of out in float64 (or
    its max |value| at p = inf) and its largest |value|."""
    s = 0.0
    largest = 0.0
    for f in range(x.shape[0]):
        v = np.float32(x[f] - centre[f])
        out[f] = v
        a = abs(np.float64(v))
        largest = max(largest, a)
        s = _add_power(s, a, kind, p)
    return s, largest


@njit(parallel=True, nogil=True, cache=True)
def centred_float32(X, centre, kind, p):
    """``X - centre`` in float32 (n, d), C order, the p-th-power norm of each float32 row in
    float64 (n,): ``sum |x|^p``, or ``max |x|`` for p = inf, and the largest ``|x|`` of all
    (float, inf if a value left float32's range). One pass over X."""
    n, d = X.shape
    out = np.empty((n, d), dtype=np.float32)
    norms = np.empty(n)
    row_max = np.zeros(n)
    for i in prange(n):
        norms[i], row_max[i] = _centre_row(X[i], centre, kind, p, out[i])
    return out, norms, row_max.max() if n else 0.0


@njit(parallel=True, nogil=True, cache=True)
def centred_float32_columns(X, columns, centre, kind, p):
    """As :func:`centred_float32`, with the features in the order ``columns`` (d,) int64:
    ``out[i, g] = X[i, columns[g]] - centre[columns[g]]``."""
    n, d = X.shape
    out = np.empty((n, d), dtype=np.float32)
    norms = np.empty(n)
    row_max = np.zeros(n)
    for i in prange(n):
        s = 0.0
        largest = 0.0
        for g in range(d):
            f = columns[g]
            v = np.float32(X[i, f] - centre[f])
            out[i, g] = v
            a = abs(np.float64(v))
            largest = max(largest, a)
            s = _add_power(s, a, kind, p)
        norms[i] = s
        row_max[i] = largest
    return out, norms, row_max.max() if n else 0.0


@njit(parallel=True, nogil=True, cache=True)
def centred_float32_rows(X, rows, centre, kind, p):
    """As :func:`centred_float32`, of the rows ``X[rows]`` (rows (n,) int64), in that
    order, without a float64 copy of them."""
    n = rows.shape[0]
    out = np.empty((n, X.shape[1]), dtype=np.float32)
    norms = np.empty(n)
    row_max = np.zeros(n)
    for i in prange(n):
        norms[i], row_max[i] = _centre_row(X[rows[i]], centre, kind, p, out[i])
    return out, norms, row_max.max() if n else 0.0


# One thread: a pass bound by memory bandwidth, often over a few queries, where waking the
# thread pool of a busy machine can cost more than the pass.
@njit(nogil=True, cache=True)
def largest_centred(X, centre):
    """max over rows i and features f of |X[i, f] - centre[f]|, in float64; X (n, d)."""
    n, d = X.shape
    a = 0.0
    for i in range(n):
        for f in range(d):
            a = max(a, abs(X[i, f] - centre[f]))
    return a


@njit(inline="always")
def _insert(best_v, best_j, worst, i, value, j):
    """Replace query i's current worst buffer entry by (value, j); return the new worst."""
    width = best_v.shape[1]
    pos = 0
    for w in range(width):
        if best_v[i, w] == worst[i]:
            pos = w
            break
    best_v[i, pos] = value
    best_j[i, pos] = j
    new_worst = best_v[i, 0]
    for w in range(1, width):
        if best_v[i, w] > new_worst:
            new_worst = best_v[i, w]
    worst[i] = new_worst


@njit(inline="always")
def _powered_block(q0, q1, q2, q3, t, kind, pf):
    """The four float32 sums of |q_r[f] - t[f]|^p over one block of features (kind 3 or
    general p). Slices in, so the loop starts at 0: an index numba cannot prove
    non-negative gets wrap-around code that stops the loop vectorizing."""
    a0 = np.float32(0.0)
    a1 = np.float32(0.0)
    a2 = np.float32(0.0)
    a3 = np.float32(0.0)
    if kind == 3:
        for f in range(t.shape[0]):
            tf = t[f]
            x0 = abs(q0[f] - tf)
            x1 = abs(q1[f] - tf)
            x2 = abs(q2[f] - tf)
            x3 = abs(q3[f] - tf)
            a0 += x0 * x0 * x0
            a1 += x1 * x1 * x1
            a2 += x2 * x2 * x2
            a3 += x3 * x3 * x3
    else:
        for f in range(t.shape[0]):
            tf = t[f]
            a0 += abs(q0[f] - tf) ** pf
            a1 += abs(q1[f] - tf) ** pf
            a2 += abs(q2[f] - tf) ** pf
            a3 += abs(q3[f] - tf) ** pf
    return a0, a1, a2, a3


@njit(parallel=True, nogil=True, fastmath=_FAST, cache=True)
def approx_candidates_minkowski(Q, T, kind, p, width, self_index, query_chunk, block):
    """The ``width`` smallest approximate p-th-power distances of each query.

    Q : (m, d) float32 queries, m a multiple of 4 (pad with any rows; padded results are
        ignored by the caller); T : (n, d) float32 training points (both centred).
    self_index : (m,) int64, the training row query i must skip (itself, when the queries
        are training rows), or -1.
    query_chunk : queries per thread task, a multiple of 4.
    block : at p = 3 and general p, features summed between early-exit checks (0: none).
    Returns best_v (m, width) float64, unsorted, +inf where unfilled, and best_j (m, width).

    Each thread takes a chunk of queries and streams the training set through it in tiles
    that stay in L2. Four queries share every load of a training row (register blocking),
    and the kind branch sits outside the feature loop so each loop vectorizes: this layout
    is several times faster than one accumulator per pair (measured, see docs/performance.md).

    Early exit (``block`` > 0, kinds 3 and general): a row's four partial sums are checked
    after every ``block`` features; once each is at least its query's worst buffered value,
    the row is dropped. The terms are non-negative and rounding is monotone, so the full
    sum could only be larger: the buffer holds exactly what it would without the exit.
    Features sorted by decreasing spread (the caller's column order) make partial sums
    grow fastest. Checks cost horizontal sums, which pay only where a term is dear: at
    p = 1 they cost more than the work they save (measured, docs/performance.md).
    """
    m, d = Q.shape
    n = T.shape[0]
    best_v = np.full((m, width), np.inf)
    best_j = np.full((m, width), -1, dtype=np.int64)
    worst = np.full(m, np.inf)
    tile = max(8, _L2_TILE_BYTES // (4 * max(d, 1)))
    pf = np.float32(p)
    early_exit = block > 0 and (kind == 3 or kind == KIND_GENERAL)
    n_chunks = (m + query_chunk - 1) // query_chunk
    for c in prange(n_chunks):
        c0 = c * query_chunk
        c1 = min(m, c0 + query_chunk)
        for j0 in range(0, n, tile):
            j1 = min(n, j0 + tile)
            for i in range(c0, c1, 4):
                q0 = Q[i]
                q1 = Q[i + 1]
                q2 = Q[i + 2]
                q3 = Q[i + 3]
                if early_exit:
                    for j in range(j0, j1):
                        t = T[j]
                        w0 = np.float32(worst[i])
                        w1 = np.float32(worst[i + 1])
                        w2 = np.float32(worst[i + 2])
                        w3 = np.float32(worst[i + 3])
                        s0 = np.float32(0.0)
                        s1 = np.float32(0.0)
                        s2 = np.float32(0.0)
                        s3 = np.float32(0.0)
                        for f0 in range(0, d, block):
                            f1 = min(d, f0 + block)
                            a0, a1, a2, a3 = _powered_block(
                                q0[f0:f1], q1[f0:f1], q2[f0:f1], q3[f0:f1], t[f0:f1], kind, pf
                            )
                            s0 += a0
                            s1 += a1
                            s2 += a2
                            s3 += a3
                            if s0 >= w0 and s1 >= w1 and s2 >= w2 and s3 >= w3:
                                break
                        for r, s in enumerate((s0, s1, s2, s3)):
                            v = np.float64(s)
                            is_self = j == self_index[i + r]
                            if v < worst[i + r] and not is_self:
                                _insert(best_v, best_j, worst, i + r, v, j)
                    continue
                for j in range(j0, j1):
                    t = T[j]
                    s0 = np.float32(0.0)
                    s1 = np.float32(0.0)
                    s2 = np.float32(0.0)
                    s3 = np.float32(0.0)
                    if kind == 1:
                        for f in range(d):
                            tf = t[f]
                            s0 += abs(q0[f] - tf)
                            s1 += abs(q1[f] - tf)
                            s2 += abs(q2[f] - tf)
                            s3 += abs(q3[f] - tf)
                    elif kind == 2:
                        for f in range(d):
                            tf = t[f]
                            x0 = q0[f] - tf
                            x1 = q1[f] - tf
                            x2 = q2[f] - tf
                            x3 = q3[f] - tf
                            s0 += x0 * x0
                            s1 += x1 * x1
                            s2 += x2 * x2
                            s3 += x3 * x3
                    elif kind == 3:
                        for f in range(d):
                            tf = t[f]
                            x0 = abs(q0[f] - tf)
                            x1 = abs(q1[f] - tf)
                            x2 = abs(q2[f] - tf)
                            x3 = abs(q3[f] - tf)
                            s0 += x0 * x0 * x0
                            s1 += x1 * x1 * x1
                            s2 += x2 * x2 * x2
                            s3 += x3 * x3 * x3
                    elif kind == 0:
                        for f in range(d):
                            tf = t[f]
                            s0 = max(s0, abs(q0[f] - tf))
                            s1 = max(s1, abs(q1[f] - tf))
                            s2 = max(s2, abs(q2[f] - tf))
                            s3 = max(s3, abs(q3[f] - tf))
                    else:
                        for f in range(d):
                            tf = t[f]
                            s0 += abs(q0[f] - tf) ** pf
                            s1 += abs(q1[f] - tf) ** pf
                            s2 += abs(q2[f] - tf) ** pf
                            s3 += abs(q3[f] - tf) ** pf
                    for r, s in enumerate((s0, s1, s2, s3)):
                        v = np.float64(s)
                        is_self = j == self_index[i + r]
                        if v < worst[i + r] and not is_self:
                            _insert(best_v, best_j, worst, i + r, v, j)
    return best_v, best_j


_SCAN_BLOCK = 32  # values screened at once by a vectorized minimum before any insert
SCAN_BLOCK = _SCAN_BLOCK


# The screen and the insert loop must compute identical values: no 'contract' (an FMA in
# one loop and not the other would differ in the last bit). Values here are never NaN.
@njit(parallel=True, nogil=True, fastmath={"nnan", "nsz", "reassoc"}, cache=True)
def approx_candidates_gram(G, T_sq_norms, width, self_index):
    """The ``width`` smallest of ``|t_j|^2 - 2 G[i, j]`` per row (= squared distance minus
    the constant |q_i|^2).

    G : (m, n) float32, the product Q @ T.T; T_sq_norms : (n,) float32; self_index : (m,)
    int64, a training row to skip per query, or -1.
    Returns best_v (m, width) float64 and best_j (m, width), as the Minkowski kernel.

    Most blocks of a row hold nothing smaller than the buffer's worst entry: a vectorized
    minimum over each block rules them out, and only the rare block that holds a candidate
    is walked element by element.
    """
    m, n = G.shape
    best_v = np.full((m, width), np.inf)
    best_j = np.full((m, width), -1, dtype=np.int64)
    worst = np.full(m, np.inf)
    for i in prange(m):
        skip = self_index[i]
        for j0 in range(0, n, _SCAN_BLOCK):
            j1 = min(n, j0 + _SCAN_BLOCK)
            block_min = np.float32(np.inf)
            for j in range(j0, j1):
                block_min = min(block_min, T_sq_norms[j] - np.float32(2.0) * G[i, j])
            if np.float64(block_min) >= worst[i]:
                continue
            for j in range(j0, j1):
                v = np.float64(T_sq_norms[j] - np.float32(2.0) * G[i, j])
                if v < worst[i] and j != skip:
                    _insert(best_v, best_j, worst, i, v, j)
    return best_v, best_j


@njit(parallel=True, nogil=True, fastmath={"nnan", "nsz", "reassoc"}, cache=True)
def update_candidates_block(
    G,
    row_sq_norms,
    col_sq_norms,
    row_labels,
    col_labels,
    row_queries,
    col_queries,
    best_v,
    best_j,
    worst,
):
    """Feed one product block ``G = A @ B.T`` (float32, (r, c)) to two sets of buffers: row
    i's query (buffer ``row_queries[i]``) sees every B point as a candidate, column j's
    query (buffer ``col_queries[j]``) every A point: one multiply serves both directions.

    *_sq_norms : float32 squared norms of the A rows and B rows; *_labels : int64 indices
    written into the buffers; best_v, best_j, worst : (n_queries, width), (n_queries,),
    updated in place (values ``|t|^2 - 2 q.t``, as in :func:`approx_candidates_gram`).
    """
    r, c = G.shape
    two = np.float32(2.0)
    for i in prange(r):  # rows: contiguous reads, each thread owns its rows' buffers
        q = row_queries[i]
        for j in range(c):
            v = np.float64(col_sq_norms[j] - two * G[i, j])
            if v < worst[q]:
                _insert(best_v, best_j, worst, q, v, col_labels[j])
    n_tasks = min(c, 64)
    for task in prange(n_tasks):  # columns: each thread owns a range of column queries
        j0 = task * c // n_tasks
        j1 = (task + 1) * c // n_tasks
        for i in range(r):
            norm = row_sq_norms[i]
            label = row_labels[i]
            for j in range(j0, j1):
                v = np.float64(norm - two * G[i, j])
                q = col_queries[j]
                if v < worst[q]:
                    _insert(best_v, best_j, worst, q, v, label)


@njit(cache=True)
def _exact_powered(q, t, kind, p):
    """Exact float64 p-th-power distance, summed in feature order (the definition)."""
    s = 0.0
    if kind == 1:
        for f in range(q.shape[0]):
            s += abs(q[f] - t[f])
    elif kind == 2:
        for f in range(q.shape[0]):
            x = q[f] - t[f]
            s += x * x
    elif kind == 3:
        for f in range(q.shape[0]):
            x = abs(q[f] - t[f])
            s += x * x * x
    elif kind == 0:
        for f in range(q.shape[0]):
            s = max(s, abs(q[f] - t[f]))
    else:
        for f in range(q.shape[0]):
            s += abs(q[f] - t[f]) ** p
    return s


@njit(cache=True)
def _root(s, kind, p):
    """The distance from its p-th-power sum."""
    if kind == 0 or kind == 1:
        return s
    if kind == 2:
        return np.sqrt(s)
    return s ** (1.0 / p)


# --- exact distances at any p -----------------------------------------------------------------
#
# The definition's p-th powers leave float64's range at large p or small differences: 16 ** 256
# overflows, 0.4 ** 1000 underflows to 0, and a sum of infinities or zeros ranks nothing. Scaled
# by the pair's largest difference m, every term (|x_f - y_f| / m) ** p is at most 1 and the
# largest is exactly 1, so d = m * (sum_f (|x_f - y_f| / m) ** p) ** (1 / p) overflows only if
# d itself does, and its dominant term cannot underflow (tends to m, Chebyshev, as p grows).
# The plain sum stays wherever it is exact, so ordinary pairs keep the definition's value bit
# for bit; which form a pair takes depends on the pair alone (m, p, d), so a pair has one
# distance whatever path or chunk computes it.

_F64_MAX = float(np.finfo(np.float64).max)
# A float64 under 2^-1022 carries an absolute error up to 2^-1074, not a relative one; a plain
# sum takes at most two such per feature (power, addition). With its largest term m^p at least
# d * 2^-1000 they stay under 2^-72 of the sum, far below the sum's own rounding.
_PLAIN_MIN = 2.0**-1000
# Any computed distance of a pair is at least m (1 - 3 eps): the plain sum holds fl(m^p) >=
# m^p (1 - 2 eps) and its root loses at most eps more; the scaled form is m times a root of a
# sum >= 1. Rows whose m times this factor reaches the k-th distance cannot enter the top k.
_BELOW_LARGEST = 1.0 - 4.0 * float(np.finfo(np.float64).eps)


@njit(cache=True)
def _largest_difference(q, t):
    """max_f |q_f - t_f| (the Chebyshev distance), float64."""
    m = 0.0
    for f in range(q.shape[0]):
        m = max(m, abs(q[f] - t[f]))
    return m


@njit(cache=True)
def _power(x, kind, p):
    """x ** p for x >= 0, computed as the sums of :func:`_exact_powered` compute each term."""
    if kind == 1:
        return x
    if kind == 2:
        return x * x
    if kind == 3:
        return x * x * x
    return x**p


@njit(cache=True)
def _distance_given_largest(q, t, m, kind, p):
    """Exact float64 distance of q and t (d,), given m = max_f |q_f - t_f|.

    Plain (:func:`_exact_powered`, summed in feature order, then the root) when every term and
    the sum lie in float64's normal range: d 2^-1000 <= m^p <= max / (2 d). Otherwise scaled,
    ``m * (sum_f (|q_f - t_f| / m) ** p) ** (1 / p)``, also summed in feature order.
    """
    if kind == 0:
        return m  # the plain form, exactly: a maximum neither overflows nor rounds
    if kind == 1:
        return _exact_powered(q, t, kind, p)  # sums of |differences|: no powers to leave range
    d = q.shape[0]
    mp = _power(m, kind, p)
    if d * _PLAIN_MIN <= mp <= _F64_MAX / (2 * d):
        return _root(_exact_powered(q, t, kind, p), kind, p)
    if m == 0.0 or m > _F64_MAX:
        return m  # identical points, or a difference beyond float64 (inf: reported by caller)
    s = 0.0
    for f in range(d):
        s += _power(abs(q[f] - t[f]) / m, kind, p)
    return m * _root(s, kind, p)


@njit(cache=True)
def _exact_distance(q, t, kind, p):
    """Exact float64 Minkowski distance of q and t (d,) at any p (see the section comment)."""
    return _distance_given_largest(q, t, _largest_difference(q, t), kind, p)


@njit(inline="always")
def _scan_rows(q, T, j0, j1, skip, kind, p, out_v, out_j):
    """Offer training rows j0..j1 (ascending, after every row offered before) to the sorted
    top-k buffer out_v, out_j (k,) of query q: a row enters only if strictly nearer than the
    k-th, after the equal values already held, so ties keep the lower index. A row whose
    largest difference already rules it out costs no power."""
    k = out_v.shape[0]
    for j in range(j0, j1):
        if j == skip:
            continue
        kth = out_v[k - 1]
        t = T[j]
        m = _largest_difference(q, t)
        if m * _BELOW_LARGEST >= kth:
            continue
        v = _distance_given_largest(q, t, m, kind, p)
        if v < kth:
            pos = k - 1
            while pos > 0 and out_v[pos - 1] > v:
                out_v[pos] = out_v[pos - 1]
                out_j[pos] = out_j[pos - 1]
                pos -= 1
            out_v[pos] = v
            out_j[pos] = j


@njit(parallel=True, nogil=True, cache=True)
def exact_scan(Q, T, k, kind, p, self_index, query_chunk, out_v, out_j):
    """Exact top k of each query among all training points, with no float32 candidate stage:
    for data and p whose float32 p-th powers could overflow or underflow.

    Q : (m, d) float64 raw queries; T : (n, d) float64 raw training points; self_index : (m,)
    training row each query skips, or -1; query_chunk : queries per thread task.
    Writes out_v, out_j (m, k): exact distances ascending, ties to the lower index; +inf and
    -1 where no finite distance was found (distances beyond float64: the caller reports them).

    Each thread takes a chunk of queries and streams the training rows through it in tiles
    that stay in L2 (as :func:`approx_candidates_minkowski`); each query's buffer sees the
    rows in index order.
    """
    m, d = Q.shape
    n = T.shape[0]
    tile = max(8, _L2_TILE_BYTES // (8 * max(d, 1)))
    n_chunks = (m + query_chunk - 1) // query_chunk
    for c in prange(n_chunks):
        c0 = c * query_chunk
        c1 = min(m, c0 + query_chunk)
        for i in range(c0, c1):
            out_v[i, :] = np.inf
            out_j[i, :] = -1
        for j0 in range(0, n, tile):
            j1 = min(n, j0 + tile)
            for i in range(c0, c1):
                _scan_rows(Q[i], T, j0, j1, self_index[i], kind, p, out_v[i], out_j[i])


@njit(cache=True)
def _top_k_sorted(values, cols, k, out_v, out_j):
    """Write the k smallest (value, col) pairs in (value, col) order."""
    order = np.argsort(cols, kind="mergesort")  # index order first ...
    order = order[np.argsort(values[order], kind="mergesort")]  # ... then stable by value
    for r in range(k):
        out_v[r] = values[order[r]]
        out_j[r] = cols[order[r]]


@njit(parallel=True, nogil=True, cache=True)
def exact_rerank(Q, T, best_v, best_j, threshold, k, kind, p, self_index, out_v, out_j):
    """Exact top k of each query from its buffer, or from all of T when the buffer is not
    provably complete.

    Q : (m, d) float64 raw queries; T : (n, d) float64 raw training points.
    best_v, best_j : (m, width) approximate buffer; threshold : (m,) approximate value below
        which every possible top-k point lies; self_index : (m,) training row each query
        skips, or -1. Writes out_v, out_j (m, k): exact distances (:func:`_exact_distance`;
        roots taken before ranking, so equal returned distances go to the lower index) and
        indices, sorted. Returns the number of queries that needed the full scan.
    """
    m, width = best_v.shape
    n = T.shape[0]
    fallbacks = 0
    for i in prange(m):
        skip = self_index[i]
        complete = False
        n_kept = 0
        for w in range(width):
            if best_v[i, w] <= threshold[i]:
                n_kept += 1
        # The buffer holds every candidate if some entry lies above the threshold (all
        # values below it were kept) or if it never filled up.
        for w in range(width):
            if best_v[i, w] > threshold[i]:
                complete = True
                break
        if complete and n_kept >= k:
            values = np.empty(n_kept)
            cols = np.empty(n_kept, dtype=np.int64)
            c = 0
            for w in range(width):
                if best_v[i, w] <= threshold[i]:
                    values[c] = _exact_distance(Q[i], T[best_j[i, w]], kind, p)
                    cols[c] = best_j[i, w]
                    c += 1
            _top_k_sorted(values, cols, k, out_v[i], out_j[i])
        else:
            fallbacks += 1
            out_v[i, :] = np.inf
            out_j[i, :] = -1
            _scan_rows(Q[i], T, 0, n, skip, kind, p, out_v[i], out_j[i])
    return fallbacks


# --- p = 2 with a low-rank pre-filter ---------------------------------------------------------
#
# Real data rarely fill their feature space: most of the variance of 784-pixel digits lies in a
# few dozen directions. Projected onto the top r principal directions (orthonormal V), distances
# can only shrink, |V^T (q - t)| <= |q - t|, so a product of r-dimensional coordinates gives every
# training point a lower bound on its distance for r / d of the multiply work. A query's k-th
# exact distance among its best few bounds is an upper bound on its true k-th distance, and
# every point whose lower bound exceeds that is out of the top k. On MNIST-shaped data with
# r = 48 about 40 of 60,000 points per query survive; only those get full-dimension distances.

PRUNE_WIDTH = 32  # blocks of lower bounds walked per query (their minima are the smallest)
PRUNE_GUESS = 16  # full values that make a query's first guess of its k-th (at least 2k)


@njit(fastmath=_FAST, cache=True)
def _dot32(a, b):
    """float32 dot product, any summation order (the rounding bounds allow it)."""
    s = np.float32(0.0)
    for f in range(a.shape[0]):
        s += a[f] * b[f]
    return s


@njit(inline="always")
def _collect_under(G, i, low_sq, block_mins, floor, limit, skip, most):
    """Values ``low_sq[j] - 2 G[i, j]`` in (floor, limit] (float64 compares) and their
    columns j, skipping column ``skip``; only blocks whose minimum is <= limit are walked.
    Computed as the block minima were, so a block ruled out holds nothing that would be
    taken. Stops after ``most + 1`` values (more than ``most`` means: too many to be worth
    it)."""
    n = G.shape[1]
    two = np.float32(2.0)
    n_walked = 0
    for b in range(len(block_mins)):
        if np.float64(block_mins[b]) <= limit:
            n_walked += 1
    size = min(n_walked * _SCAN_BLOCK, most + 1)
    values = np.empty(size, dtype=np.float32)
    cols = np.empty(size, dtype=np.int64)
    fill = 0
    for b in range(len(block_mins)):
        if fill == size:
            break
        if np.float64(block_mins[b]) <= limit:
            j0 = b * _SCAN_BLOCK
            for j in range(j0, min(n, j0 + _SCAN_BLOCK)):
                v = low_sq[j] - two * G[i, j]
                if floor < np.float64(v) <= limit and j != skip:
                    values[fill] = v
                    cols[fill] = j
                    fill += 1
                    if fill == size:
                        break
    return values[:fill], cols[:fill]


@njit(fastmath=_FAST, cache=True)
def _refined_values(values, cols, q_rest, t_rest, rest_sq):
    """(len(values),) float64: each value ``low_sq[j] - 2 a_q.a_t`` plus the next
    directions' ``rest_sq[j] - 2 b_q.b_t`` for its column j (see pruned_candidates)."""
    out = np.empty(len(values))
    for e in range(len(values)):
        j = cols[e]
        rest = np.float64(rest_sq[j]) - 2.0 * np.float64(_dot32(q_rest, t_rest[j]))
        out[e] = np.float64(values[e]) + rest
    return out


@njit(cache=True)
def _push_top(top, value):
    """Insert value into the ascending array ``top`` of the k smallest values seen."""
    k = top.shape[0]
    if value >= top[k - 1]:
        return
    pos = k - 1
    while pos > 0 and top[pos - 1] > value:
        top[pos] = top[pos - 1]
        pos -= 1
    top[pos] = value


# Like approx_candidates_gram: the screen and the element loop compute identical float32 values
# (no 'contract'), so a block the screen rules out holds nothing the loop would take.
@njit(nogil=True, fastmath={"nnan", "nsz", "reassoc"}, cache=True)
def block_minima(G, low_sq, j0, out):
    """out[i, b] = min over the _SCAN_BLOCK points j of block b of ``low_sq[j] - 2 G[i, j]``,
    for the blocks of columns j0 .. j0 + G.shape[1] (j0 a multiple of _SCAN_BLOCK; G (m, w)
    is that slice of the product, just made, still in cache)."""
    m, w = G.shape
    two = np.float32(2.0)
    b0 = j0 // _SCAN_BLOCK
    for i in range(m):
        for b in range((w + _SCAN_BLOCK - 1) // _SCAN_BLOCK):
            block_min = np.float32(np.inf)
            for c in range(b * _SCAN_BLOCK, min(w, (b + 1) * _SCAN_BLOCK)):
                block_min = min(block_min, low_sq[j0 + c] - two * G[i, c])
            out[i, b0 + b] = block_min


@njit(parallel=True, nogil=True, fastmath={"nnan", "nsz", "reassoc"}, cache=True)
def pruned_candidates(
    G,
    all_block_mins,
    low_sq,
    cut_shift,
    q_rest,
    t_rest,
    rest_sq,
    refined_shift,
    Q32,
    T32,
    t_sq,
    full_bound,
    k,
    self_index,
    most,
    cap,
    best_v,
    best_j,
    threshold,
):
    """Candidates for :func:`exact_rerank` (p = 2), examining in full dimension only the
    training points two low-rank lower bounds cannot rule out.

    G : (m, n) float32, the product of the queries' and training points' coordinates in the
        first r principal directions, ``A_q @ A_t.T``; low_sq : (n,) float32, ``|a_t|^2``.
        ``low_sq[j] - 2 G[i, j]`` plus ``|a_q|^2`` approximates the projected squared
        distance, a lower bound on the squared distance. all_block_mins : (m, number of
        blocks) their minima over each block of _SCAN_BLOCK points (:func:`block_minima`).
    cut_shift : (m,) float64; point j is ruled out when its value ``low_sq[j] - 2 G[i, j]``
        exceeds the query's current k-th full value plus ``cut_shift[i]`` (which holds
        ``|q|^2 - |a_q|^2`` and both rounding bounds, see :mod:`knnlab.neighbors`).
    q_rest, t_rest : (m, s), (n, s) float32, the coordinates in the next s principal
        directions; rest_sq : (n,) float32, ``|b_t|^2``. Adding ``rest_sq[j] - 2 b_q.b_t``
        to a point's value gives the tighter bound of the r + s directions, ruled out
        against ``refined_shift`` (m,) the same way. It costs s multiply-adds per point, so
        it is worked out only for the points the first bound keeps.
    Q32, T32 : (m, d), (n, d) float32 centred rows; t_sq : (n,) float32, ``|t|^2``; the full
        value of point j is ``t_sq[j] - 2 q.t``, as in :func:`approx_candidates_gram`.
    full_bound : (m,) rounding bound of a full value; self_index : (m,) training row to
        skip, or -1; most : most points one query may keep under the first bound; cap :
        most full-dimension candidates one query may take.
    Writes, per query, the buffer :func:`exact_rerank` takes: best_v, best_j (m, width) the
    full values and rows of the candidates under threshold (m,) (the k-th full value plus
    twice the bound), +inf after them. Returns (m,) int64: the number of full-dimension
    candidates per query, or -1 where a query needed more than ``most`` or ``cap`` of them,
    or has more than ``width`` under its threshold (a wide near-tie): its rows are left
    unwritten for the caller's plain search. The exact distances are left to exact_rerank,
    compiled without fast-math: inlined here, their feature-order sums could be
    reassociated.
    """
    m, n = G.shape
    width = max(PRUNE_WIDTH, 2 * k)
    guess = max(PRUNE_GUESS, 2 * k)
    two = np.float32(2.0)
    n_blocks = (n + _SCAN_BLOCK - 1) // _SCAN_BLOCK
    counts = np.zeros(m, dtype=np.int64)
    for i in prange(m):
        skip = self_index[i]
        q = Q32[i]
        block_mins = all_block_mins[i]  # 1. (block_minima, as the product was made)
        # 2. A first guess of the k-th full value, from the points of the `width` blocks
        #    with the smallest minima (at least `width` points): the full values of the
        #    `guess` of them with the smallest refined bounds.
        limit = np.inf
        if n_blocks > width:
            limit = np.float64(np.partition(block_mins, width - 1)[width - 1])
        keep = n if limit == np.inf else most
        near_v, near_j = _collect_under(G, i, low_sq, block_mins, -np.inf, limit, skip, keep)
        if len(near_v) > keep:
            counts[i] = -1  # e.g. thousands of identical points: the plain search copes
            continue
        near_r = _refined_values(near_v, near_j, q_rest[i], t_rest, rest_sq)
        n_guess = min(len(near_v), guess)
        chosen = np.argsort(near_r, kind="mergesort")[:n_guess]
        top = np.full(k, np.inf)
        cand_w = np.empty(n_guess + cap)
        cand_j = np.empty(n_guess + cap, dtype=np.int64)
        for c in range(n_guess):
            j = near_j[chosen[c]]
            cand_w[c] = np.float64(t_sq[j] - two * _dot32(q, T32[j]))
            cand_j[c] = j
            _push_top(top, cand_w[c])
            near_r[chosen[c]] = np.inf  # done: not again below
        n_cand = n_guess
        # 3. Every point whose first bound is under the guess's cut (those of step 2, then
        #    the others), refined; full values for those whose refined bound is under the
        #    current cut (which only falls). A point never collected, or skipped, lies
        #    above a cut at least the final one.
        cut_in = top[k - 1] + cut_shift[i]
        far_v = np.empty(0, dtype=np.float32)
        far_j = np.empty(0, dtype=np.int64)
        if cut_in > limit:
            keep = n if cut_in == np.inf else most
            far_v, far_j = _collect_under(G, i, low_sq, block_mins, limit, cut_in, skip, keep)
            if len(near_v) + len(far_v) > keep:
                counts[i] = -1  # the bound rules out too little for this query
                continue
        far_r = _refined_values(far_v, far_j, q_rest[i], t_rest, rest_sq)
        cut = top[k - 1] + refined_shift[i]
        overflow = False
        for e in range(len(near_v) + len(far_v)):
            near = e < len(near_v)
            r = near_r[e] if near else far_r[e - len(near_v)]
            if r > cut:
                continue
            j = near_j[e] if near else far_j[e - len(near_v)]
            if n_cand == n_guess + cap:
                overflow = True
                break
            cand_w[n_cand] = np.float64(t_sq[j] - two * _dot32(q, T32[j]))
            cand_j[n_cand] = j
            _push_top(top, cand_w[n_cand])
            n_cand += 1
            cut = top[k - 1] + refined_shift[i]
        if overflow:
            counts[i] = -1
            continue
        # 3. The candidates the full rounding bound cannot separate from the k-th; more
        #    than the buffer holds (a wide near-tie) go to the caller's plain search.
        limit = top[k - 1] + 2.0 * full_bound[i]
        slots = best_v.shape[1]
        n_under = 0
        for c in range(n_cand):
            if cand_w[c] <= limit:
                n_under += 1
        if n_under > slots:
            counts[i] = -1
            continue
        counts[i] = n_cand
        threshold[i] = limit
        r = 0
        for c in range(n_cand):
            if cand_w[c] <= limit:
                best_v[i, r] = cand_w[c]
                best_j[i, r] = cand_j[c]
                r += 1
        for c in range(r, slots):
            best_v[i, c] = np.inf
            best_j[i, c] = -1
    return counts


@njit(parallel=True, nogil=True, fastmath={"nnan", "nsz", "reassoc"}, cache=True)
def gram_candidates_under(G, T_sq_norms, rows, threshold, self_index, width):
    """Every candidate under the threshold, for queries whose buffer from
    :func:`approx_candidates_gram` overflowed (near-ties wider than the buffer).

    G : (m, n) float32 product; rows : (r,) the queries to redo; threshold, self_index :
    (r,) theirs. Values are computed exactly as approx_candidates_gram computes them.
    Returns best_v, best_j (r, width + 1), +inf after the candidates, so exact_rerank sees
    the buffer as complete; a query with more than ``width`` candidates keeps a full buffer
    (exact_rerank then scans every point for it).
    """
    n = G.shape[1]
    r = rows.shape[0]
    best_v = np.full((r, width + 1), np.inf)
    best_j = np.full((r, width + 1), -1, dtype=np.int64)
    two = np.float32(2.0)
    for a in prange(r):
        i = rows[a]
        c = 0
        for j in range(n):
            v = np.float64(T_sq_norms[j] - two * G[i, j])
            if v <= threshold[a] and j != self_index[a]:
                best_v[a, c] = v
                best_j[a, c] = j
                c += 1
                if c == width + 1:
                    break
    return best_v, best_j


@njit(inline="always")
def _powered_sum(q, t, kind, pf):
    """float32 sum of |q[f] - t[f]|^p over one block (slices in), or the max at p = inf."""
    s = np.float32(0.0)
    if kind == 1:
        for f in range(t.shape[0]):
            s += abs(q[f] - t[f])
    elif kind == 2:
        for f in range(t.shape[0]):
            x = q[f] - t[f]
            s += x * x
    elif kind == 3:
        for f in range(t.shape[0]):
            x = abs(q[f] - t[f])
            s += x * x * x
    elif kind == 0:
        for f in range(t.shape[0]):
            s = max(s, abs(q[f] - t[f]))
    else:
        for f in range(t.shape[0]):
            s += abs(q[f] - t[f]) ** pf
    return s


@njit(parallel=True, nogil=True, fastmath=_FAST, cache=True)
def minkowski_candidates_under(Q, T, rows, threshold, self_index, kind, p, width, block):
    """Every candidate under the threshold, for queries whose buffer from
    :func:`approx_candidates_minkowski` overflowed (near-ties wider than the buffer), in
    place of an exact float64 scan of every training point.

    Q : (m, d) float32 queries; T : (n, d) float32 training points (same centring and
    column order); rows : (r,) the queries to redo; threshold, self_index : (r,) theirs;
    block : features summed between checks against the threshold (a row whose partial sum
    already exceeds it cannot be a candidate: the terms are non-negative).
    Any float32 summation is within the rounding bound the threshold allows for, so these
    values need not equal the first pass's. Returns best_v, best_j (r, width + 1), +inf
    after the candidates, as :func:`gram_candidates_under`.
    """
    n, d = T.shape
    r = rows.shape[0]
    best_v = np.full((r, width + 1), np.inf)
    best_j = np.full((r, width + 1), -1, dtype=np.int64)
    pf = np.float32(p)
    step = block if block > 0 else max(d, 1)
    for a in prange(r):
        q = Q[rows[a]]
        limit = threshold[a]
        c = 0
        for j in range(n):
            if j == self_index[a]:
                continue
            t = T[j]
            s = np.float32(0.0)
            for f0 in range(0, d, step):
                f1 = min(d, f0 + step)
                part = _powered_sum(q[f0:f1], t[f0:f1], kind, pf)
                s = max(s, part) if kind == KIND_INF else s + part
                if np.float64(s) > limit:
                    break
            v = np.float64(s)
            if v <= limit:
                best_v[a, c] = v
                best_j[a, c] = j
                c += 1
                if c == width + 1:
                    break
    return best_v, best_j
