"""The ``ivf`` backend: faiss's ``IndexIVFFlat``, an inverted file of k-means cells (Jégou,
Douze & Schmid 2011) over the float32 training rows; a query scans the rows of its
``nprobe`` nearest cells only.

Options (``model.index``): ``nlist`` cells (null: the integer nearest sqrt(n_train), at
most n_train), ``nprobe`` cells scanned per query (recall against speed; changes no index).
k-means starts from rows drawn with ``seed`` and, above 256 rows per cell, trains on a
sample drawn with it too, so the same seed, rows and options give the same index.
"""

from __future__ import annotations

import math

import numpy as np

from knnlab.backends._faiss import (
    IVF_WIDTH,
    FaissIndex,
    centred32,
    faiss_threads,
    import_faiss,
    load_checked,
)


def n_cells(options: dict, n_train: int) -> int:
    """nlist, or its default sqrt(n_train), never more cells than rows."""
    nlist = options["nlist"]
    if nlist is None:
        nlist = round(math.sqrt(n_train))
    return max(1, min(int(nlist), n_train))


class IVFIndex(FaissIndex):
    width = IVF_WIDTH

    def __init__(self, faiss, index, X, centre, n_jobs, nprobe: int):
        super().__init__(faiss, index, X, centre, n_jobs)
        self.nprobe = min(nprobe, index.nlist)
        self.options = {"nlist": int(index.nlist), "nprobe": nprobe}  # nlist resolved

    def _distance_counter(self) -> int:
        return int(self.faiss.cvar.indexIVF_stats.ndis)

    def with_search_options(self, options: dict) -> IVFIndex:
        copy = IVFIndex(self.faiss, self.index, self.X, self.centre, self.n_jobs, options["nprobe"])
        copy._state = self._state
        return copy

    def _search(self, queries32: np.ndarray, m: int, widen: int = 1) -> np.ndarray | None:
        if widen > 1 and self.nprobe * widen // 2 >= self.index.nlist:
            return None  # the last round scanned every cell
        params = self.faiss.SearchParametersIVF(nprobe=min(self.nprobe * widen, self.index.nlist))
        _, found = self.index.search(queries32, m, params=params)
        return found


def _row_ids(faiss, index) -> np.ndarray:
    """The training row ids the cells hold, all cells concatenated (int64)."""
    lists = index.invlists
    sizes = [lists.list_size(cell) for cell in range(index.nlist)]
    return np.concatenate(
        [np.zeros(0, dtype=np.int64)]
        + [faiss.rev_swig_ptr(lists.get_ids(c), n).copy() for c, n in enumerate(sizes) if n]
    )


def build(X, *, name: str, p: float, options: dict, seed: int, n_jobs: int | None) -> IVFIndex:
    """Train k-means and fill the cells from X (n_train, d) float64 (p is 2)."""
    faiss = import_faiss(name)
    centre = X.mean(axis=0)
    rows = centred32(X, centre)
    quantizer = faiss.IndexFlatL2(X.shape[1])
    index = faiss.IndexIVFFlat(quantizer, X.shape[1], n_cells(options, len(X)))
    index.cp.seed = int(seed)
    # faiss warns (on stderr) below 39 rows per cell; small data sets are a choice here.
    index.cp.min_points_per_centroid = 1
    with faiss_threads(faiss, n_jobs):
        index.train(rows)
        index.add(rows)
    return IVFIndex(faiss, index, X, centre, n_jobs, options["nprobe"])


def load(X, *, name: str, p: float, options: dict, state: np.ndarray) -> IVFIndex:
    """The index a model file kept (``state``), checked against X (n_train, d) and options."""
    faiss = import_faiss(name)
    index = load_checked(faiss, name, state, X, faiss.IndexIVFFlat)
    if index.nlist != n_cells(options, len(X)):
        raise ValueError(
            f"the stored ivf index has {index.nlist} cells, not {n_cells(options, len(X))}"
        )
    if not np.array_equal(np.sort(_row_ids(faiss, index)), np.arange(len(X))):
        # Unlike an HNSW graph's links (checked by faiss on reading), a cell's row ids are
        # kept as they are: a search would return rows X does not have.
        raise ValueError(f"the stored ivf index does not hold each of the {len(X)} rows once")
    return IVFIndex(faiss, index, X, X.mean(axis=0), None, options["nprobe"])
