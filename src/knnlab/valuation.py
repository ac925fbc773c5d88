"""Exact data values of training rows for k-nearest-neighbour classification: kNN-Shapley.

The Shapley value of a training row is its marginal contribution to a utility, averaged over
every order in which the training rows could be added. For the unweighted kNN classifier's
utility it has a closed form (Jia et al., "Efficient task-specific data valuation for nearest
neighbor algorithms", VLDB 2019, Theorem 1): one sort of the training rows by distance per
test row and one pass over them, instead of an average over N! orders.

Everything rests on that sort being the exact one, the order :func:`knnlab.neighbors.kneighbors`
uses: exact float64 Minkowski distances as its module docstring defines them, ties to the lower
training index. A value is a sum over the whole order, not only the first k, so every position
counts, and data as images hold many exact ties. How the order is found fast and still exactly
is described in :func:`knn_shapley`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
from scipy.spatial.distance import cdist

from knnlab import _kernels
from knnlab.progress import Progress

# Bytes for one block of test rows' work arrays (n_train values per test row each).
DEFAULT_BLOCK_BYTES = 256 * 2**20
# Bytes per (test row, training row) pair a block holds at its peak, the search for near-ties:
# the distances, the order, the sorted distances, their gaps and the gaps' limits (8 bytes
# each) and a few boolean masks. The values' pass needs less (the order, two float64 arrays).
_BYTES_PER_PAIR = 48
# Bytes for the gathered rows of one chunk of exactly recomputed distances.
_PAIR_CHUNK_BYTES = 32 * 2**20

_U = 2.0**-53  # unit roundoff of float64
_TINY = 2.0**-1074  # smallest positive float64: the absolute error of an underflowing result
_F64_MAX = float(np.finfo(np.float64).max)
# As knnlab._kernels: a pair's p-th powers are summed plainly while the largest lies in
# [d * 2^-1000, max / (2 d)], else scaled by the pair's largest coordinate difference.
_PLAIN_MIN = 2.0**-1000
# Integer data: squared distances up to 2^40 are exact in a float64 matrix multiply, and their
# square roots are distinct (neighbouring roots lie 2^-21 apart, float64 spacing there is
# 2^-32), so ranking the squares ranks the distances kneighbors computes.
_EXACT_SQUARES_MAX = 2.0**40
# Integer data at p = 1: sums of |differences| are exact while below 2^53.
_EXACT_SUMS_MAX = 2.0**53


def knn_shapley(
    X_train,
    y_train,
    X_test,
    y_test,
    n_neighbors: int,
    *,
    p: float = 2.0,
    block_rows: int | None = None,
) -> np.ndarray:
    """Each training row's exact Shapley value for the unweighted kNN classification
    utility, averaged over the test rows.

    For one test row (x, y) the utility of a set S of training rows is
    ``U(S) = (1/K) * #{the min(K, |S|) nearest members of S labelled y}`` (``U({}) = 0``).
    With the training rows sorted by distance to x, a_1 .. a_N, the values are
    ``s(a_N) = 1[y(a_N) = y] * min(K, N) / (K N)`` and
    ``s(a_i) = s(a_(i+1)) + (1[y(a_i) = y] - 1[y(a_(i+1)) = y]) * min(K, i) / (K i)``
    (Jia et al. 2019, Theorem 1; they state the first as ``1[...] / N``, the same for
    K <= N, and the Shapley value for K > N, where U is additive).

    The order is exact: that of the float64 distances :func:`knnlab.neighbors.kneighbors`
    computes, ties to the lower training index, at every position, not only the first K
    (the tests compare it with ``kneighbors(X_train, X_test, n_train)``):

    * p = 2, integer data (train and test) whose squared distances stay within 2^40
      (images of 0..255 with 784 features reach 2^28): the matrix-multiply form
      ``|x|^2 + |t|^2 - 2 x.t`` is exact, every product and partial sum being an integer
      below 2^53, whatever order BLAS adds in; distinct squares have distinct float64
      roots there, so ranking the squares, as integers with the training index packed in
      their low bits, is ranking kneighbors' distances;
    * p = 2, other data: the same form on data centred on the training mean. Where
      kneighbors puts row a before row b, a's value exceeds b's by at most
      ``(4d + 28) u R^2`` (u = 2^-53, d features, R = |x| + max |t| centred: the multiply's
      rounding, the centring's, and how far apart the squares of two distances kneighbors
      orders or ties can lie). Neighbours sorted within twice that of each other are
      linked, and each linked run is sorted again by distances computed from the coordinate
      differences, as kneighbors computes them, then by index. Two rows in the wrong order
      are always in one run, so the result is exact; only near-ties (exact ties among them)
      cost more than the multiply. Keeps a centred float64 copy of X_train;
    * p = 1: :func:`scipy.spatial.distance.cdist`'s sums, exact on integer data, else within
      a relative bound of kneighbors' (the same terms summed in another order) and repaired
      as at p = 2; p = inf: its largest differences, kneighbors' distances bit for bit;
    * other p: every distance from the search's own function
      (:func:`knnlab._kernels._exact_distance`), one pair at a time, about 1 us each: exact,
      but slow on large data.

    Parameters
    ----------
    X_train : array-like of shape (n_train, n_features)
        Training rows, finite.
    y_train : array-like of shape (n_train,)
        Their labels.
    X_test : array-like of shape (n_test, n_features)
        Test rows, finite.
    y_test : array-like of shape (n_test,)
        Their labels; a label no training row has is never matched.
    n_neighbors : int
        K, at least 1; larger than n_train is allowed.
    p : float, default 2.0
        Minkowski exponent, ``p >= 1``; ``float("inf")`` for the Chebyshev distance.
    block_rows : int, optional
        Test rows per block. Default: as many as keep a block's work arrays under 256 MiB
        (about 90 with 60,000 training rows). The values do not depend on it beyond float
        rounding of their sum.

    Returns
    -------
    ndarray of shape (n_train,), float64
        Row i's value, averaged over the test rows. They sum to the mean utility of the
        whole training set (the efficiency axiom).

    Raises
    ------
    ValueError
        On an argument out of range (named in the message), arrays of the wrong shape,
        non-finite features, or distances beyond float64's range (coordinates near 1e308),
        which cannot be ranked.
    """
    X_train, X_test, train_codes, test_codes = _checked_data(X_train, y_train, X_test, y_test)
    n_neighbors = _checked_n_neighbors(n_neighbors)
    p = _checked_p(p)
    n_train, n_test = X_train.shape[0], X_test.shape[0]
    block_rows = _checked_block_rows(block_rows, n_train)
    ranking = _Ranking.prepare(X_train, X_test, p)
    positions = np.arange(1, n_train + 1, dtype=np.float64)
    weights = np.minimum(n_neighbors, positions) / (n_neighbors * positions)
    totals = np.zeros(n_train)
    n_blocks = -(-n_test // block_rows)
    description = f"kNN-Shapley values of {n_train:,} training rows"
    with Progress(n_blocks, description, "block") as progress:
        for start in range(0, n_test, block_rows):
            stop = min(start + block_rows, n_test)
            order = ranking.order(X_test[start:stop])
            totals += _block_values(order, train_codes, test_codes[start:stop], weights)
            progress.update()
    return totals / n_test


def _block_values(
    order: np.ndarray, train_codes: np.ndarray, test_codes: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Sum over a block's test rows of the values of Theorem 1, per training row (n_train,).

    order : (m, n_train) training rows nearest first; *_codes : encoded labels; weights
    (n_train,) : min(K, i) / (K i) at position i = 1..n_train.
    """
    matches = (np.take(train_codes, order) == test_codes[:, None]).view(np.int8)
    # s_i is the sum over j >= i of (match_j - match_(j+1)) * weights_j, with match_(N+1) = 0:
    # a cumulative sum from the far end, in place of the recursion's loop. The differences
    # stay int8 until the weights make them float64 (an eighth of the memory traffic).
    steps = np.empty_like(matches)
    np.subtract(matches[:, :-1], matches[:, 1:], out=steps[:, :-1])
    steps[:, -1] = matches[:, -1]
    del matches
    terms = np.multiply(steps, weights)
    del steps
    values = np.empty(order.shape)
    np.cumsum(terms[:, ::-1], axis=1, out=values[:, ::-1])
    del terms
    return np.bincount(order.ravel(), weights=values.ravel(), minlength=order.shape[1])


# --- the exact order ------------------------------------------------------------------------


@dataclass
class _Ranking:
    """How a block of test rows gets its training rows in exact order (see
    :func:`knn_shapley`). mode: "squares" (p = 2 matrix multiply), "cdist" (p = 1 or inf)
    or "exact" (every distance as kneighbors defines it). exact: the values the mode
    computes rank exactly as kneighbors' distances do, so equal values are true ties and
    only the index decides; else near-ties are repaired. pack_bits: integer values are
    sorted with the training index in this many low bits (0: they are not)."""

    X_train: np.ndarray
    p: float
    mode: str
    exact: bool
    pack_bits: int = 0
    centre: np.ndarray | None = None
    centred: np.ndarray | None = None  # the training rows minus centre (squares, not exact)
    train_squares: np.ndarray | None = None  # (n_train,) |t|^2 of the rows the multiply takes
    train_norm_max: float = 0.0
    relative_tolerance: float = 0.0

    @classmethod
    def prepare(cls, X_train: np.ndarray, X_test: np.ndarray, p: float) -> _Ranking:
        n_train, n_features = X_train.shape
        largest = _integer_magnitude(X_train, X_test)
        bits = max(1, (n_train - 1).bit_length())
        if p == 2:
            # Products, not **: a float power raises on overflow, a product gives inf.
            bound = 4 * n_features * largest * largest if largest is not None else math.inf
            if bound <= _EXACT_SQUARES_MAX:
                squares = np.einsum("ij,ij->i", X_train, X_train)
                return cls(X_train, p, "squares", True, _pack(bound, bits), None, None, squares)
            # At magnitudes near float64's limit these may overflow: the tolerance is then
            # inf and every distance is recomputed from the raw rows.
            with np.errstate(over="ignore", invalid="ignore"):
                centre = X_train.mean(axis=0)
                centre = centre if np.isfinite(centre).all() else np.zeros(n_features)
                centred = X_train - centre
                squares = np.einsum("ij,ij->i", centred, centred)
            norm_max = math.sqrt(float(squares.max()))
            return cls(X_train, p, "squares", False, 0, centre, centred, squares, norm_max)
        if p == 1:
            bound = 2 * n_features * largest if largest is not None else math.inf
            if bound < _EXACT_SUMS_MAX:
                return cls(X_train, p, "cdist", True, _pack(bound, bits))
            # cdist and kneighbors sum the same terms, maybe in other orders: each sum is
            # within gamma_d of the true one, so an ordered pair's values are within
            # 4 gamma / (1 - gamma)^2 of the larger (see _repair); twice that for safety.
            gamma = n_features * _U / (1 - n_features * _U)
            return cls(X_train, p, "cdist", False, relative_tolerance=8 * gamma / (1 - gamma) ** 2)
        if math.isinf(p):
            bound = 2 * largest if largest is not None else math.inf
            return cls(X_train, p, "cdist", True, _pack(bound, bits))
        return cls(X_train, p, "exact", True)

    def order(self, X_query: np.ndarray) -> np.ndarray:
        """(m, n_train) int64: each query's training rows, nearest first, ties to the lower
        index."""
        values, tolerance = self._values(X_query)
        if self.exact:
            if not np.isfinite(values).all():
                raise _beyond_range()
            return _sorted_rows(values, self.pack_bits)
        order = np.argsort(values, axis=1)  # ties and near-ties are settled by _repair
        sorted_values = np.take_along_axis(values, order, axis=1)
        del values
        _repair(order, sorted_values, tolerance, self.relative_tolerance, X_query, self)
        return order

    def _values(self, X_query: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Each pair's value to sort by (m, n_train), and for inexact values the absolute
        tolerance of each query (m,) (None: none, or only a relative one)."""
        if self.mode == "squares":
            return self._squares(X_query)
        if self.mode == "cdist":
            metric = "cityblock" if self.p == 1 else "chebyshev"
            return cdist(X_query, self.X_train, metric=metric), None
        return self.distances(np.arange(len(X_query)), None, X_query), None

    def _squares(self, X_query: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """|x|^2 + |t|^2 - 2 x.t by one matrix multiply, and its tolerance per query."""
        training = self.X_train if self.exact else self.centred
        with np.errstate(over="ignore", invalid="ignore"):
            queries = X_query if self.exact else X_query - self.centre
            query_squares = np.einsum("ij,ij->i", queries, queries)
            values = queries @ training.T
            values *= -2.0
            values += query_squares[:, None]
            values += self.train_squares[None, :]
        if self.exact:
            return values, None
        # R = |x| + max |t| on centred data bounds every true distance. The product's
        # rounding (gamma_(d+3) R^2, twice), the centring's (3u R^2, twice) and how far the
        # squares of two distances kneighbors orders can be out of order ((2 gamma_(d+3) +
        # 5u) R^2: its sums and roots round too) add up to under (4d + 28) u R^2; the
        # tolerance is over twice that, plus the absolute error of every operation that
        # underflows. Where R^2 overflows it is inf: every distance is recomputed.
        n_features = queries.shape[1]
        with np.errstate(over="ignore"):
            reach = (np.sqrt(query_squares) + self.train_norm_max) ** 2
            tolerance = (8 * n_features + 64) * (_U * reach + _TINY)
        return values, tolerance

    def distances(
        self, query_rows: np.ndarray, train_rows: np.ndarray | None, X_query: np.ndarray
    ) -> np.ndarray:
        """kneighbors' distances of query_rows (m,) of X_query to train_rows (m,), pairwise,
        or to every training row when train_rows is None ((m, n_train))."""
        compute = _exact_distances if self.p in (1.0, 2.0, math.inf) else _kernel_distances
        n_features = self.X_train.shape[1]
        step = max(1, _PAIR_CHUNK_BYTES // (8 * n_features))
        if train_rows is None:
            n_train = self.X_train.shape[0]
            out = np.empty((len(query_rows), n_train))
            for i, row in enumerate(query_rows):
                for start in range(0, n_train, step):
                    stop = min(start + step, n_train)
                    query = X_query[row][None, :]
                    out[i, start:stop] = compute(query, self.X_train[start:stop], self.p)
            return out
        out = np.empty(len(query_rows))
        for start in range(0, len(query_rows), step):
            stop = min(start + step, len(query_rows))
            out[start:stop] = compute(
                X_query[query_rows[start:stop]], self.X_train[train_rows[start:stop]], self.p
            )
        return out


def _pack(bound: float, bits: int) -> int:
    """Index bits to pack beside integer values up to ``bound`` in an int64 key, or 0 when
    they do not fit (a stable sort then keeps ties in index order instead)."""
    return bits if bound < 2.0 ** (62 - bits) else 0


def _sorted_rows(values: np.ndarray, pack_bits: int) -> np.ndarray:
    """Argsort of each row, ties to the lower index. Packed as ``value << bits | index``,
    an int64 sort (several times faster than a stable argsort) gives both at once."""
    if not pack_bits:
        return np.argsort(values, axis=1, kind="stable")
    keys = values.astype(np.int64)
    keys <<= pack_bits
    keys |= np.arange(values.shape[1], dtype=np.int64)
    keys.sort(axis=1)
    keys &= (1 << pack_bits) - 1
    return keys


def _repair(
    order: np.ndarray,
    sorted_values: np.ndarray,
    tolerance: np.ndarray | None,
    relative: float,
    X_query: np.ndarray,
    ranking: _Ranking,
) -> None:
    """Put each run of near-tied neighbours of ``order`` (m, n_train) in exact order, in place.

    Neighbours i and i+1 are linked when their values differ by at most the query's
    ``tolerance`` plus ``relative`` times the larger (or either is not finite). If rows a
    and b are in the wrong order, a's exact distance below b's (or equal, a's index lower)
    but a sorted after b, their values differ by at most that bound, so every step between
    them does too: they are in one run. Sorting each run by exact distance and index thus
    sorts the whole row; runs keep their places, the rows outside runs are already right.
    """
    m, n_train = order.shape
    if n_train < 2:
        return
    with np.errstate(invalid="ignore", over="ignore"):
        gaps = sorted_values[:, 1:] - sorted_values[:, :-1]
        limits = sorted_values[:, 1:] * relative
        if tolerance is not None:
            limits += tolerance[:, None]
        link = ~(gaps > limits)  # NaN (inf - inf, inf * 0) links too
        link |= ~np.isfinite(sorted_values[:, 1:])  # overflowed: only exact distances tell
    del gaps, limits
    member = np.zeros((m, n_train), dtype=bool)
    member[:, 1:] |= link
    member[:, :-1] |= link
    first = member.copy()
    first[:, 1:] &= ~link
    del link
    positions = np.flatnonzero(member)
    if positions.size == 0:
        return
    runs = np.cumsum(first.ravel()[positions])
    flat_order = order.reshape(-1)  # a view: argsort's output is contiguous
    train_rows = flat_order[positions]
    distances = ranking.distances(positions // n_train, train_rows, X_query)
    if not np.isfinite(distances).all():
        raise _beyond_range()
    flat_order[positions] = train_rows[np.lexsort((train_rows, distances, runs))]


def _beyond_range() -> ValueError:
    return ValueError(
        "distances beyond float64's range (coordinates near 1e308) cannot be ranked; "
        "rescale the features"
    )


def _exact_distances(Q: np.ndarray, T: np.ndarray, p: float) -> np.ndarray:
    """kneighbors' float64 distances at p = 1, 2 or inf of rows of Q and T (m, d), pairwise
    (Q may be one row), vectorized: the same operations in the same order as
    :func:`knnlab._kernels._distance_given_largest`, so the same bits (products and square
    roots are correctly rounded, the sums run in feature order). At p = 2 the plain sum of
    squares while the largest square lies in [d 2^-1000, max / (2 d)], else scaled by the
    largest difference m, ``m * sqrt(sum_f (|x_f - t_f| / m)^2)``."""
    with np.errstate(over="ignore"):
        differences = np.abs(Q - T)
    largest = differences.max(axis=1)
    if math.isinf(p):
        return largest
    if p == 1:
        return _sum_in_order(differences)
    n_features = differences.shape[1]
    with np.errstate(over="ignore", under="ignore"):
        largest_square = largest * largest
        plain = (n_features * _PLAIN_MIN <= largest_square) & (
            largest_square <= _F64_MAX / (2 * n_features)
        )
        # Identical points keep 0, differences beyond float64 keep inf (the caller reports).
        out = largest.copy()
        rows = np.flatnonzero(plain)
        plain_rows = differences[rows]
        out[rows] = np.sqrt(_sum_in_order(plain_rows * plain_rows))
        rows = np.flatnonzero(~plain & (largest > 0) & (largest <= _F64_MAX))
        scaled = differences[rows] / largest[rows, None]
        out[rows] = largest[rows] * np.sqrt(_sum_in_order(scaled * scaled))
    return out


def _kernel_distances(Q: np.ndarray, T: np.ndarray, p: float) -> np.ndarray:
    """kneighbors' distances at any p of rows of Q and T (m, d), pairwise (Q may be one
    row), from the search's own function one pair at a time (about 1 us each): its powers
    and roots come from the C library's pow, which numpy's vectorized power does not
    match bit for bit."""
    kind = _kernels.power_kind(p)
    distance = _kernels._exact_distance
    if Q.shape[0] == 1:
        q = Q[0]
        return np.fromiter((distance(q, t, kind, p) for t in T), np.float64, len(T))
    return np.fromiter(
        (distance(q, t, kind, p) for q, t in zip(Q, T, strict=True)), np.float64, len(T)
    )


def _sum_in_order(terms: np.ndarray) -> np.ndarray:
    # A cumulative sum adds left to right, as the kernels do; np.sum adds pairwise.
    if terms.shape[0] == 0:
        return np.zeros(0)
    return np.cumsum(terms, axis=1)[:, -1]


def _integer_magnitude(*arrays: np.ndarray) -> float | None:
    """The largest |value| of the arrays when every value is an integer, else None."""
    largest = 0.0
    for X in arrays:
        step = max(1, 2**22 // max(X.shape[1], 1))  # bounded temporaries on large data
        for start in range(0, X.shape[0], step):
            chunk = X[start : start + step]
            if not (np.rint(chunk) == chunk).all():
                return None
            largest = max(largest, float(np.abs(chunk).max(initial=0.0)))
    return largest


# --- the arguments ----------------------------------------------------------------------------


def _checked_data(X_train, y_train, X_test, y_test):
    """X_train, X_test as C-ordered float64 and both label vectors as integer codes (a test
    label no training row has gets -1)."""
    X_train = _checked_matrix("X_train", X_train)
    X_test = _checked_matrix("X_test", X_test)
    if X_test.shape[1] != X_train.shape[1]:
        raise ValueError(
            f"X_test must have {X_train.shape[1]} columns to match X_train, "
            f"got shape {X_test.shape}"
        )
    y_train = _checked_labels("y_train", y_train, X_train.shape[0], "X_train")
    y_test = _checked_labels("y_test", y_test, X_test.shape[0], "X_test")
    classes, train_codes = np.unique(y_train, return_inverse=True)
    position = np.clip(np.searchsorted(classes, y_test), 0, len(classes) - 1)
    test_codes = np.where(classes[position] == y_test, position, -1)
    # The smallest signed type: the codes are gathered once per (test row, training row).
    dtype = np.promote_types(np.min_scalar_type(-len(classes)), np.int8)
    return X_train, X_test, train_codes.astype(dtype), test_codes.astype(dtype)


def _checked_matrix(name: str, X) -> np.ndarray:
    try:
        X = np.ascontiguousarray(X, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be numeric: {error}") from None
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_rows, n_features), got shape {X.shape}")
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise ValueError(f"{name} must have at least one row and one column, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinite values; kNN needs finite features")
    return X


def _checked_labels(name: str, y, n_rows: int, matrix: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.shape[0] != n_rows:
        raise ValueError(
            f"{name} must be 1-D with one label per row of {matrix} ({n_rows}), got shape {y.shape}"
        )
    return y


def _checked_n_neighbors(n_neighbors) -> int:
    if isinstance(n_neighbors, bool) or not isinstance(n_neighbors, Integral) or n_neighbors < 1:
        raise ValueError(f"n_neighbors must be an integer >= 1, got {n_neighbors!r}")
    return int(n_neighbors)


def _checked_p(p) -> float:
    if isinstance(p, bool) or not isinstance(p, Real) or math.isnan(p) or p < 1:
        raise ValueError(f"p must be a number >= 1 (Minkowski p; inf for Chebyshev), got p = {p!r}")
    return float(p)


def _checked_block_rows(block_rows, n_train: int) -> int:
    if block_rows is None:
        return max(1, DEFAULT_BLOCK_BYTES // (_BYTES_PER_PAIR * n_train))
    if isinstance(block_rows, bool) or not isinstance(block_rows, Integral) or block_rows < 1:
        raise ValueError(f"block_rows must be an integer >= 1 or None, got {block_rows!r}")
    return int(block_rows)
