"""The ``hnsw`` backend: faiss's ``IndexHNSWFlat``, a hierarchical navigable small-world graph
(Malkov & Yashunin 2018) over the float32 training rows.

Options (``model.index``): ``M`` links per node and ``ef_construction`` candidates while
linking (both shape the graph: memory, build time, recall), ``ef_search`` candidates a query
keeps (recall against speed; changes no index). The graph's random node levels come from
``seed`` (faiss's own generator, re-seeded here), so the same seed, rows and options give
the same index, byte for byte; the build is also the same on 1 or 2 threads (measured, and
tested in tests/core/test_backends.py).
"""

from __future__ import annotations

import numpy as np

from knnlab.backends._faiss import FaissIndex, centred32, faiss_threads, import_faiss, load_checked


class HNSWIndex(FaissIndex):
    def __init__(self, faiss, index, X, centre, n_jobs, ef_search: int):
        super().__init__(faiss, index, X, centre, n_jobs)
        self.ef_search = ef_search
        self.width = ef_search

    def _distance_counter(self) -> int:
        return int(self.faiss.cvar.hnsw_stats.ndis)

    def with_search_options(self, options: dict) -> HNSWIndex:
        copy = HNSWIndex(
            self.faiss, self.index, self.X, self.centre, self.n_jobs, options["ef_search"]
        )
        copy._state = self._state
        return copy

    def _search(self, queries32: np.ndarray, m: int, widen: int = 1) -> np.ndarray | None:
        ef = max(self.ef_search, m) * widen
        if widen > 1 and ef > 2 * self.index.ntotal:
            return None  # the walk already could visit every node
        params = self.faiss.SearchParametersHNSW(efSearch=ef)
        _, found = self.index.search(queries32, m, params=params)
        return found


def build(X, *, name: str, p: float, options: dict, seed: int, n_jobs: int | None) -> HNSWIndex:
    """Build over X (n_train, d) float64 (name, p: the registry's; p is 2)."""
    faiss = import_faiss(name)
    centre = X.mean(axis=0)
    index = faiss.IndexHNSWFlat(X.shape[1], options["M"])
    index.hnsw.efConstruction = options["ef_construction"]
    index.hnsw.rng = faiss.RandomGenerator(int(seed))  # node levels: seeded, reproducible
    with faiss_threads(faiss, n_jobs):
        index.add(centred32(X, centre))
    return HNSWIndex(faiss, index, X, centre, n_jobs, options["ef_search"])


def load(X, *, name: str, p: float, options: dict, state: np.ndarray) -> HNSWIndex:
    """The index a model file kept (``state``), checked against X (n_train, d) and options."""
    faiss = import_faiss(name)
    index = load_checked(faiss, name, state, X, faiss.IndexHNSWFlat)
    if index.hnsw.nb_neighbors(1) != options["M"]:  # level 0 holds 2M
        raise ValueError(f"the stored hnsw index was not built with M = {options['M']}")
    return HNSWIndex(faiss, index, X, X.mean(axis=0), None, options["ef_search"])
