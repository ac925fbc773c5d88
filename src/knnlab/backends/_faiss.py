"""What the faiss backends (``hnsw``, ``ivf``) share: the float32 copy they index, threads,
and the exact re-rank that makes their answers comparable with exact search.

How a query is answered, and why it is deterministic:

1. faiss is asked for ``m = max(k, width)`` candidates (+1 when the queries are the training
   rows: the row itself is dropped). ``width`` is the backend's own (HNSW: ``ef_search``,
   the candidates a query keeps anyway; IVF: :data:`IVF_WIDTH`), so the faiss call, and so
   its candidate list, is the same for every k up to ``width``: the first k of a search at
   the grid's largest k are exactly a search at k (the grid search relies on it);
2. the first k candidates in faiss's order are kept, their distances recomputed exactly in
   float64 from the original rows, and sorted by (distance, lower training index), the
   exact search's tie rule. So distances are exact, the same for a pair wherever it is
   found, and a point that faiss does find is ranked as exact search ranks it.

The index holds the training rows centred on their mean, as float32 (distances do not
change; rounding errors shrink, as in :mod:`knnlab.neighbors`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np

from knnlab.algorithms import MissingBackendError, missing_backend_message

# Candidates an IVF query asks faiss for when k is smaller (see the module docstring).
IVF_WIDTH = 32
# Queries re-ranked at once: bounds the (rows, k, d) float64 differences to ~64 MB.
_RERANK_BYTES = 64 * 2**20


def import_faiss(algorithm: str):
    try:
        import faiss
    except ImportError:
        raise MissingBackendError(missing_backend_message(algorithm)) from None
    return faiss


@contextlib.contextmanager
def faiss_threads(faiss, n_jobs: int | None) -> Iterator[None]:
    """faiss's OpenMP threads for the block: n_jobs (None or -1: faiss's default)."""
    if n_jobs is None or n_jobs == -1:
        yield
        return
    previous = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(int(n_jobs))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def centred32(X: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """(n, d) float32, C order: what faiss indexes and searches."""
    return np.ascontiguousarray(X - centre, dtype=np.float32)


def exact_rerank(
    X_train: np.ndarray, queries: np.ndarray, candidates: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean distances of each query (m, d) to its candidate rows (m, k) of
    X_train (n, d), all float64, sorted by (distance, lower index). Returns distances and
    indices, each (m, k)."""
    m, k = candidates.shape
    distances = np.empty((m, k))
    step = max(1, _RERANK_BYTES // max(1, 8 * k * X_train.shape[1]))
    for start in range(0, m, step):
        rows = slice(start, start + step)
        diff = X_train[candidates[rows]] - queries[rows, None, :]  # (rows, k, d)
        # Summed in feature order, as the exact search's float64 re-rank sums them.
        distances[rows] = np.sqrt(np.einsum("qkd,qkd->qk", diff, diff))
    order = np.lexsort((candidates, distances), axis=-1)
    return np.take_along_axis(distances, order, axis=1), np.take_along_axis(
        candidates, order, axis=1
    )


class FaissIndex:
    """A faiss index over X (n_train, d) float64, answering with exact re-ranked distances.

    Subclasses set ``width`` (candidates asked for at least) and implement :meth:`_search`,
    the faiss call, which takes a ``widen`` factor: how many times the usual effort (HNSW's
    ef_search, IVF's nprobe) to spend on queries that got fewer than m candidates (an IVF
    query whose nearest cells hold too few rows, an HNSW query in a sparse corner). Such
    rows are searched again with the effort doubled until they are full; rows still short
    when the effort covers the whole index take their exact neighbours."""

    width: int

    def __init__(self, faiss, index, X: np.ndarray, centre: np.ndarray, n_jobs: int | None):
        self.faiss, self.index, self.X, self.centre, self.n_jobs = faiss, index, X, centre, n_jobs
        self._state: np.ndarray | None = None
        # Distances faiss computed in this object's searches (ann-benchmarks' "distance
        # computations"): the work per query, the same on every machine, unlike seconds.
        self.distance_count = 0
        self.distances_by_k: dict[int, int] = {}  # of the last kneighbors_each, per k

    def _search(self, queries32: np.ndarray, m: int, widen: int = 1) -> np.ndarray | None:
        """Candidate rows (n_q, m) int64, -1 where fewer were found; None when ``widen``
        exceeds what the index can spend (every cell, every node already)."""
        raise NotImplementedError

    def _fill_short_rows(
        self, queries: np.ndarray, queries32: np.ndarray, m: int, found: np.ndarray
    ) -> None:
        from knnlab import neighbors

        widen = 2
        short = np.flatnonzero((found < 0).any(axis=1))
        while short.size:
            again = self._search(queries32[short], m, widen)
            if again is None:
                break
            found[short] = again
            short = short[(again < 0).any(axis=1)]
            widen *= 2
        if short.size:
            _, found[short] = neighbors.kneighbors(self.X, queries[short], m)

    def kneighbors(self, X_query: np.ndarray | None, n_neighbors: int):
        return self.kneighbors_each(X_query, [n_neighbors])[n_neighbors]

    def kneighbors_each(self, X_query: np.ndarray | None, ks) -> dict:
        """``{k: kneighbors(X_query, k)}`` for every k in ks, with one faiss call per
        distinct ``max(k, width)`` (one for every k up to ``width``: the grid search's)."""
        is_self_query = X_query is None
        queries = self.X if is_self_query else X_query
        n_train = self.X.shape[0]
        available = n_train - int(is_self_query)
        for k in ks:
            if not 1 <= k <= available:
                raise ValueError(f"Expected 1 <= n_neighbors <= {available}, but n_neighbors = {k}")
        queries32 = centred32(queries, self.centre)
        found_by_m: dict[int, np.ndarray] = {}
        results = {}
        for k in sorted(set(ks)):
            m = min(n_train, max(k, self.width) + int(is_self_query))
            if m not in found_by_m:
                before = self.distance_count
                found_by_m[m] = self._candidates(queries, queries32, m, is_self_query)
                counted = self.distance_count - before
            self.distances_by_k[k] = counted  # of the one call that answered k
            results[k] = exact_rerank(self.X, queries, found_by_m[m][:, :k])
        return results

    def _candidates(self, queries, queries32, m: int, is_self_query: bool) -> np.ndarray:
        """faiss's m candidates per query (n_q, m), in its order, or m - 1 without each
        query's own row when the queries are the training rows. Counts the distances
        computed in ``distance_count``."""
        before = self._distance_counter()
        with faiss_threads(self.faiss, self.n_jobs):
            found = self._search(queries32, m)
            if (found < 0).any():  # rare: see the class docstring
                self._fill_short_rows(queries, queries32, m, found)
        self.distance_count += self._distance_counter() - before
        if is_self_query:
            own = found == np.arange(len(queries))[:, None]
            # Drop the own row where faiss found it, else the last candidate.
            drop = np.where(own.any(axis=1), own.argmax(axis=1), m - 1)
            keep = np.ones_like(found, dtype=bool)
            keep[np.arange(len(queries)), drop] = False
            found = found[keep].reshape(len(queries), m - 1)
        return found

    def _distance_counter(self) -> int:
        """faiss's running count of distances computed by this kind of index (a global
        statistic: read before and after a search)."""
        raise NotImplementedError

    def with_search_options(self, options: dict):
        """The same index searched with other search-time options (HNSW ef_search, IVF
        nprobe): nothing is rebuilt. options : the backend's full, checked options."""
        raise NotImplementedError

    @property
    def nbytes(self) -> int:
        """The index's serialized size: the float32 rows plus the structure (graph,
        cells)."""
        return int(self.state().size)

    def state(self) -> np.ndarray:
        if self._state is None:
            self._state = self.faiss.serialize_index(self.index)
        return self._state


def load_checked(faiss, algorithm: str, state: np.ndarray, X: np.ndarray, expected_type):
    """faiss's index from the bytes a model file kept (already checksummed), checked to be
    what the model says: the index type, dimension, row count and L2 metric."""
    state = np.ascontiguousarray(state, dtype=np.uint8)
    try:
        index = faiss.deserialize_index(state)
    except (RuntimeError, MemoryError) as error:  # MemoryError: a corrupted length
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else "unreadable"
        raise ValueError(f"the stored {algorithm} index cannot be read ({reason})") from None
    n, d = X.shape
    if not isinstance(index, expected_type) or index.d != d or index.ntotal != n:
        raise ValueError(
            f"the stored {algorithm} index is a {type(index).__name__} of {index.ntotal} "
            f"rows x {index.d}, expected a {expected_type.__name__} of {n} x {d}"
        )
    if index.metric_type != faiss.METRIC_L2:
        raise ValueError(f"the stored {algorithm} index does not use the L2 metric")
    if not index.is_trained:  # an IVF index would refuse every search
        raise ValueError(f"the stored {algorithm} index is not trained")
    return index
