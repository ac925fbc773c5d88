"""The search algorithms knnlab offers and their options, declared once (no engine imported).

:mod:`knnlab.search` runs them; ``params.yaml``'s validation, the estimators and the grid
search check against these declarations, without importing numpy or a backend. Which module
serves an algorithm is :data:`knnlab.search.ENGINES`.

A backend's module (``knnlab/backends/<name>.py``, see docs/backends.md) defines

    build(X, *, name, p, options, seed, n_jobs) -> index
    load(X, *, name, p, options, state) -> index       (backends whose index has a state)

where X is the training set (n_train, n_features) float64, options the backend's checked
options (:func:`index_options`), and ``index`` an object with

    index.kneighbors(X_query, n_neighbors) -> (distances, indices)   each (n_queries, k);
        X_query (n_queries, n_features) float64, or None for the training rows themselves
        (each one's own row left out). Distances are exact float64 Minkowski distances of
        the returned rows, sorted by (distance, lower index), as the exact search returns.
    index.state() -> ndarray of uint8 or None: what a model file keeps to load the same
        index without building it again (None: built again on load);
    index.nbytes -> int: the bytes the index holds beyond the training set.
"""

from __future__ import annotations

import importlib.util
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from knnlab.options import is_count


@dataclass(frozen=True)
class IndexOption:
    """One option of an approximate index: its default, smallest and largest values and when
    it acts (``build``: changes the index; ``search``: changes only how a query walks it).
    ``default=None`` means "chosen from the training set's size" (see the backend). The
    maximum keeps a typo from building for hours or overflowing the library's C int."""

    default: int | None
    minimum: int
    maximum: int
    acts_at: str
    help: str


@dataclass(frozen=True)
class Backend:
    """A registry entry. exact: returns the exact neighbours; options: its ``model.index`` keys;
    euclidean_only: p = 2 only; library and extra: the package it needs (import name) and
    the knnlab extra that installs it."""

    exact: bool
    summary: str
    options: Mapping[str, IndexOption] = field(default_factory=dict)
    euclidean_only: bool = False
    library: str | None = None
    extra: str | None = None


BACKENDS: dict[str, Backend] = {
    "brute": Backend(True, "knnlab's exact search (compiled, pruned at p = 2)"),
    "kd_tree": Backend(True, "scikit-learn's KD-tree, exact"),
    "ball_tree": Backend(True, "scikit-learn's ball tree, exact"),
    "hnsw": Backend(
        False,
        "faiss IndexHNSWFlat: a navigable small-world graph, approximate",
        {
            # Memory and build time grow with M; hnswlib documents 2 to 100 as reasonable.
            "M": IndexOption(16, 2, 256, "build", "links per node (memory, recall)"),
            # Build time grows with it; 40 to 500 is the usual range.
            "ef_construction": IndexOption(200, 1, 10_000, "build", "candidates while linking"),
            # Query time grows with it; the backend widens it to k when k is larger, so more
            # than params.yaml's largest k (100,000) never helps.
            "ef_search": IndexOption(
                64, 1, 100_000, "search", "candidates per query (recall, speed)"
            ),
        },
        euclidean_only=True,
        library="faiss",
        extra="ann",
    ),
    "ivf": Backend(
        False,
        "faiss IndexIVFFlat: k-means cells, a query scans the nearest few, approximate",
        {
            # faiss's guidelines use 65,536 cells for 1M to 10M vectors, more than knnlab's
            # data; the backend also keeps nlist <= n_train and nprobe <= nlist.
            "nlist": IndexOption(None, 1, 65_536, "build", "k-means cells (null: sqrt(n_train))"),
            "nprobe": IndexOption(
                8, 1, 65_536, "search", "cells scanned per query (recall, speed)"
            ),
        },
        euclidean_only=True,
        library="faiss",
        extra="ann",
    ),
}
ALGORITHMS = ("auto", *BACKENDS)
EXACT_ALGORITHMS = tuple(name for name, b in BACKENDS.items() if b.exact)
APPROXIMATE_ALGORITHMS = tuple(name for name, b in BACKENDS.items() if not b.exact)


class MissingBackendError(ImportError):
    """The library an approximate algorithm needs is not installed."""


def is_approximate(algorithm: str) -> bool:
    return algorithm in APPROXIMATE_ALGORITHMS


def resolve_algorithm(algorithm: str, n_samples: int, n_features: int, n_neighbors: int) -> str:
    """What ``auto`` means: a tree only where trees win (few features, small k relative to
    n), the rule scikit-learn uses; brute force otherwise. Never an approximate index."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}, got {algorithm!r}")
    if algorithm != "auto":
        return algorithm
    if n_features <= 15 and n_neighbors < n_samples // 2:
        return "kd_tree"
    return "brute"


def _allowed(option: IndexOption) -> str:
    return f"an integer >= {option.minimum} and <= {option.maximum}, or null for the default"


def index_option_problems(algorithm: str, options: Any, p: Any = 2) -> list[tuple[str, str]]:
    """What is wrong with ``options`` (the ``model.index`` mapping) for ``algorithm`` at p,
    as (key, message) pairs, the key ``index``, ``index.<option>`` or ``p``; empty when all
    is well. The messages start with the value and say what is allowed; callers put the
    key's section in front (``model.``)."""
    if not isinstance(options, Mapping):
        return [("index", f"= {options!r} is not allowed; expected a mapping of options")]
    spec = BACKENDS[algorithm].options if algorithm in BACKENDS else {}
    problems = []
    known = {name for backend in BACKENDS.values() for name in backend.options}
    for name in sorted(options, key=str):
        value = options[name]
        if value is None and name in known:
            continue  # null: unset (params.yaml lists every option, null by default)
        if name not in spec:
            owners = [a for a, b in BACKENDS.items() if name in b.options]
            where = f"an option of {', '.join(owners)}" if owners else "no algorithm's option"
            allowed = ", ".join(spec) if spec else "none (it builds no index)"
            problems.append(
                (
                    f"index.{name}",
                    f"= {reprlib.repr(value)} does not belong to algorithm {algorithm!r} "
                    f"({where}); "
                    f"{algorithm}'s options: {allowed}",
                )
            )
        elif not (is_count(value) and spec[name].minimum <= value <= spec[name].maximum):
            # Cut: the value may be a huge list from a file, or an integer repr() refuses.
            huge = is_count(value) and value.bit_length() > 256
            shown = f"<an integer of {value.bit_length()} bits>" if huge else reprlib.repr(value)
            problems.append(
                (f"index.{name}", f"= {shown} is not allowed; expected {_allowed(spec[name])}")
            )
    backend = BACKENDS.get(algorithm)
    if backend is not None and backend.euclidean_only and p != 2:
        problems.append(
            (
                "p",
                f"= {p!r} is not allowed with algorithm {algorithm!r}, which searches "
                f"Euclidean distance only; set p: 2, or an exact algorithm "
                f"({', '.join(EXACT_ALGORITHMS)})",
            )
        )
    return problems


def index_options(algorithm: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The options of ``algorithm`` with its defaults filled in (checked), in the registry's
    order; ``{}`` for the exact algorithms."""
    options = dict(options or {})
    problems = index_option_problems(algorithm, options)
    if problems:
        key, message = problems[0]
        raise ValueError(f"{key} {message}")
    spec = BACKENDS[algorithm].options if algorithm in BACKENDS else {}
    return {
        name: option.default if options.get(name) is None else options[name]
        for name, option in spec.items()
    }


def backend_available(algorithm: str) -> bool:
    """Whether the library ``algorithm`` needs is importable (without importing it)."""
    library = BACKENDS[algorithm].library
    return library is None or importlib.util.find_spec(library) is not None


def missing_backend_message(algorithm: str, key: str = "algorithm") -> str:
    backend = BACKENDS[algorithm]
    return (
        f"{key} = {algorithm!r} needs the {backend.library} package, which is not installed; "
        f"install knnlab's {backend.extra!r} extra (pip install 'knnlab[{backend.extra}]', "
        f"or `make test`, which installs it), or choose an exact algorithm "
        f"({', '.join(EXACT_ALGORITHMS)})"
    )
