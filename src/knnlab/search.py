"""Where and how a neighbour search runs: the one place that picks the engine.

Two choices meet here:

* **where** the exact search runs: on this machine (:mod:`knnlab.neighbors`) or split across a
  Dask cluster (:mod:`knnlab.distributed`), by :func:`kneighbors`. This module imports both;
  ``distributed`` uses only ``neighbors``' public search, and ``neighbors`` imports neither;
* **which algorithm** answers a fitted model's queries (:func:`build_index`): the exact
  brute-force search here, or the module in :data:`ENGINES` of each algorithm declared in
  :data:`knnlab.algorithms.BACKENDS` (the interface a module implements is described there).
  The exact ones return the same neighbours (same tie rule), so they differ in time only;
  the approximate ones (``hnsw``, ``ivf``) trade recall for speed and are measured against
  exact search wherever knnlab uses them.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from knnlab.algorithms import (
    BACKENDS,
    MissingBackendError,
    backend_available,
    index_option_problems,
    index_options,
    missing_backend_message,
)

# The module of each algorithm with an index of its own (brute force is ExactIndex, here).
ENGINES = {
    "kd_tree": "knnlab.backends.trees",
    "ball_tree": "knnlab.backends.trees",
    "hnsw": "knnlab.backends.hnsw",
    "ivf": "knnlab.backends.ivf",
}


def _module(algorithm: str):
    if not backend_available(algorithm):
        raise MissingBackendError(missing_backend_message(algorithm))
    return importlib.import_module(ENGINES[algorithm])


def kneighbors(
    X_train,
    X_query,
    n_neighbors: int,
    *,
    p: float = 2,
    working_memory: int | None = None,
    n_jobs: int | None = None,
    prefilter: bool | None = None,
    scheduler=None,
):
    """Exact k nearest neighbours, on this machine or on a Dask cluster: the arguments and
    results of :func:`knnlab.neighbors.kneighbors`, plus

    scheduler : str or distributed.Client, optional
        A Dask scheduler's address (``tcp://host:8786``) or client: the search is split
        across its workers (:mod:`knnlab.distributed`), with bit-identical results. None
        (default): this machine, or the cluster of an enclosing
        :func:`knnlab.distributed.on_cluster`.
    """
    from knnlab import distributed, neighbors

    client = distributed.resolve_client(scheduler)  # dask is imported only for a cluster
    if client is not None:
        return distributed.sharded_kneighbors(
            client,
            X_train,
            X_query,
            n_neighbors,
            p=p,
            working_memory=working_memory,
            prefilter=prefilter,
        )
    return neighbors.kneighbors(
        X_train,
        X_query,
        n_neighbors,
        p=p,
        working_memory=working_memory,
        n_jobs=n_jobs,
        prefilter=prefilter,
    )


class ExactIndex:
    """The brute-force backend: the training set, prepared once for repeated searches
    (:class:`knnlab.neighbors.PreparedSearch`), searched here, or on the cluster of an
    enclosing :func:`knnlab.distributed.on_cluster`. X : (n_train, n_features) float64."""

    def __init__(self, X, p: float, n_jobs: int | None = None):
        import numpy as np

        from knnlab import neighbors

        self.X = np.ascontiguousarray(X, dtype=np.float64)
        self.p, self.n_jobs = p, n_jobs
        self._search = neighbors.PreparedSearch.from_checked(self.X, p, n_jobs=n_jobs)

    @property
    def nbytes(self) -> int:
        """Bytes of the prepared search (float32 copy, pre-filter), 0 until the first."""
        return self._search.nbytes

    def prepare(self) -> None:
        """Prepare the search now rather than at the first query (a server's start)."""
        self._search.prepare()

    def kneighbors(self, X_query, n_neighbors: int):
        """The search of a fitted estimator, whose fit and kneighbors checked k, p and the
        rows (finite, the training set's width) already: nothing is checked twice, and a
        query does not pay for scanning the whole training set for NaN again, nor for
        preparing it."""
        import numpy as np

        from knnlab import distributed

        client = distributed.resolve_client(None)  # an enclosing on_cluster
        if client is not None:
            return distributed.sharded_kneighbors(client, self.X, X_query, n_neighbors, p=self.p)
        if X_query is not None:
            X_query = np.ascontiguousarray(X_query, dtype=np.float64)  # kernels read rows
        return self._search.search_validated(X_query, n_neighbors)

    def state(self):
        return None


def build_index(
    algorithm: str,
    X,
    *,
    p: float,
    options: Mapping[str, Any] | None = None,
    seed: int = 0,
    n_jobs: int | None = None,
    state=None,
):
    """The index of the resolved ``algorithm`` (not ``auto``) over X (n_train, n_features)
    float64: built, or loaded from ``state`` (what ``index.state()`` returned) when given.
    options : ``model.index``, checked and completed here; seed : the build's random choices
    (HNSW levels, IVF k-means)."""
    if algorithm == "auto" or algorithm not in BACKENDS:
        raise ValueError(f"build_index needs one of {', '.join(BACKENDS)}, got {algorithm!r}")
    problems = index_option_problems(algorithm, options or {}, p)
    if problems:
        key, message = problems[0]
        raise ValueError(f"{key} {message}")
    if algorithm not in ENGINES:
        return ExactIndex(X, p, n_jobs)
    module = _module(algorithm)
    settings = {"name": algorithm, "p": p, "options": index_options(algorithm, options)}
    if state is not None:
        return module.load(X, state=state, **settings)
    return module.build(X, seed=seed, n_jobs=n_jobs, **settings)
