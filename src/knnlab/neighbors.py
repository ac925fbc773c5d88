"""Exact, memory-bounded, multi-threaded k-nearest-neighbour search under Minkowski distances.

The contract every search path in knnlab keeps (brute force here, the scikit-learn trees in
:mod:`knnlab.estimators`):

* distances are exact float64 Minkowski distances ``(sum_f |x_f - y_f|**p) ** (1/p)``
  (``max_f |x_f - y_f|`` for ``p = inf``), the p-th powers summed in feature order; where a
  pair's p-th powers would overflow or underflow float64 (large p: ``16 ** 256`` is already
  inf), as ``m * (sum_f (|x_f - y_f| / m)**p) ** (1/p)`` with ``m = max_f |x_f - y_f|``,
  which is finite and exact at any p and tends to ``m`` as p grows;
* each row is sorted by distance, **ties go to the lower training index**;
* when the queries *are* the training set (``X_query is None``), each point's own index is
  excluded, and only its own: a duplicate elsewhere in the training set is a neighbour at
  distance 0;
* no full ``(n_queries, n_train)`` matrix: queries are processed in chunks sized so the
  chunks' work arrays fit in ``working_memory`` bytes; results do not depend on the chunk
  size, the number of threads or the path taken.

How (see :mod:`knnlab._kernels`): float32 finds candidates fast (one BLAS matrix multiply
``|x|^2 - 2 x.y + |y|^2`` per chunk at p = 2, a blocked SIMD kernel at other p), a rigorous
bound on float32 rounding says which candidates could still be in the exact top k, and
those are re-ranked with float64 distances computed directly from the differences. Data are
centred on the training mean first: distances do not change, rounding errors shrink. Where
the data's p-th powers do not fit float32 (large p, huge or tiny magnitudes; the rule is
:func:`_float32_stage_fits`), every exact distance is computed in float64 instead, each row
skipped whose largest coordinate difference already exceeds the k-th distance.

At p = 2 on wide data (many features, most variance in a few directions, as images) a
pre-filter comes first: the multiply runs on the top 48 principal components only, which
gives each training point a lower bound on its distance; the points it keeps get a tighter
bound from the next 80 components, and only those whose bound does not exceed the query's
k-th distance get full-dimension candidates. Training points and queries are taken in
k-means cluster order, so a query's few survivors, and the next query's, lie close together
in memory. It stops by itself on data where it rules out too little.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numba
import numpy as np
from threadpoolctl import ThreadpoolController

from knnlab import _kernels
from knnlab.options import check_k_fits, check_n_neighbors, check_p

DEFAULT_WORKING_MEMORY = 512 * 2**20  # bytes for one query chunk's work arrays
_EPS32 = float(np.finfo(np.float32).eps)
# Safety factor on the rounding-error bounds below (they are worst cases already).
_BOUND_SAFETY = 2.0


def check_search_inputs(
    X_train, X_query, n_neighbors, p
) -> tuple[np.ndarray, np.ndarray | None, float]:
    """The arguments of :func:`kneighbors`, checked and converted.

    Parameters
    ----------
    X_train : array-like of shape (n_train, n_features)
        Training points.
    X_query : array-like of shape (n_queries, n_features), or None
        Queries; None when the queries are the training points themselves.
    n_neighbors : int
        k, with ``1 <= k <= n_train`` (``n_train - 1`` when ``X_query`` is None).
    p : float
        Minkowski exponent, ``p >= 1`` (inf for Chebyshev).

    Returns
    -------
    X_train : ndarray of shape (n_train, n_features)
        C-ordered float64.
    X_query : ndarray of shape (n_queries, n_features), or None
        C-ordered float64.
    p : float

    Raises
    ------
    TypeError
        If ``n_neighbors`` is not an integer (a bool is not one) or ``p`` not a number.
    ValueError
        If ``X_train`` is not 2-D, ``X_query``'s shape does not match it, ``n_neighbors``
        is out of range, ``p`` is below 1 or NaN, or either array holds NaN or inf.
    """
    X_train = _check_training(X_train)
    if X_query is not None:
        X_query = _check_queries(X_query, X_train.shape[1])
    n_neighbors = check_n_neighbors(n_neighbors)
    check_k_fits(n_neighbors, X_train.shape[0], queries_are_training_rows=X_query is None)
    return X_train, X_query, check_p(p)


def _check_training(X_train) -> np.ndarray:
    """X_train (n_train, n_features) as C-ordered float64 (the kernels read rows), checked."""
    X_train = np.ascontiguousarray(X_train, dtype=np.float64)
    if X_train.ndim != 2:
        raise ValueError(f"X_train must be 2-D (n_train, n_features), got shape {X_train.shape}")
    _check_finite("X_train", X_train)
    return X_train


def _check_queries(X_query, n_features: int) -> np.ndarray:
    """X_query (n_queries, n_features) as C-ordered float64, checked against the width."""
    X_query = np.ascontiguousarray(X_query, dtype=np.float64)
    if X_query.ndim != 2 or X_query.shape[1] != n_features:
        raise ValueError(
            f"X_query must have shape (n_queries, {n_features}) to match X_train, "
            f"got shape {X_query.shape}"
        )
    _check_finite("X_query", X_query)
    return X_query


def _check_finite(name: str, X: np.ndarray) -> None:
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinite values; kNN needs finite features")


def _working_memory_bytes(working_memory: int | None) -> int:
    budget = DEFAULT_WORKING_MEMORY if working_memory is None else int(working_memory)
    if budget <= 0:
        raise ValueError(f"working_memory must be a positive number of bytes, got {budget}")
    return budget


def _check_n_jobs(n_jobs: int | None) -> None:
    if n_jobs is None or n_jobs == -1:
        return
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"n_jobs must be a positive integer, -1 or None, got {n_jobs!r}")


def _chunk_rows(n_train: int, uses_gram: bool, working_memory: int | None) -> int:
    """Queries per chunk: the (chunk, n_train) float32 product dominates at p = 2; the
    other kernels hold only per-query buffers, so their chunks are a fixed, large size."""
    budget = _working_memory_bytes(working_memory)
    per_row = 4 * max(n_train, 1) if uses_gram else 64 * 1024
    return max(4, (budget // per_row) // 4 * 4)


_CONTROLLER: ThreadpoolController | None = None
_CONTROLLER_LOCK = threading.Lock()


def _blas_threads(n: int):
    """Limit BLAS to n threads within the block. The controller is made once: making one
    reads the process's memory map to find the libraries, 2-3 ms, more than a single
    query's whole search costs."""
    global _CONTROLLER
    with _CONTROLLER_LOCK:
        if _CONTROLLER is None:
            _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=n, user_api="blas")


@contextlib.contextmanager
def _threads(n_jobs: int | None) -> Iterator[None]:
    """Run numba kernels and BLAS on ``n_jobs`` threads (None or -1: every core)."""
    _check_n_jobs(n_jobs)
    if n_jobs is None or n_jobs == -1:
        yield
        return
    n = min(n_jobs, numba.config.NUMBA_NUM_THREADS)
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    try:
        with _blas_threads(n):
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


# When the float32 candidate stage may run, from the data (checked once per search).
# A is the largest |centred coordinate| of training points and queries, A_t the training
# points' alone. Every |q_f - t_f| is at most 2A, so every value the stage forms (a p-th-power
# sum, |t|^2 - 2 q.t at p = 2) and the bound's 2^(p-1) (|q|_p^p + |t|_p^p) are at most
# d (2A)^p. The bound above is relative: float32 values under 2^-126 (subnormal, or flushed)
# carry absolute errors up to 2^-126 instead, at most four per feature (two conversions, the
# power or product, the partial sum): d 2^-124 per value. The smallest bound, for a query at
# the centre, is >= d eps 2^(p-1) A_t^p = d 2^-24 (2A_t)^p (|t|_p^p >= A_t^p for the row that
# holds A_t; at p = 2 exactly so too; at p = inf, a maximum, neither side has the d). So the
# stage runs only when
#   (overflow)  d (2A)^p <= 2^126, a quarter of float32's range (headroom for rounding up),
#   (underflow) 2^-24 (2A_t)^p >= 2^-124: the bound, before its safety factor, covers every
#               absolute error, so it stays a valid bound, and
#   2^(p-1) is finite in float64 (p - 1 < 1024), so the bound can be computed;
# with p = 1 for p = inf. Elsewhere the exact float64 scan runs (at p = 2: |A| beyond about
# 4.6e18 / sqrt(d), or A_t below 2^-51 = 4.4e-16, where squares near 2^-100 meet the 2^-126
# floor within float32's precision). At ordinary magnitudes and p (sklearn digits: A = 15.7,
# both hold for p <= 24) the stage runs with the bound above; the rule sends to the exact
# scan only data whose float32 values would overflow or underflow.
_F32_LOG2_MAX = int(np.finfo(np.float32).maxexp)  # 128: finite float32 values are < 2^128
_F32_LOG2_TINY = int(np.finfo(np.float32).minexp)  # -126: smallest normal float32, 2^-126
_F32_LOG2_EPS = int(np.finfo(np.float32).machep)  # -23
_F64_MAXEXP = int(np.finfo(np.float64).maxexp)  # 1024


def _float32_stage_fits(a_train: float, a_all: float, n_features: int, p: float) -> bool:
    """Whether the float32 candidate stage and its rounding bound are valid (see the rule
    above). a_train : largest |centred coordinate| of the training points' float32 copies;
    a_all : the larger of it and the queries' (in float64; float32 rounding moves it by
    2^-24, inside the rule's headroom). Either may be inf."""
    q = 1.0 if math.isinf(p) else p
    if not 0.0 < a_train <= a_all < math.inf or q - 1 >= _F64_MAXEXP:
        return False  # a constant training set, or coordinates beyond float64, or p too large
    log2_top = math.log2(n_features) + q * math.log2(2 * a_all)  # log2 of d (2A)^p
    log2_floor = _F32_LOG2_EPS - 1 + q * math.log2(2 * a_train)  # log2 of 2^-24 (2A_t)^p
    return log2_top <= _F32_LOG2_MAX - 2 and log2_floor >= _F32_LOG2_TINY + 2


@dataclass(frozen=True)
class _Training:
    """The training side of a search, prepared once: raw rows X (n, d) float64, their
    centred float32 copy T32 (n, d), its p-th-power norms (n,) float64 (and in float32 for
    the p = 2 kernels), and the candidate buffer width. With the pre-filter, T32 and the
    norms hold the rows in cluster order (see _LowRank): row i of T32 is row order[i] of
    X, and position is the inverse; the kernels see rows of T32, :func:`_rerank` maps
    them back. Otherwise order and position are None (the same order as X). columns (d,)
    is the feature order of T32 where the kernel exits early (see _exit_columns), else
    None: queries are put in the same order."""

    X: np.ndarray
    centre: np.ndarray
    T32: np.ndarray
    norms: np.ndarray
    norms32: np.ndarray
    norm_max: float
    kind: int
    p: float
    width: int
    order: np.ndarray | None = None
    position: np.ndarray | None = None
    columns: np.ndarray | None = None

    def t32_rows(self, rows: np.ndarray) -> np.ndarray:
        """The T32 rows of training rows (-1 stays -1)."""
        if self.position is None:
            return rows
        return np.where(rows >= 0, self.position[np.maximum(rows, 0)], -1)

    def training_rows(self, t32_rows: np.ndarray) -> np.ndarray:
        """The training rows of T32 rows (-1 stays -1)."""
        if self.order is None:
            return t32_rows
        return np.where(t32_rows >= 0, self.order[np.maximum(t32_rows, 0)], -1)


@dataclass(frozen=True)
class _LowRank:
    """Training points in the top principal directions of the training set: the first
    ``rank`` of them for the matrix multiply that screens every point, the next ones to
    tighten the bound of the few points the screen keeps.

    Its rows are the training points **in cluster order** (``order[i]`` is the training row
    at position i), as are the search's float32 rows (see _Training): points near each other
    in space sit near each other in memory, so the few a query keeps lie in few screening
    blocks, and a run of similar queries reads the same rows, from cache. Neighbours are
    mapped back to training rows before their exact re-rank, which breaks ties by training
    row as the plain search does: the order changes the speed only.

    basis : (d, rank + s) float64, orthonormal columns; coords : (n, rank) float32, the
    centred rows times the first ``rank`` columns; coords_sq : (n,) float32, their squared
    norms; rest : (n, s) float32, the centred rows times the other s columns; rest_sq :
    (n,) float32, their squared norms; order : (n,) int64; centroids : (c, rank) float64,
    the clusters' centres (queries are ordered by them too).
    """

    basis: np.ndarray
    coords: np.ndarray
    coords_sq: np.ndarray
    rest: np.ndarray
    rest_sq: np.ndarray
    order: np.ndarray
    centroids: np.ndarray

    @property
    def rank(self) -> int:
        return self.coords.shape[1]

    @property
    def refined_rank(self) -> int:
        return self.basis.shape[1]

    def query_coords(self, queries: np.ndarray, centre: np.ndarray) -> np.ndarray:
        """(m, rank + s) float32 coordinates of the queries (m, d)."""
        return _project(queries, centre, self.basis)

    def self_coords(self) -> np.ndarray:
        """(n, rank + s) float32 coordinates of the training points, in training-row order."""
        both = np.empty((len(self.order), self.refined_rank), dtype=np.float32)
        both[self.order, : self.rank] = self.coords
        both[self.order, self.rank :] = self.rest
        return both

    def query_order(self, q_coords: np.ndarray) -> np.ndarray:
        """(m,) the queries in cluster order (stable: row order within a cluster)."""
        labels = _nearest_centroid(q_coords[:, : self.rank], self.centroids)
        return np.argsort(labels, kind="stable")


# The pre-filter pays when the full multiply is long (many features) and a low rank keeps
# most of the variance; it costs a fixed set-up (principal directions, projections and the
# cluster order: about 0.35 s at 60,000 x 784) and per pair a scan the plain search also
# makes. Measured (see benchmarks/results_search.txt): about 3x faster than the plain search
# at 60,000 x 10,000 pairs of Fashion-MNIST, slower at 8,000 x 2,000.
_LOW_RANK_MIN_FEATURES = 256
_LOW_RANK_MIN_TRAIN = 4096
# n_queries * n_train: deciding costs about 0.13 s at 784 features (the principal
# directions of a sample; more for data it then turns down, e.g. isotropic noise), which must
# stay within 5 % of the search: the plain search of 2^28 pairs takes about 2.2 s there.
_LOW_RANK_MIN_PAIRS = 2**28
_LOW_RANK_MAX_NEIGHBORS = 32
_LOW_RANK_RANK = 48  # directions of the screening multiply, at most
_LOW_RANK_REFINED = 128  # directions of the tightened bound, at most a quarter of the features
# Training points are put in cluster order (see _LowRank): about this many per cluster, at
# most _CLUSTERS clusters, found by _KMEANS_ROUNDS rounds on a sample of _CLUSTER_SAMPLE.
# Columns of the pre-filter's product made at once (a multiple of the kernels' SCAN_BLOCK).
_PRODUCT_SLICE = 2048
_CLUSTERS = 256
_CLUSTER_SIZE = 64
_CLUSTER_SAMPLE = 8192
_KMEANS_ROUNDS = 4
_LOW_RANK_SAMPLE = 4096  # training rows the principal directions are estimated from
# The automatic choice skips data whose top components explain less of the variance than
# this (MNIST-shaped digits: 0.93 at rank 48; isotropic noise in 784 dimensions: 0.12), and
# tries small tasks first, so that data it cannot help cost little before it gives up.
_LOW_RANK_MIN_EXPLAINED = 0.5
_PILOT_ROWS = 64
_WIDE_BUFFER = 4096  # candidates one overflowed p = 2 query may collect before a full scan
# Queries per task of a p = 2 search worker (measured best at MNIST size).
_TASK_ROWS = 512
_TASK_ROWS_LOW_RANK = 256
# Stop pre-filtering when the queries so far average more full-dimension candidates than
# this fraction of the training set: each costs a dot product outside the matrix multiply,
# about 16 times the multiply's cost per point (measured: 0.5 us against 0.03 us for 784
# features). An unfinished query, answered by the plain search after all, counts as what
# that costs, 1/16 of the training set, not as all of it: that would let a few hard queries
# in a 64-query trial end the pre-filter on Fashion-MNIST, where it is 2-3x faster.
_LOW_RANK_GIVE_UP = 1 / 64
# A call of at most this many queries to a kept search (PreparedSearch) is taken for one
# request of many, as a served model gets them: it has the pre-filter prepared, whatever
# the pair count (see PreparedSearch._wants_prefilter).
_FEW_QUERIES = 64
_UNFINISHED_COST = 1 / 16


def prefilter_applies(
    prefilter: bool | None,
    kind: int,
    n_train: int,
    n_features: int,
    n_queries: int | None,
    k: int | None,
) -> bool:
    """Whether a search runs the low-rank pre-filter (see the module docstring).

    Parameters
    ----------
    prefilter : bool or None
        True or False decides (True still needs p = 2 and 2 features or more); None
        decides from the problem's size: many features, a large training set, many
        (query, training point) pairs and a small k (the ``_LOW_RANK_*`` constants).
    kind : int
        The search's :func:`knnlab._kernels.power_kind`; only 2 (p = 2) pre-filters.
    n_train : int
        Training points.
    n_features : int
        Features.
    n_queries : int or None
        Queries; None for a training set prepared once and searched again and again
        (:class:`PreparedSearch`), whose set-up is paid once, so the pair count does not
        decide.
    k : int or None
        Neighbours per query; None when it is not known yet (a prepared search checks it
        per call).

    Returns
    -------
    bool

    Raises
    ------
    ValueError
        If ``prefilter`` is not True, False or None.
    """
    if prefilter is not None and not isinstance(prefilter, bool):
        raise ValueError(f"prefilter must be True, False or None (decide), got {prefilter!r}")
    if kind != 2 or prefilter is False or n_features < 2:
        return False
    if prefilter:
        return True
    return (
        n_features >= _LOW_RANK_MIN_FEATURES
        and n_train >= _LOW_RANK_MIN_TRAIN
        and (n_queries is None or n_queries * n_train >= _LOW_RANK_MIN_PAIRS)
        and (k is None or k <= _LOW_RANK_MAX_NEIGHBORS)
    )


# Early exit at p = 3 and general p (see _kernels.approx_candidates_minkowski): partial sums
# checked every _EXIT_BLOCK features, on rows of more than two blocks. 128 measured best at
# p = 3 on Fashion-MNIST (64: more checks than exits pay for; 256: exits come too late).
_EXIT_BLOCK = 128


def _exit_columns(X: np.ndarray, centre: np.ndarray, kind: int, p: float) -> np.ndarray | None:
    """(d,) the features by decreasing mean |x_f - centre_f|^p over an evenly strided sample
    of the training rows X (n, d), for the early-exit kernel; None where it does not run.
    The order changes the speed only, never the result."""
    n, d = X.shape
    if kind not in (3, _kernels.KIND_GENERAL) or d <= 2 * _EXIT_BLOCK or n == 0:
        return None
    sample = np.abs(X[:: max(1, n // _LOW_RANK_SAMPLE)] - centre)
    spread = (sample**p).mean(axis=0)
    return np.argsort(-spread, kind="stable")


def _low_rank(X: np.ndarray, centre: np.ndarray, min_explained: float = 0.0) -> _LowRank | None:
    """Principal directions from an evenly strided sample of the training rows, or None
    when the refined ones explain less than ``min_explained`` of the sample's variance (the
    bound would then miss most of every distance). Any orthonormal basis keeps the search
    exact; principal ones make the bound tight. X : (n, d) training points; centre : (d,)."""
    n, d = X.shape
    refined_rank = min(_LOW_RANK_REFINED, max(1, d // 4))
    rank = min(_LOW_RANK_RANK, refined_rank)
    sample = X[:: max(1, n // _LOW_RANK_SAMPLE)] - centre
    values, vectors = np.linalg.eigh(sample.T @ sample)  # ascending eigenvalues
    values = np.maximum(values, 0.0)
    if values[::-1][:refined_rank].sum() < min_explained * values.sum():
        return None
    basis = np.ascontiguousarray(vectors[:, ::-1][:, :refined_rank])
    coords = _project(X, centre, basis)
    order, centroids = _cluster_order(coords[:, :rank])
    coords = coords[order]
    screen = np.ascontiguousarray(coords[:, :rank])
    rest = np.ascontiguousarray(coords[:, rank:])
    del coords
    return _LowRank(
        basis=basis,
        coords=screen,
        coords_sq=_square_sums(screen),
        rest=rest,
        rest_sq=_square_sums(rest),
        order=order,
        centroids=centroids,
    )


def _square_sums(coords: np.ndarray) -> np.ndarray:
    """(n,) float32 sums of the float64 squares of each row of coords (n, r) float32, in
    blocks of rows (a float64 copy of all of them would double the set-up's memory)."""
    out = np.empty(len(coords), dtype=np.float32)
    for start in range(0, len(coords), 8192):
        block = coords[start : start + 8192]
        out[start : start + len(block)] = np.square(block, dtype=np.float64).sum(axis=1)
    return out


def _nearest_centroid(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """(n,) index of the nearest of centroids (c, r) to each of points (n, r), in blocks."""
    labels = np.empty(len(points), dtype=np.int64)
    c_sq = np.square(centroids).sum(axis=1)
    # 2,048 rows at a time: three (rows, c) float64 temporaries, 4 MiB each at c = 256.
    for start in range(0, len(points), 2048):
        block = points[start : start + 2048].astype(np.float64)
        labels[start : start + len(block)] = np.argmin(c_sq - 2.0 * block @ centroids.T, axis=1)
    return labels


def _cluster_order(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A few rounds of k-means (Lloyd's, started from evenly strided rows, so deterministic)
    on a sample of points (n, r); returns (n,) the rows sorted by cluster, stably, and the
    centroids (c, r). Only the speed depends on it: any order gives the same neighbours."""
    n = len(points)
    n_clusters = max(1, min(_CLUSTERS, n // _CLUSTER_SIZE))
    sample = points[:: max(1, n // _CLUSTER_SAMPLE)].astype(np.float64)
    centroids = sample[np.linspace(0, len(sample) - 1, n_clusters).astype(np.int64)]
    for _ in range(_KMEANS_ROUNDS):
        labels = _nearest_centroid(sample, centroids)
        counts = np.bincount(labels, minlength=n_clusters)
        by_label = np.argsort(labels, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        occupied = counts > 0
        sums = np.add.reduceat(sample[by_label], starts[occupied], axis=0)
        centroids[occupied] = sums / counts[occupied, None]
    order = np.argsort(_nearest_centroid(points, centroids), kind="stable")
    return order, centroids


def _project(rows: np.ndarray, centre: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """(rows - centre) @ basis in float64, rounded to float32: (m, rank) from rows (m, d).
    Centring first keeps the float64 error relative to the centred norms, which the
    pre-filter's rounding bound is stated in (x V - c V would err relative to |x|: data far
    from the origin). In blocks of rows through one reused scratch block, not a centred
    float64 copy of all rows."""
    out = np.empty((len(rows), basis.shape[1]), dtype=np.float32)
    work = np.empty((max(1, min(len(rows), 4096)), rows.shape[1]))
    for start in range(0, len(rows), len(work)):
        block = rows[start : start + len(work)]
        centred = np.subtract(block, centre, out=work[: len(block)])
        out[start : start + len(block)] = centred @ basis
    return out


def _self_index(start: int, stop: int, is_self_query: bool) -> np.ndarray:
    """(stop - start,) the training row each query of rows start..stop skips: itself when
    the queries are the training points, else none (-1)."""
    if is_self_query:
        return np.arange(start, stop, dtype=np.int64)
    return np.full(stop - start, -1, dtype=np.int64)


def _plain_chunk(
    training: _Training, Q_raw: np.ndarray, self_index: np.ndarray, k: int, gram: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact neighbours of the queries Q_raw (m, d) by a scan of every training point.

    self_index : (m,) training row each query skips, or -1; gram : (>= m, n) float32 work
    buffer at p = 2, else None. Returns distances, indices (m, k).
    """
    kind, p = training.kind, training.p
    m, n_features = Q_raw.shape
    skip = training.t32_rows(self_index)  # what the float32 kernels skip
    if training.columns is None:
        Q32, q_norms, _ = _kernels.centred_float32(Q_raw, training.centre, kind, p)
    else:
        Q32, q_norms, _ = _kernels.centred_float32_columns(
            Q_raw, training.columns, training.centre, kind, p
        )
    if gram is not None:
        # gram is each worker's own buffer, reused from chunk to chunk: first touches of
        # fresh memory (page faults) cost about a millisecond per MB here.
        block = np.matmul(Q32, training.T32.T, out=gram[:m])
        best_v, best_j = _kernels.approx_candidates_gram(
            block, training.norms32, training.width, skip
        )
    else:
        # The kernel takes queries four at a time: pad with copies of the last query, not
        # zeros. Its early exit drops a row only when all four queries rule it out, and a
        # zero row far from the data would rule out nothing (one query per call: no exits).
        padded = -(-m // 4) * 4
        Q32 = np.vstack([Q32, np.repeat(Q32[-1:], padded - m, axis=0)])
        padded_self = np.concatenate([skip, np.repeat(skip[-1:], padded - m)])
        # 16 queries per task (measured best at 784 features), fewer on small problems so
        # every thread gets work.
        threads = numba.get_num_threads()
        query_chunk = max(4, min(16, -(-padded // (4 * threads)) // 4 * 4))
        # Early exits pay on batches only: measured at p = 3 on Fashion-MNIST, 1,000 queries
        # 2.1 s against 2.8 s, but one query 30 ms against 26 and 16 queries 76 ms against 62.
        exit_block = _EXIT_BLOCK if training.columns is not None and m >= _FEW_QUERIES else 0
        best_v, best_j = _kernels.approx_candidates_minkowski(
            Q32, training.T32, kind, p, training.width, padded_self, query_chunk, exit_block
        )
        best_v, best_j = best_v[:m], best_j[:m]
    threshold = _candidate_threshold(best_v, k, q_norms, training.norm_max, p, n_features)
    overflowed = np.flatnonzero(~(best_v > threshold[:, None]).any(axis=1))
    if not overflowed.size:
        return _rerank(training, Q_raw, best_v, best_j, threshold, self_index, k)
    # Near-ties wider than the buffer (clustered or concentrated data, or a rounding bound
    # wide next to a query's nearest distances): collect every candidate under the threshold
    # (from the product still in hand at p = 2, by a float32 pass that drops a row once its
    # partial sum exceeds the threshold elsewhere), rather than let the re-rank compute all
    # n exact float64 distances for such a query (measured at p = 3 on Fashion-MNIST: 18 of
    # 1,000 queries, 0.93 s of a 3.3 s search).
    if gram is not None:
        wide_v, wide_j = _kernels.gram_candidates_under(
            block,
            training.norms32,
            overflowed,
            threshold[overflowed],
            skip[overflowed],
            _WIDE_BUFFER,
        )
    else:
        wide_v, wide_j = _kernels.minkowski_candidates_under(
            Q32,
            training.T32,
            overflowed,
            threshold[overflowed],
            skip[overflowed],
            kind,
            p,
            _WIDE_BUFFER,
            _EXIT_BLOCK,
        )
    rest = np.setdiff1d(np.arange(m), overflowed)
    distances = np.empty((m, k))
    indices = np.empty((m, k), dtype=np.int64)
    distances[rest], indices[rest] = _rerank(
        training, Q_raw[rest], best_v[rest], best_j[rest], threshold[rest], self_index[rest], k
    )
    distances[overflowed], indices[overflowed] = _rerank(
        training,
        Q_raw[overflowed],
        wide_v,
        wide_j,
        threshold[overflowed],
        self_index[overflowed],
        k,
    )
    return distances, indices


def _rerank(
    training: _Training,
    Q_raw: np.ndarray,
    best_v: np.ndarray,
    best_j: np.ndarray,
    threshold: np.ndarray,
    self_index: np.ndarray,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_kernels.exact_rerank` of the queries Q_raw (m, d) from their candidate
    buffers best_v, best_j (m, width; rows of T32) and thresholds (m,); self_index (m,) in
    training rows. Returns distances, indices (m, k), in training rows: ties go to the
    lower training row whatever T32's order."""
    distances = np.empty((len(Q_raw), k))
    indices = np.empty((len(Q_raw), k), dtype=np.int64)
    _kernels.exact_rerank(
        np.ascontiguousarray(Q_raw),
        training.X,
        best_v,
        training.training_rows(best_j),
        threshold,
        k,
        training.kind,
        training.p,
        self_index,
        distances,
        indices,
    )
    return distances, indices


def _low_rank_chunk(
    training: _Training,
    low: _LowRank,
    Q_raw: np.ndarray,
    q_all: np.ndarray,
    self_index: np.ndarray,
    k: int,
    gram: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact neighbours (p = 2) of the queries Q_raw (m, d) through the low-rank pre-filter.

    q_all : (m, rank + s) float32, their coordinates (:meth:`_LowRank.query_coords`);
    self_index : (m,) training row each query skips, or -1; gram : (>= m, n) float32 work
    buffer. Returns distances, indices (m, k) and counts (m,): the number of
    full-dimension candidates per query, -1 for a query it could not finish (more
    candidates than the cap; its rows of distances and indices are garbage, left for the
    plain search)."""
    m, n_features = Q_raw.shape
    n_train = training.X.shape[0]
    Q32, q_norms, _ = _kernels.centred_float32(Q_raw, training.centre, 2, 2.0)
    q_coords, q_rest = np.ascontiguousarray(q_all[:, : low.rank]), q_all[:, low.rank :]
    q_sq = np.square(q_all, dtype=np.float64)
    q_coords_sq, q_refined_sq = q_sq[:, : low.rank].sum(axis=1), q_sq.sum(axis=1)
    block = gram[:m]
    block_mins = np.empty((m, -(-n_train // _kernels.SCAN_BLOCK)), dtype=np.float32)
    # The product in slices that stay in cache while their block minima are taken.
    for j0 in range(0, n_train, _PRODUCT_SLICE):
        j1 = min(j0 + _PRODUCT_SLICE, n_train)
        np.matmul(q_coords, low.coords[j0:j1].T, out=block[:, j0:j1])
        _kernels.block_minima(block[:, j0:j1], low.coords_sq, j0, block_mins)
    full_bound = _rounding_bound(q_norms, training.norm_max, 2.0, n_features)
    # A point is out when its projected squared distance (a lower bound, with its own
    # rounding bound) exceeds the k-th full squared distance plus the full rounding bound,
    # by a margin far above the float64 rounding of the exact distances (so no ties). The
    # refined value sums the screen's float32 value and the next directions' (a second
    # float32 dot product of refined_rank - rank terms): its error is within the bound of
    # refined_rank + 4 terms; + 8 leaves room for the float64 sums.
    low_bound = _rounding_bound(q_norms, training.norm_max, 2.0, low.rank)
    refined_bound = _rounding_bound(q_norms, training.norm_max, 2.0, low.refined_rank + 8)
    margin = 1e-9 * (q_norms + training.norm_max)
    cut_shift = (q_norms - q_coords_sq) + full_bound + low_bound + margin
    refined_shift = (q_norms - q_refined_sq) + full_bound + refined_bound + margin
    cap = max(4 * max(_kernels.PRUNE_WIDTH, 2 * k), n_train // 32)
    most = max(cap, n_train // 4)
    best_v = np.empty((m, training.width))
    best_j = np.empty((m, training.width), dtype=np.int64)
    threshold = np.empty(m)
    counts = _kernels.pruned_candidates(
        block,
        block_mins,
        low.coords_sq,
        cut_shift,
        np.ascontiguousarray(q_rest),
        low.rest,
        low.rest_sq,
        refined_shift,
        Q32,
        training.T32,
        training.norms32,
        full_bound,
        k,
        training.t32_rows(self_index),
        most,
        cap,
        best_v,
        best_j,
        threshold,
    )
    distances = np.empty((m, k))
    indices = np.empty((m, k), dtype=np.int64)
    done = np.flatnonzero(counts >= 0)
    if done.size:
        distances[done], indices[done] = _rerank(
            training, Q_raw[done], best_v[done], best_j[done], threshold[done], self_index[done], k
        )
    return distances, indices, counts


def _gram_search(
    training: _Training,
    low: _LowRank | None,
    queries: np.ndarray,
    is_self_query: bool,
    k: int,
    working_memory: int | None,
    may_give_up: bool,
    distances: np.ndarray,
    indices: np.ndarray,
) -> None:
    """The p = 2 search of every query (n_queries, d), written into distances, indices.

    One worker per thread takes chunks of queries in turn and runs each whole chunk on its
    own thread: a single-threaded matrix multiply into its own product buffer, then
    single-threaded kernels. Handing both cores from BLAS's threads to numba's and back
    at every chunk costs more than the chunk (each pool spins while the other works).
    With the pre-filter the queries are taken in cluster order (see _LowRank).
    """
    n_queries = len(queries)
    n_train = training.X.shape[0]
    n_threads = max(1, min(numba.get_num_threads(), -(-n_queries // _TASK_ROWS_LOW_RANK)))
    budget_rows = max(1, _chunk_rows(n_train, True, working_memory) // n_threads)
    q_all = None
    order = np.arange(n_queries)
    if low is not None:
        q_all = low.self_coords() if is_self_query else low.query_coords(queries, training.centre)
        order = low.order if is_self_query else low.query_order(q_all)
    lock = threading.Lock()
    progress = {"low": low, "queries": 0, "examined": 0, "next": 0}

    def next_task() -> tuple[np.ndarray, _LowRank | None] | None:
        """The next chunk of queries (rows), and whether to pre-filter it; small chunks while
        an automatic pre-filter is still on trial."""
        with lock:
            start = progress["next"]
            if start >= n_queries:
                return None
            low = progress["low"]
            size = _TASK_ROWS if low is None else _TASK_ROWS_LOW_RANK
            if may_give_up and low is not None and progress["queries"] == 0:
                size = _PILOT_ROWS  # on trial
            stop = min(start + min(size, budget_rows), n_queries)
            progress["next"] = stop
            return order[start:stop], low

    def work() -> None:
        numba.set_num_threads(1)  # per thread: this worker's kernels run on it alone
        gram = np.empty((0, n_train), dtype=np.float32)  # grown to the largest task, reused
        while (task := next_task()) is not None:
            rows, current = task
            if len(gram) < len(rows):
                gram = np.empty((len(rows), n_train), dtype=np.float32)
            counts = _search_task(
                training, current, queries, q_all, rows, is_self_query, k, gram, distances, indices
            )
            if may_give_up and counts is not None:
                with lock:
                    progress["queries"] += len(counts)
                    unfinished = max(1, int(_UNFINISHED_COST * n_train))
                    progress["examined"] += int(np.where(counts < 0, unfinished, counts).sum())
                    if progress["examined"] > _LOW_RANK_GIVE_UP * n_train * progress["queries"]:
                        progress["low"] = None  # the bound rules out too little on these data

    with _blas_threads(1):
        if n_threads == 1:
            previous = numba.get_num_threads()
            try:
                work()
            finally:
                numba.set_num_threads(previous)
        else:
            with ThreadPoolExecutor(n_threads, thread_name_prefix="knnlab-search") as pool:
                for future in [pool.submit(work) for _ in range(n_threads)]:
                    future.result()


def _search_task(
    training: _Training,
    low: _LowRank | None,
    queries: np.ndarray,
    q_all: np.ndarray | None,
    rows: np.ndarray,
    is_self_query: bool,
    k: int,
    gram: np.ndarray,
    distances: np.ndarray,
    indices: np.ndarray,
) -> np.ndarray | None:
    """Search the queries at rows (m,) into those rows of distances, indices. With ``low``,
    pre-filter and return the candidates examined per query (m,): -1 where the bound gave
    up and the plain search answered; without, search plainly and return None."""
    Q_raw = queries[rows]
    self_index = rows if is_self_query else np.full(len(rows), -1, dtype=np.int64)
    if low is None:
        distances[rows], indices[rows] = _plain_chunk(training, Q_raw, self_index, k, gram)
        return None
    found_d, found_i, counts = _low_rank_chunk(
        training, low, Q_raw, q_all[rows], self_index, k, gram
    )
    unfinished = np.flatnonzero(counts < 0)
    if unfinished.size:
        found_d[unfinished], found_i[unfinished] = _plain_chunk(
            training, Q_raw[unfinished], self_index[unfinished], k, gram
        )
    distances[rows], indices[rows] = found_d, found_i
    return counts


def _exact_search(
    X_train: np.ndarray,
    queries: np.ndarray,
    is_self_query: bool,
    k: int,
    p: float,
    working_memory: int | None,
    distances: np.ndarray,
    indices: np.ndarray,
) -> None:
    """The search with no float32 stage (:func:`_kernels.exact_scan`) of every query
    (n_queries, d) against X_train (n, d), written into distances, indices (n_queries, k).
    It holds no per-pair array: chunks only bound the per-task query count."""
    kind = _kernels.power_kind(p)
    chunk = _chunk_rows(X_train.shape[0], False, working_memory)
    threads = numba.get_num_threads()
    for start in range(0, len(queries), chunk):
        stop = min(start + chunk, len(queries))
        # At most 16 queries per task (they share each training tile), fewer on small
        # problems so every thread gets work.
        query_chunk = max(1, min(16, -(-(stop - start) // threads)))
        _kernels.exact_scan(
            queries[start:stop],
            X_train,
            k,
            kind,
            p,
            _self_index(start, stop, is_self_query),
            query_chunk,
            distances[start:stop],
            indices[start:stop],
        )


def check_finite_distances(distances: np.ndarray, p: float, a_all: float) -> None:
    """Refuse to return neighbours at distances beyond float64's range: their order would be
    meaningless (every one is inf).

    Parameters
    ----------
    distances : ndarray of shape (n_queries, n_neighbors)
        A search's distances.
    p : float
        The search's Minkowski exponent, for the message.
    a_all : float
        The largest |coordinate - training mean|, for the message.

    Raises
    ------
    ValueError
        If any distance is inf.
    """
    if np.isinf(distances).any():
        row = int(np.flatnonzero(np.isinf(distances).any(axis=1))[0])
        raise ValueError(
            f"Expected neighbour distances below float64's maximum ({_kernels._F64_MAX:.3g}), "
            f"but query {row} has neighbours farther than that at p = {p:g} (largest "
            f"|coordinate - training mean| = {a_all:.3g}); rescale the features (e.g. "
            f"scale='standard' or 'minmax' in the estimators)"
        )


def kneighbors(
    X_train,
    X_query,
    n_neighbors: int,
    *,
    p: float = 2,
    working_memory: int | None = None,
    n_jobs: int | None = None,
    prefilter: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest training points of each query under the Minkowski distance, on this
    machine (:func:`knnlab.search.kneighbors` takes the same arguments and a Dask scheduler).

    Parameters
    ----------
    X_train : array-like of shape (n_train, n_features)
    X_query : array-like of shape (n_queries, n_features), or None
        None means the queries are the training points themselves; each point's own index
        is then never returned (its duplicates are).
    n_neighbors : int
        k, with ``1 <= k <= n_train`` (``n_train - 1`` when ``X_query`` is None).
    p : float, default 2
        Minkowski exponent, ``p >= 1``; ``float("inf")`` for the Chebyshev distance. Any p
        is exact (p = 1000 or 1e300 too): see the module docstring.
    working_memory : int, optional
        Bytes allowed for one chunk's work arrays; default 512 MiB.
    n_jobs : int, optional
        Threads for the kernels and BLAS; None or -1 uses every core.
    prefilter : bool, optional
        p = 2 only: rule out most training points with a lower bound from their top
        principal components before computing full distances. None (default) decides from
        the problem's size and stops when the bound rules out too little. The results are
        identical either way; only the time differs.

    Returns
    -------
    distances : ndarray of shape (n_queries, n_neighbors), float64
        Sorted ascending along each row.
    indices : ndarray of shape (n_queries, n_neighbors), int64
        Training-row indices; among equal distances the lower index comes first.

    Raises
    ------
    TypeError
        If ``n_neighbors`` is not an integer.
    ValueError
        On bad arguments (see :func:`check_search_inputs`; ``working_memory`` or
        ``n_jobs`` not positive, ``prefilter`` not a bool or None), non-finite features, or
        neighbour distances beyond float64's range (coordinates near 1e308), which cannot
        be ranked.
    """
    X_train, X_query, p = check_search_inputs(X_train, X_query, n_neighbors, p)
    return search_validated(X_train, X_query, n_neighbors, p, working_memory, n_jobs, prefilter)


def search_validated(
    X_train: np.ndarray,
    X_query: np.ndarray | None,
    n_neighbors: int,
    p: float,
    working_memory: int | None = None,
    n_jobs: int | None = None,
    prefilter: bool | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`kneighbors` on arguments already checked, for a caller that checked them once
    (a fitted estimator's search): the search and its final check, not the argument checks,
    which would rescan the whole training set for NaN on every call.

    Parameters
    ----------
    X_train, X_query : ndarray
        As :func:`check_search_inputs` returns them: C-ordered float64, finite.
    n_neighbors : int
        k, checked against the training set.
    p : float
        Minkowski exponent, checked.
    working_memory, n_jobs, prefilter
        As in :func:`kneighbors`.

    Returns
    -------
    distances, indices : ndarray of shape (n_queries, n_neighbors)
        As :func:`kneighbors` returns them.
    """
    search = PreparedSearch.from_checked(
        X_train, p, working_memory=working_memory, n_jobs=n_jobs, prefilter=prefilter, kept=False
    )
    return search.search_validated(X_query, n_neighbors)


def search_checked(
    X_train: np.ndarray,
    X_query: np.ndarray | None,
    n_neighbors: int,
    p: float,
    working_memory: int | None,
    n_jobs: int | None,
    prefilter: bool | None,
    whole: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """:func:`kneighbors` on checked inputs, without its final check: a one-off search,
    which prepares the training side for this call only.

    A shard of a distributed search may hold only distant points (distances inf) while the
    merged top k does not, so the check waits for the merge.

    Parameters
    ----------
    X_train : ndarray of shape (n_train, n_features)
        Training points, as :func:`check_search_inputs` returns them.
    X_query : ndarray of shape (n_queries, n_features), or None
        Queries, likewise; None for the training points themselves.
    n_neighbors : int
        k, checked.
    p : float
        Minkowski exponent, checked.
    working_memory : int or None
        As in :func:`kneighbors`.
    n_jobs : int or None
        As in :func:`kneighbors`.
    prefilter : bool or None
        As in :func:`kneighbors`.
    whole : tuple of (int, int), optional
        (n_train, n_queries) of the whole search when this is one task of it (a shard or a
        query block): the automatic pre-filter decides on the whole search's size, so a
        search split in many small tasks prunes as one machine would (speed only).

    Returns
    -------
    distances : ndarray of shape (n_queries, n_neighbors), float64
        Sorted ascending along each row; inf beyond float64's range.
    indices : ndarray of shape (n_queries, n_neighbors), int64
        Training-row indices; among equal distances the lower index comes first.
    a_all : float
        The largest |centred coordinate|, for the message of
        :func:`check_finite_distances`.

    Raises
    ------
    ValueError
        If ``working_memory`` or ``n_jobs`` is not positive, or ``prefilter`` is not a
        bool or None.
    """
    search = PreparedSearch.from_checked(
        X_train, p, working_memory=working_memory, n_jobs=n_jobs, prefilter=prefilter, kept=False
    )
    return search.search_checked(X_query, n_neighbors, whole)


@dataclass(frozen=True)
class _Prepared:
    """What a :class:`PreparedSearch` computes once: the float32 side of the search (its
    ``width`` set per call), the pre-filter's projections or None, and the largest
    |centred coordinate| of the training rows in float64 (``a_rows``) and of their float32
    copies (``a_train``); tried_prefilter: whether the pre-filter was wanted (``low`` is
    then None only where it cannot help: magnitudes, or no dominant directions)."""

    training: _Training
    low: _LowRank | None
    a_rows: float
    a_train: float
    tried_prefilter: bool


def _check_options(working_memory, n_jobs, prefilter) -> None:
    _working_memory_bytes(working_memory)
    _check_n_jobs(n_jobs)
    prefilter_applies(prefilter, 0, 0, 0, None, None)


class PreparedSearch:
    """The exact search of one training set, prepared once and searched again and again.

    A fitted model answering one request at a time would otherwise redo, on every call, the
    work that depends only on the training set: its mean, its centred float32 copy and
    norms, and at p = 2 on wide data the pre-filter's principal directions, projections and
    cluster order. Here the first search (or :meth:`prepare`) does it, every later one
    pays only for its own queries. The neighbours and distances are those of
    :func:`kneighbors`, bit for bit; the one-off function suits a single call.

    The pre-filter is prepared for the first call of at most 64 queries (one request of
    many, whose set-up is paid once) or for a batch large enough to recover its set-up by
    itself (:func:`prefilter_applies`); a search prepared for a smaller batch adds it when
    single requests follow.

    Parameters
    ----------
    X_train : array-like of shape (n_train, n_features)
        Training points, finite. A C-ordered float64 array is kept by reference, not
        copied (as scikit-learn's estimators keep theirs): do not change it afterwards,
        or the prepared copy and the array disagree; pass a copy to keep changing yours.
    p : float, default 2
        Minkowski exponent, ``p >= 1``; ``float("inf")`` for Chebyshev.
    working_memory : int, optional
        As in :func:`kneighbors`.
    n_jobs : int, optional
        As in :func:`kneighbors`.
    prefilter : bool, optional
        As in :func:`kneighbors`; None (default) prepares the pre-filter when the training
        set is large and wide enough (:func:`prefilter_applies` with ``n_queries=None``),
        whatever the number of queries per call, since its set-up is paid once.

    Raises
    ------
    TypeError
        If ``p`` is not a number.
    ValueError
        If ``X_train`` is not 2-D or holds NaN or inf, ``p`` is below 1, or an option is
        not allowed.

    Examples
    --------
    >>> import numpy as np
    >>> from knnlab.neighbors import PreparedSearch
    >>> search = PreparedSearch(np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]]))
    >>> distances, indices = search.kneighbors(np.array([[0.9, 0.0]]), 2)
    >>> indices.tolist()
    [[1, 0]]
    """

    def __init__(self, X_train, p: float = 2, *, working_memory=None, n_jobs=None, prefilter=None):
        X_train = _check_training(X_train)
        _check_options(working_memory, n_jobs, prefilter)
        self._init(X_train, check_p(p), working_memory, n_jobs, prefilter, kept=True)

    @classmethod
    def from_checked(
        cls,
        X_train: np.ndarray,
        p: float,
        *,
        working_memory: int | None = None,
        n_jobs: int | None = None,
        prefilter: bool | None = None,
        kept: bool = True,
    ) -> PreparedSearch:
        """A prepared search of a training set checked already, for a caller that checked
        it once (a fitted estimator): nothing is checked again.

        Parameters
        ----------
        X_train : ndarray of shape (n_train, n_features)
            C-ordered float64, finite, as :func:`check_search_inputs` returns it.
        p : float
            Minkowski exponent, checked.
        working_memory, n_jobs, prefilter
            As in the constructor.
        kept : bool, default True
            False for a one-off search: the pre-filter is then decided per call from the
            number of (query, training point) pairs, as :func:`kneighbors` does.

        Returns
        -------
        PreparedSearch
        """
        search = cls.__new__(cls)
        search._init(X_train, p, working_memory, n_jobs, prefilter, kept)
        return search

    def _init(self, X_train, p, working_memory, n_jobs, prefilter, kept) -> None:
        self.X_train = X_train
        self.p = p
        self.working_memory = working_memory
        self.n_jobs = n_jobs
        self.prefilter = prefilter
        self._kept = kept
        self._kind = _kernels.power_kind(p)
        self._centre: np.ndarray | None = None
        self._prepared: _Prepared | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        # Pickled (a fitted estimator, a copy) without its lock or what it prepared: that
        # is derived from the training set and is prepared again at the first search.
        state = self.__dict__.copy()
        del state["_lock"]
        state["_prepared"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def centre(self) -> np.ndarray:
        """(n_features,) the training mean, which every float32 value is centred on."""
        if self._centre is None:
            self._centre = self.X_train.mean(axis=0)
        return self._centre

    @property
    def nbytes(self) -> int:
        """Bytes held beyond the training set: the float32 copy, norms and projections."""
        prepared = self._prepared
        if prepared is None:
            return 0
        arrays = [prepared.training.T32, prepared.training.norms, prepared.training.norms32]
        if prepared.training.position is not None:
            arrays += [prepared.training.position, prepared.training.order]
        if prepared.training.columns is not None:
            arrays.append(prepared.training.columns)
        if prepared.low is not None:
            low = prepared.low
            arrays += [low.basis, low.coords, low.coords_sq, low.rest, low.rest_sq, low.centroids]
        return int(sum(a.nbytes for a in arrays))

    def prepare(self) -> PreparedSearch:
        """Prepare now what single requests need (a server, before its first request):
        the float32 copy, and the pre-filter where it applies.

        Returns
        -------
        PreparedSearch
            self.
        """
        self._prepare(self._wants_prefilter(None, None, None), 0.0)
        return self

    def kneighbors(self, X_query=None, n_neighbors: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Exact k nearest training points of each query, as :func:`kneighbors`.

        Parameters
        ----------
        X_query : array-like of shape (n_queries, n_features), optional
            Queries; None for the training points themselves (each one's own index left
            out).
        n_neighbors : int, default 5
            k, with ``1 <= k <= n_train`` (``n_train - 1`` when ``X_query`` is None).

        Returns
        -------
        distances : ndarray of shape (n_queries, n_neighbors), float64
            Sorted ascending along each row.
        indices : ndarray of shape (n_queries, n_neighbors), int64
            Training-row indices; among equal distances the lower index comes first.

        Raises
        ------
        TypeError
            If ``n_neighbors`` is not an integer.
        ValueError
            On a query shape that does not match, non-finite queries, k out of range, or
            neighbour distances beyond float64's range.
        """
        if X_query is not None:
            X_query = _check_queries(X_query, self.X_train.shape[1])
        n_neighbors = check_n_neighbors(n_neighbors)
        check_k_fits(n_neighbors, len(self.X_train), queries_are_training_rows=X_query is None)
        return self.search_validated(X_query, n_neighbors)

    def search_validated(
        self, X_query: np.ndarray | None, n_neighbors: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`kneighbors` of queries and k checked already (a fitted estimator's), with
        the final check: distances beyond float64's range are refused.

        Parameters
        ----------
        X_query : ndarray of shape (n_queries, n_features), or None
            C-ordered float64, finite; None for the training points themselves.
        n_neighbors : int
            k, checked against the training set.

        Returns
        -------
        distances, indices : ndarray of shape (n_queries, n_neighbors)
            As :func:`kneighbors` returns them.
        """
        distances, indices, a_all = self.search_checked(X_query, n_neighbors)
        check_finite_distances(distances, self.p, a_all)
        return distances, indices

    def _wants_prefilter(self, n_queries: int | None, k: int | None, whole) -> bool:
        """Whether this call should have the pre-filter (n_queries None: :meth:`prepare`).
        A call of a few queries to a kept search is one request of many (a server): the
        set-up is paid once for all of them, so the pair count does not decide. A batch
        decides as a one-off search would, so a model fitted for one batch (a CV fold)
        does not pay a set-up its search would not recover."""
        n_train, n_features = self.X_train.shape
        if self._kept and (n_queries is None or n_queries <= _FEW_QUERIES):
            return prefilter_applies(self.prefilter, self._kind, n_train, n_features, None, k)
        sized_train, sized_queries = whole or (n_train, n_queries)
        return prefilter_applies(
            self.prefilter, self._kind, sized_train, n_features, sized_queries, k
        )

    def _prepare(self, wants_prefilter: bool, a_queries: float) -> _Prepared:
        """The float32 side, and the pre-filter when wanted and the magnitudes allow it,
        computed on first use (once, under a lock: a server may search from threads)."""
        with self._lock:
            prepared = self._prepared
            if prepared is not None and (prepared.tried_prefilter or not wants_prefilter):
                return prepared
            # First use, or a kept search prepared for batches that now gets single
            # requests: (re)built with the pre-filter, once.
            X, centre, kind, p = self.X_train, self.centre, self._kind, self.p
            n_features = X.shape[1]
            low, a_rows = None, math.nan
            if wants_prefilter:
                # The pre-filter's cluster order is also the order of the float32 rows, so
                # it comes first; its float64 work needs magnitudes the float32 stage
                # accepts too.
                a_rows = _kernels.largest_centred(X, centre)
                if _float32_stage_fits(a_rows, max(a_rows, a_queries), n_features, p):
                    auto = self.prefilter is None
                    with _threads(self.n_jobs):
                        low = _low_rank(X, centre, _LOW_RANK_MIN_EXPLAINED if auto else 0.0)
            # float32 copies (C order: the kernels read rows), their p-th-power norms and
            # their largest |coordinate|, one pass.
            columns = None if low is not None else _exit_columns(X, centre, kind, p)
            if columns is not None:
                T32, t_norms, a_train = _kernels.centred_float32_columns(
                    X, columns, centre, kind, p
                )
            elif low is None:
                T32, t_norms, a_train = _kernels.centred_float32(X, centre, kind, p)
            else:
                T32, t_norms, a_train = _kernels.centred_float32_rows(X, low.order, centre, kind, p)
            training = _Training(
                X,
                centre,
                T32,
                t_norms,
                t_norms.astype(np.float32),
                float(t_norms.max(initial=0.0)),
                kind,
                p,
                0,
                order=None if low is None else low.order,
                position=None if low is None else np.argsort(low.order),
                columns=columns,
            )
            self._prepared = _Prepared(training, low, a_rows, a_train, wants_prefilter)
            return self._prepared

    def search_checked(
        self, X_query: np.ndarray | None, n_neighbors: int, whole: tuple[int, int] | None = None
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """The search of checked queries for a checked k, without the final check of the
        distances (see :func:`search_checked`).

        Parameters
        ----------
        X_query : ndarray of shape (n_queries, n_features), or None
            C-ordered float64, finite; None for the training points themselves.
        n_neighbors : int
            k, checked against the training set.
        whole : tuple of (int, int), optional
            As in :func:`search_checked`.

        Returns
        -------
        distances, indices : ndarray of shape (n_queries, n_neighbors)
            As :func:`kneighbors` returns them; distances inf beyond float64's range.
        a_all : float
            The largest |centred coordinate|, for :func:`check_finite_distances`.
        """
        X_train, p = self.X_train, self.p
        is_self_query = X_query is None
        queries = X_train if is_self_query else X_query
        n_queries, n_features = queries.shape
        n_train = X_train.shape[0]
        centre = self.centre
        a_queries = 0.0 if is_self_query else _kernels.largest_centred(queries, centre)
        wants_prefilter = self._wants_prefilter(n_queries, n_neighbors, whole)
        # A kept search prepares for every query to come, not for this call's magnitudes.
        prepared = self._prepare(wants_prefilter, 0.0 if self._kept else a_queries)
        a_all = max(prepared.a_train, a_queries)
        distances = np.empty((n_queries, n_neighbors))
        indices = np.empty((n_queries, n_neighbors), dtype=np.int64)
        if not _float32_stage_fits(prepared.a_train, a_all, n_features, p):
            with _threads(self.n_jobs):
                _exact_search(
                    X_train,
                    queries,
                    is_self_query,
                    n_neighbors,
                    p,
                    self.working_memory,
                    distances,
                    indices,
                )
            return distances, indices, a_all
        low = prepared.low
        if low is not None and not (
            (self.prefilter or n_neighbors <= _LOW_RANK_MAX_NEIGHBORS)
            and _float32_stage_fits(prepared.a_rows, max(prepared.a_rows, a_queries), n_features, p)
        ):
            low = None  # prepared, but not for this call's k or queries' magnitudes
        training = dataclasses.replace(
            prepared.training, width=_buffer_width(n_train - int(is_self_query), n_neighbors)
        )
        with _threads(self.n_jobs):
            if self._kind == 2:
                _gram_search(
                    training,
                    low,
                    queries,
                    is_self_query,
                    n_neighbors,
                    self.working_memory,
                    self.prefilter is None,
                    distances,
                    indices,
                )
            else:
                chunk = _chunk_rows(n_train, False, self.working_memory)
                for start in range(0, n_queries, chunk):
                    stop = min(start + chunk, n_queries)
                    self_index = _self_index(start, stop, is_self_query)
                    distances[start:stop], indices[start:stop] = _plain_chunk(
                        training, queries[start:stop], self_index, n_neighbors, None
                    )
        return distances, indices, a_all


def warm_up(p: float = 2, n_features: int = 4) -> None:
    """Compile (or load from numba's cache) the kernels a search at ``p`` uses, so a timed
    search measures the search and not the one-time compilation.

    Parameters
    ----------
    p : float, default 2
        The Minkowski exponent of the searches to come.
    n_features : int, default 4
        Features of the small random problem searched.
    """
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, n_features))
    kneighbors(X, X[:4], 2, p=p)
    kneighbors(X, None, 2, p=p)
    if _kernels.power_kind(p) == 2:
        kneighbors(X, X[:4], 2, p=p, prefilter=True)


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

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Every row of every fold.
    folds : list of (ndarray of shape (n_train,), ndarray of shape (n_valid,))
        (train_indices, valid_indices) pairs whose validation parts partition the rows and
        whose training parts are their sorted complements (as scikit-learn's KFold and
        StratifiedKFold give).
    n_neighbors : int
        k.
    working_memory : int, optional
        Bytes allowed for one block's product; default 512 MiB.

    Returns
    -------
    list of tuple of (ndarray, ndarray), or None
        One (distances, indices into train_indices) pair per fold, each of shape
        (n_valid, n_neighbors). None when the folds are not such a partition, a training
        fold has fewer than ``n_neighbors`` rows, X holds NaN or inf, or the squares of the
        data do not fit float32 (centred magnitudes beyond about 1e18 or below about
        4e-16, see :func:`_float32_stage_fits`): callers then search fold by fold, and
        :func:`kneighbors` takes its exact float64 path.

    Raises
    ------
    ValueError
        If ``working_memory`` is not positive.
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
    X32, norms, largest = _kernels.centred_float32(X, X.mean(axis=0), 2, 2.0)
    # Every row is someone's training point and someone's query: one magnitude for both.
    if not _float32_stage_fits(largest, largest, d, 2.0):
        return None
    norms32 = norms.astype(np.float32)
    width = _buffer_width(min(len(t) for t, _ in folds), n_neighbors)
    best_v = np.full((n, width), np.inf)
    best_j = np.full((n, width), -1, dtype=np.int64)  # global row indices
    worst = np.full(n, np.inf)
    block = cols32_t = None
    for a in range(len(valid)):
        for b in range(a + 1, len(valid)):
            cols = valid[b]
            step = _chunk_rows(len(cols), True, working_memory)
            cols32_t = X32[cols].T  # (d, n_b): copied once per pair of folds, not per chunk
            for start in range(0, len(valid[a]), step):
                rows = valid[a][start : start + step]
                block = X32[rows] @ cols32_t  # (rows, n_b) float32, used both ways
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
    # The float32 side is done with: free it before each fold's float64 training rows are
    # gathered for the re-rank (on Fashion-MNIST, 0.7 GB less at the peak).
    del X32, block, cols32_t
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
            np.full(len(rows), -1, dtype=np.int64),
            distances,
            indices,
        )
        results.append((distances, indices))
    return results
