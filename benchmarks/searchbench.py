"""Search benchmark: knnlab's exact kNN against scikit-learn brute force (and faiss) on
MNIST-shaped data, for Minkowski p = 1, 2, 3.

Run it from the repository root with the project's environment::

    python benchmarks/bench_search.py                   # 60,000 x 784 train, 10,000 queries
    python benchmarks/bench_search.py --quick           # 5,000 train, 500 queries: smoke test
    python benchmarks/bench_search.py --p 2 --repeat 3 --json bench.json
    python benchmarks/bench_search.py --trees           # also scikit-learn's kd/ball trees
    python benchmarks/bench_search.py --help

or from Python, with ``benchmarks/`` on ``sys.path``: ``from searchbench import main``.

What it does
------------
* Builds the data itself, with no network (:func:`make_mnist_like`): scikit-learn's bundled
  8x8 digits, upscaled into MNIST's centred 20x20 box on a 28x28 canvas, randomly rotated,
  shifted and noised, integer grey levels 0..255. Train and test images come from disjoint
  source digits, like MNIST's disjoint writers. Every method gets float64 arrays (faiss,
  which is float32 only, gets a float32 copy made before its timer starts).
* For each p: ``knnlab.neighbors.kneighbors`` against scikit-learn's
  ``NearestNeighbors(algorithm="brute")`` (``fit`` + ``kneighbors``). At p = 2 also
  knnlab's search with its low-rank pre-filter turned off (``prefilter=False``: one full
  matrix multiply per chunk, the like-for-like comparison with faiss),
  ``knnlab.KNNClassifier(algorithm="brute")`` against ``KNeighborsClassifier(algorithm=
  "brute")`` (``fit`` + ``predict``) and, when ``faiss`` imports, ``faiss.IndexFlatL2``
  (exact; ``add`` + ``search``). ``--trees`` adds scikit-learn's kd-tree and ball-tree
  (build + query) on at most 500 queries. Brute force at p != 2 cannot use a matrix
  multiply, so p = 1 runs on the first 1,000 queries and p = 3 on the first 200 by default
  (``--query-subset``); the table's ``queries`` column says how many each row used.
* Each measured call runs in a fresh process (``multiprocessing``: forked from a
  forkserver that has only imported the libraries, spawned where there is none): it loads the
  inputs, resets the kernel's peak-RSS mark (``/proc/self/clear_refs``), runs the call
  ``--repeat`` times and reports the best time and the peak resident memory (``VmHWM``)
  above the resident memory just before the call, i.e. what the call needs beyond its
  inputs. A fresh process per call means no run inherits another's heap or warm caches.
* Checks each result against scikit-learn brute force in float64 (see :func:`compare_neighbors`)
  and prints one fixed-width table with the machine it ran on.

faiss is optional: ``pip install faiss-cpu``. Without it the faiss row is skipped with a note.
"""

from __future__ import annotations

import argparse
import gc
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata, util
from pathlib import Path

import numpy as np
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors
from synthetic import IMAGE_SIDE, make_mnist_like

import knnlab
from knnlab.estimators import KNNClassifier
from knnlab.neighbors import kneighbors, warm_up

DEFAULT_SUBSETS = {1.0: 1_000}  # queries used at p != 2 ...
DEFAULT_SUBSET_OTHER_P = 200  # ... for any other p != 2 (p = 3 included)
TREE_QUERIES = 500
SELF_QUERY_ROWS = 20_000
QUICK_SIZE = (5_000, 500)
FULL_SIZE = (60_000, 10_000)
TIE_RTOL = 1e-9  # distances this close count as tied (grey levels are integers, so
# distinct distances of the nearest neighbours differ by far more)


# --- data ------------------------------------------------------------------------------------

DATASETS = ("fashion_mnist", "synthetic")


def load_data(name: str, n_train: int, n_test: int, seed: int):
    """(X_train, y_train, X_test, y_test, description) of a benchmark dataset.

    fashion_mnist: Zalando's Fashion-MNIST, real 28x28 photographs of clothing (from Debian's
    dataset-fashion-mnist, a folder, or OpenML: see knnlab.pipeline.data.datasets), the first
    n_train of its 60,000 training images and the first n_test of its 10,000 test images.
    synthetic: make_mnist_like (sklearn's digits upscaled to 28x28), built here.
    """
    if name == "synthetic":
        X_train, y_train, X_test, y_test = make_mnist_like(n_train, n_test, seed)
        return X_train, y_train, X_test, y_test, f"make_mnist_like({n_train}, {n_test}, {seed})"
    from knnlab.pipeline.data.dataset import features_and_labels
    from knnlab.pipeline.data.fashion_mnist import load_fashion_mnist

    X, y = features_and_labels(load_fashion_mnist().frame)
    if n_train > 60_000 or n_test > 10_000:
        raise SystemExit("fashion_mnist has 60,000 training and 10,000 test images")
    return (
        X[:n_train],
        y[:n_train],
        X[60_000 : 60_000 + n_test],
        y[60_000 : 60_000 + n_test],
        f"Fashion-MNIST, first {n_train} training and {n_test} test images",
    )


def auto_cases(seed: int) -> dict:
    """The cases the automatic pre-filter choice is checked on: name -> (X_train, X_test,
    description). Real and synthetic images, isotropic noise (no low-rank structure: the
    pre-filter cannot rule anything out), 64-feature digits and 2-feature moons."""
    from sklearn.datasets import load_digits, make_moons

    rng = np.random.default_rng(seed)
    digits = load_digits().data
    moons, _ = make_moons(25_000, noise=0.3, random_state=seed)
    return {
        "isotropic noise": (
            rng.normal(size=(60_000, 784)),
            rng.normal(size=(2_000, 784)),
            "N(0, 1) in 784 dimensions, 60,000 x 2,000",
        ),
        "digits (64 features)": (digits[:1347], digits[1347:], "sklearn digits, 1,347 x 450"),
        "moons (2 features)": (moons[:20_000], moons[20_000:], "make_moons, 20,000 x 5,000"),
    }


def shifted_copy(X: np.ndarray) -> np.ndarray:
    """The 28x28 images of X (n, 784) shifted one pixel to the right (a new column of 0
    on the left): as many more, different, realistic training images."""
    images = X.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    shifted = np.zeros_like(images)
    shifted[:, :, 1:] = images[:, :, :-1]
    return shifted.reshape(len(X), -1)


# --- the measured calls (run in a child process) ---------------------------------------------


@dataclass(frozen=True)
class Inputs:
    """One measurement's data, float64 as every method but faiss takes it.

    X_train : (n_train, n_features); y_train : (n_train,); X_query : (n_queries, n_features).
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_query: np.ndarray
    self_query: bool = False

    @property
    def queries(self) -> np.ndarray | None:
        """What kneighbors takes as X_query: None when the queries are the training set."""
        return None if self.self_query else self.X_query


Prepared = Callable[[], object]


def _prepare_knnlab(prefilter: bool | None) -> Callable[[Inputs, float, int], Prepared]:
    def prepare(data: Inputs, p: float, k: int) -> Prepared:
        warm_up(p)  # numba's one-time compilation (or cache load) is set-up, not search
        return lambda: kneighbors(data.X_train, data.queries, k, p=p, prefilter=prefilter)

    return prepare


def _prepare_sklearn(algorithm: str) -> Callable[[Inputs, float, int], Prepared]:
    def prepare(data: Inputs, p: float, k: int) -> Prepared:
        model = NearestNeighbors(n_neighbors=k, algorithm=algorithm, p=p)
        return lambda: model.fit(data.X_train).kneighbors(data.X_query)

    return prepare


def _prepare_faiss(data: Inputs, p: float, k: int) -> Prepared:
    import faiss  # optional dependency

    if p != 2:
        raise ValueError(f"faiss.IndexFlatL2 is the Euclidean distance only, not p = {p}")
    X_train = np.ascontiguousarray(data.X_train, dtype=np.float32)
    X_query = np.ascontiguousarray(data.X_query, dtype=np.float32)

    def run() -> tuple[np.ndarray, np.ndarray]:
        index = faiss.IndexFlatL2(X_train.shape[1])
        index.add(X_train)
        squared, ind = index.search(X_query, k)  # squared L2, float32
        return np.sqrt(np.maximum(squared, 0.0), dtype=np.float64), ind.astype(np.int64)

    return run


def _prepare_faiss_panorama(data: Inputs, p: float, k: int) -> Prepared:
    """faiss's own pruned exact search (faiss 1.15+): a PCA rotation, then a flat index
    that stops each distance early once its partial sum bounds it out (Panorama, 8 levels,
    512-row batches). Trained here, not timed: the timed call adds and searches, as the
    IndexFlatL2 row does."""
    import faiss  # optional dependency

    if p != 2:
        raise ValueError(f"faiss's Panorama index is the Euclidean distance only, not p = {p}")
    X_train = np.ascontiguousarray(data.X_train, dtype=np.float32)
    X_query = np.ascontiguousarray(data.X_query, dtype=np.float32)
    d = X_train.shape[1]
    trained = faiss.index_factory(d, f"PCA{d},FlatL2Panorama8_512")
    trained.train(X_train)

    def run() -> tuple[np.ndarray, np.ndarray]:
        index = faiss.clone_index(trained)
        index.add(X_train)
        squared, ind = index.search(X_query, k)
        return np.sqrt(np.maximum(squared, 0.0), dtype=np.float64), ind.astype(np.int64)

    return run


# What a measurement reports beside its time (hnswlib's build time, ef and recall).
EXTRAS: dict = {}
HNSW_EFS = (10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
HNSW_RECALL = 0.99


def _prepare_hnswlib(data: Inputs, p: float, k: int) -> Prepared:
    """hnswlib's HNSW graph (M = 16, ef_construction = 200, both threads): built here, timed
    on its own; the timed call is the query at the smallest ef of HNSW_EFS whose recall of
    the exact k nearest (knnlab's, computed here) reaches HNSW_RECALL."""
    import hnswlib  # optional dependency

    if p != 2:
        raise ValueError(f"hnswlib's 'l2' space is the Euclidean distance only, not p = {p}")
    X_train = np.ascontiguousarray(data.X_train, dtype=np.float32)
    X_query = np.ascontiguousarray(data.X_query, dtype=np.float32)
    _, exact = kneighbors(data.X_train, data.X_query, k)
    start = time.perf_counter()
    index = hnswlib.Index(space="l2", dim=X_train.shape[1])
    index.init_index(max_elements=len(X_train), M=16, ef_construction=200, random_seed=0)
    index.add_items(X_train, np.arange(len(X_train)))
    EXTRAS["build_seconds"] = time.perf_counter() - start
    for ef in HNSW_EFS:
        index.set_ef(max(ef, k))
        found, _ = index.knn_query(X_query, k=k)
        recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(found, exact, strict=True)])
        if recall >= HNSW_RECALL:
            break
    EXTRAS.update(ef=ef, recall=float(recall))

    def run() -> tuple[np.ndarray, np.ndarray]:
        labels, squared = index.knn_query(X_query, k=k)
        return np.sqrt(np.maximum(squared, 0.0), dtype=np.float64), labels.astype(np.int64)

    return run


def _prepare_knnlab_classifier(data: Inputs, p: float, k: int) -> Prepared:
    warm_up(p)
    model = KNNClassifier(n_neighbors=k, p=p, algorithm="brute")
    return lambda: model.fit(data.X_train, data.y_train).predict(data.X_query)


def _prepare_sklearn_classifier(data: Inputs, p: float, k: int) -> Prepared:
    model = KNeighborsClassifier(n_neighbors=k, algorithm="brute", p=p)
    return lambda: model.fit(data.X_train, data.y_train).predict(data.X_query)


@dataclass(frozen=True)
class Method:
    """A benchmarked implementation: ``prepare(inputs, p, k)`` does the untimed set-up and
    returns the call to time, which gives ``(distances, indices)`` for kind "search" and
    predicted labels for kind "predict"."""

    label: str
    kind: str
    prepare: Callable[[Inputs, float, int], Prepared]


METHODS = {
    "knnlab": Method("knnlab kneighbors", "search", _prepare_knnlab(None)),
    "knnlab-plain": Method("knnlab, no pre-filter", "search", _prepare_knnlab(False)),
    "knnlab-prefilter": Method("knnlab, pre-filter on", "search", _prepare_knnlab(True)),
    "hnswlib": Method("hnswlib HNSW (approximate)", "search", _prepare_hnswlib),
    "sklearn": Method("sklearn brute", "search", _prepare_sklearn("brute")),
    "faiss": Method("faiss IndexFlatL2 (float32)", "search", _prepare_faiss),
    "faiss-panorama": Method("faiss PCA,FlatL2Panorama8_512", "search", _prepare_faiss_panorama),
    "knnlab-clf": Method("knnlab KNNClassifier brute", "predict", _prepare_knnlab_classifier),
    "sklearn-clf": Method("sklearn KNeighborsClassifier", "predict", _prepare_sklearn_classifier),
    "sklearn-kd_tree": Method("sklearn kd_tree", "search", _prepare_sklearn("kd_tree")),
    "sklearn-ball_tree": Method("sklearn ball_tree", "search", _prepare_sklearn("ball_tree")),
}


@dataclass(frozen=True)
class Task:
    """One measurement: ``METHODS[method]`` at p and k on the first n_queries test rows of
    the arrays saved in data_dir, run ``repeat`` times."""

    method: str
    p: float
    k: int
    n_queries: int
    repeat: int
    data_dir: str
    n_train: int | None = None  # the first n_train training rows (None: all)
    self_query: bool = False  # the training rows are the queries (X_query=None)


def _load_inputs(task: Task) -> Inputs:
    folder = Path(task.data_dir)
    queries = np.load(folder / "X_test.npy", mmap_mode="r")
    X_train = np.load(folder / "X_train.npy", mmap_mode="r")
    return Inputs(
        X_train=np.array(X_train[: task.n_train]),  # private copies; the maps are dropped
        y_train=np.load(folder / "y_train.npy")[: task.n_train],
        X_query=np.array(queries[: task.n_queries]),
        self_query=task.self_query,
    )


def _memory_kib() -> tuple[int, int]:
    """(current, peak since the last reset) resident memory of this process, in KiB."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:  # not Linux: only the lifetime peak is known
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        peak = peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS
        return peak, peak
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def _reset_peak_memory() -> bool:
    """Set the peak-RSS mark (VmHWM) to the current RSS; Linux >= 4.0. False if impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


def run_task(task: Task) -> dict:
    """Load the inputs, then time ``task`` and measure its peak memory; meant for a fresh
    process (see :func:`measure`).

    Returns
    -------
    dict with ``seconds`` (one float per repeat), ``peak_mib`` (peak resident memory above
    the resident memory just before the first call, MiB), ``peak_reset`` (False when the
    peak mark could not be reset, so the peak may include earlier allocations) and
    ``output`` (the last call's result).
    """
    EXTRAS.clear()
    call = METHODS[task.method].prepare(_load_inputs(task), task.p, task.k)
    gc.collect()
    peak_reset = _reset_peak_memory()
    before, _ = _memory_kib()
    seconds, output = [], None
    for _ in range(task.repeat):
        output = None  # the previous result is not part of this run's memory
        start = time.perf_counter()
        output = call()
        seconds.append(time.perf_counter() - start)
    _, peak = _memory_kib()
    return {
        "seconds": seconds,
        "peak_mib": max(peak - before, 0) / 1024,
        "peak_reset": peak_reset,
        "output": output,
        "extras": dict(EXTRAS),
    }


def _process_context() -> multiprocessing.context.BaseContext:
    """Fresh processes: forked from a server that has only imported this module (fast, and
    nothing has run in it), or spawned where there is no forkserver."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def measure(task: Task) -> dict:
    """:func:`run_task` in a fresh process: a clean heap and its own thread pools."""
    with ProcessPoolExecutor(max_workers=1, mp_context=_process_context()) as pool:
        return pool.submit(run_task, task).result()


# --- checks ----------------------------------------------------------------------------------


def compare_neighbors(
    dist: np.ndarray,
    ind: np.ndarray,
    ref_dist: np.ndarray,
    ref_ind: np.ndarray,
    tie_rtol: float = TIE_RTOL,
) -> dict:
    """How far a search result agrees with a reference one, ties aside.

    A query is *tied* when its reference distances hold two equal values (their order is
    arbitrary), or when the two index rows differ but their distances are equal (another
    point at the k-th distance: both answers are right). Equal means within ``tie_rtol``.

    Parameters
    ----------
    dist, ind : ndarray of shape (n, k)
        The result to check, rows sorted by distance.
    ref_dist, ref_ind : ndarray of shape (n_ref, k), n_ref >= n
        The reference, e.g. scikit-learn brute force in float64; its first n rows are used.

    Returns
    -------
    dict with ``agree`` (fraction of untied queries whose index rows are identical, None
    if every query is tied), ``n_tied``, ``n_untied`` and ``max_rel_dist_diff`` (max over
    all queries and k of ``|dist - ref_dist| / ref_dist``; sorted distances do not depend
    on tie order).
    """
    n = dist.shape[0]
    ref_dist, ref_ind = ref_dist[:n], ref_ind[:n]
    same = (ind == ref_ind).all(axis=1)
    gaps = np.diff(ref_dist, axis=1)
    ordering_tie = (gaps <= tie_rtol * np.abs(ref_dist[:, 1:])).any(axis=1)
    set_tie = ~same & np.isclose(dist, ref_dist, rtol=tie_rtol, atol=0.0).all(axis=1)
    tied = ordering_tie | set_tie
    denominator = np.maximum(np.abs(ref_dist), np.finfo(np.float64).tiny)
    return {
        "agree": float(same[~tied].mean()) if (~tied).any() else None,
        "n_tied": int(tied.sum()),
        "n_untied": int((~tied).sum()),
        "max_rel_dist_diff": float((np.abs(dist - ref_dist) / denominator).max(initial=0.0)),
    }


def compare_predictions(pred: np.ndarray, ref_pred: np.ndarray, y_true: np.ndarray) -> dict:
    """pred, ref_pred, y_true: (n,) labels -> ``agree`` (fraction equal to ref_pred) and
    ``accuracy`` (fraction equal to y_true)."""
    return {
        "agree": float((pred == ref_pred).mean()),
        "accuracy": float((pred == y_true).mean()),
    }


# --- plan, run, report -----------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table; ``output`` stays out of the JSON."""

    method: str
    label: str
    kind: str
    p: float
    n_queries: int
    seconds: float
    seconds_all: list[float]
    peak_mib: float
    peak_reset: bool
    speedup_vs_sklearn: float | None = None
    speedup_vs_faiss: float | None = None
    checks: dict | None = None
    extras: dict = field(default_factory=dict)
    output: object = field(default=None, repr=False)

    def to_json(self) -> dict:
        record = {name: value for name, value in vars(self).items() if name != "output"}
        record["p"] = _p_text(self.p)
        return record


def _p_text(p: float) -> str:
    return "inf" if np.isinf(p) else f"{p:g}"


def queries_for(p: float, n_test: int, subsets: dict[float, int | None]) -> int:
    """Queries used at p: ``subsets[p]`` (None = all) if given, else all at p = 2, 1,000 at
    p = 1 and 200 at any other p; never more than n_test."""
    if p in subsets:
        wanted = subsets[p]
    elif p == 2:
        wanted = None
    else:
        wanted = DEFAULT_SUBSETS.get(p, DEFAULT_SUBSET_OTHER_P)
    return n_test if wanted is None else min(wanted, n_test)


def plan(args: argparse.Namespace, n_test: int, faiss_available: bool, data_dir: str) -> list[Task]:
    """The measurements to run, in order: per p, knnlab then its references."""
    tasks = []
    for p in args.p:
        n_queries = queries_for(p, n_test, args.query_subset)
        keys = ["knnlab"] + ([] if args.skip_sklearn else ["sklearn"])
        if p == 2:
            # the same search with the low-rank pre-filter forced off, and on
            keys[1:1] = ["knnlab-plain", "knnlab-prefilter"]
            keys += ["faiss", "faiss-panorama"] if faiss_available else []
            keys += ["hnswlib"] if args.hnswlib else []
            keys += ["knnlab-clf"] + ([] if args.skip_sklearn else ["sklearn-clf"])
        tasks += [Task(key, p, args.k, n_queries, args.repeat, data_dir) for key in keys]
        if args.trees:
            n_tree = min(TREE_QUERIES, n_queries)
            for key in ("sklearn-kd_tree", "sklearn-ball_tree"):
                tasks.append(Task(key, p, args.k, n_tree, args.repeat, data_dir))
    return tasks


def run_all(tasks: list[Task], log=sys.stderr) -> list[Row]:
    """Measure every task, each in its own process, printing progress to ``log``."""
    rows = []
    for number, task in enumerate(tasks, 1):
        method = METHODS[task.method]
        print(
            f"[{number}/{len(tasks)}] {method.label}, p={_p_text(task.p)}, "
            f"{task.n_queries} queries ...",
            end=" ",
            flush=True,
            file=log,
        )
        result = measure(task)
        seconds = min(result["seconds"])
        print(f"{seconds:.3f} s, peak {result['peak_mib']:.1f} MiB", flush=True, file=log)
        rows.append(
            Row(
                task.method,
                method.label,
                method.kind,
                task.p,
                task.n_queries,
                seconds,
                result["seconds"],
                result["peak_mib"],
                result["peak_reset"],
                extras=result["extras"],
                output=result["output"],
            )
        )
    return rows


def _speedup(row: Row, reference: Row | None) -> float | None:
    """Reference time per query over this row's: > 1 means this row is faster."""
    if reference is None:
        return None
    return (reference.seconds / reference.n_queries) / (row.seconds / row.n_queries)


def add_checks(rows: list[Row], y_test: np.ndarray) -> None:
    """Fill each row's speed-ups and checks against the references at its p: scikit-learn
    brute force (search rows), scikit-learn's classifier (predict rows) and faiss."""
    by_key = {(row.method, row.p): row for row in rows}
    for row in rows:
        faiss_row = by_key.get(("faiss", row.p))
        if row.kind == "predict":
            reference = by_key.get(("sklearn-clf", row.p))
            row.checks = {"accuracy": float((row.output == y_test[: row.n_queries]).mean())}
            if reference is not None and reference is not row:
                row.checks = compare_predictions(
                    row.output, reference.output, y_test[: row.n_queries]
                )
        else:
            reference = by_key.get(("sklearn", row.p))
            if reference is not None and reference is not row:
                row.checks = compare_neighbors(*row.output, *reference.output)
            if faiss_row is not None:
                row.speedup_vs_faiss = _speedup(row, faiss_row)
        row.speedup_vs_sklearn = _speedup(row, reference)


_COLUMNS = (
    ("method", "<", 29),
    ("p", ">", 3),
    ("queries", ">", 7),
    ("seconds", ">", 9),
    ("vs sklearn", ">", 10),
    ("vs faiss", ">", 8),
    ("peak MiB", ">", 8),
    ("agree", ">", 6),
    ("tied", ">", 5),
    ("max rel diff", ">", 12),
)


def _cells(row: Row) -> list[str]:
    def ratio(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}x"

    checks = row.checks or {}
    is_reference = row.method in ("sklearn", "sklearn-clf")
    agree = checks.get("agree")
    return [
        row.label,
        _p_text(row.p),
        str(row.n_queries),
        f"{row.seconds:.3f}",
        ratio(row.speedup_vs_sklearn),
        ratio(row.speedup_vs_faiss),
        f"{row.peak_mib:.1f}" + ("" if row.peak_reset else "*"),
        "ref" if is_reference else ("-" if agree is None else f"{agree:.4f}"),
        str(checks["n_tied"]) if "n_tied" in checks else "-",
        f"{checks['max_rel_dist_diff']:.1e}" if "max_rel_dist_diff" in checks else "-",
    ]


def format_table(rows: list[Row]) -> str:
    """The results as fixed-width text, one line per row."""
    lines = [" ".join(f"{name:{align}{width}}" for name, align, width in _COLUMNS)]
    lines.append(" ".join("-" * width for _, _, width in _COLUMNS))
    for row in rows:
        cells = zip(_cells(row), _COLUMNS, strict=True)
        lines.append(" ".join(f"{cell:{align}{width}}" for cell, (_, align, width) in cells))
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    for line in cpuinfo.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        meminfo = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in meminfo.splitlines() if ":" in line)
    return int(fields["MemTotal"].split()[0]) / 2**20


def _git_state(folder: Path) -> str | None:
    """Short commit of the checkout holding ``folder``, with ``+dirty`` if files under it
    differ from the commit; None outside a git checkout. Says which knnlab was measured."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        changes = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--", "."],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if changes else "")


def faiss_version() -> str | None:
    """faiss's version if it imports, else None (``pip install faiss-cpu``)."""
    if util.find_spec("faiss") is None:
        return None
    import faiss

    return getattr(faiss, "__version__", "unknown")


def machine_info() -> dict:
    """CPU, memory, library versions and thread pools of this process (as the children
    load the same libraries, the same pools serve them)."""
    from threadpoolctl import threadpool_info

    versions = {name: metadata.version(name) for name in ("numpy", "scipy", "scikit-learn")}
    versions["knnlab"] = metadata.version("knnlab")
    source = Path(knnlab.__file__).parent
    versions["faiss"] = faiss_version()
    versions["hnswlib"] = (
        metadata.version("hnswlib") if util.find_spec("hnswlib") is not None else None
    )
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(affinity) if affinity is not None else os.cpu_count(),
        "memory_gib": _memory_gib(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "knnlab_source": str(source),
        "knnlab_commit": _git_state(source),
        "thread_pools": [
            {
                "api": pool.get("internal_api"),
                "version": pool.get("version"),
                "threads": pool.get("num_threads"),
                "library": Path(pool.get("filepath", "?")).name,
            }
            for pool in sorted(threadpool_info(), key=lambda pool: pool.get("filepath", ""))
        ],
    }


def format_machine(info: dict) -> str:
    """machine_info() as a few lines of text."""
    memory = "?" if info["memory_gib"] is None else f"{info['memory_gib']:.1f} GiB"
    versions = ", ".join(
        f"{name} {version or 'not installed'}" for name, version in info["versions"].items()
    )
    lines = [
        f"machine: {info['cpu_model']}, {info['cpus_usable']} usable CPUs "
        f"(of {info['cpu_count']}), {memory} RAM, {info['platform']}",
        f"python {info['python']}, {versions}",
        f"knnlab from {info['knnlab_source']} (git {info['knnlab_commit'] or 'n/a'})",
        "thread pools: "
        + "; ".join(
            f"{pool['api']} {pool['version'] or ''} ({pool['library']}) {pool['threads']} threads"
            for pool in info["thread_pools"]
        ),
    ]
    return "\n".join(lines)


def notes(
    args: argparse.Namespace, description: str, n_test: int, faiss_available: bool, rows: list
) -> list[str]:
    """What the table's columns mean, and which queries each p used."""
    subsets = ", ".join(
        f"p={_p_text(p)}: "
        + (
            f"all {n_test}"
            if queries_for(p, n_test, args.query_subset) == n_test
            else f"first {queries_for(p, n_test, args.query_subset)} of {n_test}"
        )
        for p in args.p
    )
    lines = [
        f"data: {description}, 784 features, integer grey levels as float64 (faiss, hnswlib: "
        f"float32); k = {args.k}",
        f"queries: {subsets}" + (f"; trees: first <= {TREE_QUERIES}" if args.trees else ""),
        f"seconds: best of {args.repeat}, each call in a fresh process; sklearn = "
        "fit + kneighbors/predict, faiss = add + search, trees include the build",
        "vs sklearn / vs faiss: their seconds per query over this row's (> 1 = faster); "
        "classifier rows against sklearn's classifier",
        "peak MiB: peak resident memory (VmHWM) above the resident memory just before the "
        "call, inputs already loaded (* = peak mark not resettable: an upper bound)",
        "agree: search rows, fraction of untied queries with the same neighbour indices as "
        "sklearn brute (float64); classifier rows, fraction of equal predictions",
        f"tied: queries left out of agree (equal distances within {TIE_RTOL:g}); max rel "
        "diff: max |d - d_sklearn| / d_sklearn",
    ]
    if 2 in args.p:
        lines.append(
            "p=2: 'knnlab kneighbors' decides on its own to use the low-rank pre-filter "
            "(it does at this size); 'no pre-filter' is prefilter=False, one full float32 "
            "multiply per chunk like faiss, 'pre-filter on' is prefilter=True; all three give "
            "the same answer bit for bit"
        )
    for row in rows:
        if row.method == "hnswlib" and row.extras:
            lines.append(
                f"hnswlib: approximate; build {row.extras['build_seconds']:.1f} s (not in its "
                f"seconds), M = 16, ef_construction = 200, queried at ef = {row.extras['ef']}, "
                f"the smallest of {HNSW_EFS} with recall >= {HNSW_RECALL} (recall "
                f"{row.extras['recall']:.4f}); knnlab needs no build"
            )
    if not faiss_available and 2 in args.p:
        lines.append("faiss: skipped (not installed, or --no-faiss); pip install faiss-cpu")
    return lines


def _parse_p(text: str) -> float:
    p = float(text)
    if not p >= 1:
        raise argparse.ArgumentTypeError(f"p must be >= 1 (or inf), got {text}")
    return p


def _parse_subset(text: str) -> tuple[float, int | None]:
    p_text, sep, n_text = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected P=N or P=all, got {text!r}")
    n = None if n_text == "all" else int(n_text)
    if n is not None and n < 1:
        raise argparse.ArgumentTypeError(f"a query subset needs N >= 1, got {text!r}")
    return _parse_p(p_text), n


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/bench_search.py",
        description="Time knnlab's exact kNN search against scikit-learn brute force, faiss "
        "and hnswlib (when installed) on real Fashion-MNIST images, then check the automatic "
        "pre-filter choice on five kinds of data and how the cost grows with n and k.",
    )
    parser.add_argument(
        "--n-train", type=int, help="training points (default 60000; 5000 with --quick)"
    )
    parser.add_argument("--n-test", type=int, help="queries (default 10000; 500 with --quick)")
    parser.add_argument("--k", type=int, default=5, help="neighbours (default 5)")
    parser.add_argument(
        "--p",
        type=_parse_p,
        nargs="+",
        default=[1.0, 2.0, 3.0],
        help="Minkowski p values (default 1 2 3)",
    )
    parser.add_argument(
        "--query-subset",
        type=_parse_subset,
        action="append",
        default=[],
        metavar="P=N",
        help="use the first N queries at p = P, or P=all (default 1=1000, 200 at other "
        "p != 2, all at p = 2); repeatable",
    )
    parser.add_argument("--skip-sklearn", action="store_true", help="time knnlab (and faiss) only")
    parser.add_argument("--no-faiss", action="store_true", help="leave faiss out even if installed")
    parser.add_argument(
        "--no-hnswlib", action="store_true", help="leave hnswlib out even if installed"
    )
    parser.add_argument(
        "--data",
        choices=DATASETS,
        default="fashion_mnist",
        help="the headline data: real Fashion-MNIST images (default; from Debian's "
        "dataset-fashion-mnist, data/input or OpenML) or synthetic MNIST-shaped digits",
    )
    parser.add_argument(
        "--headline-only",
        action="store_true",
        help="only the first table (default with --quick): no automatic-choice, "
        "self-query or cost-growth tables",
    )
    parser.add_argument(
        "--trees",
        action="store_true",
        help=f"also sklearn kd_tree and ball_tree on <= {TREE_QUERIES} queries",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per measurement; the best counts (default 1)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small problem (5000 x 784, 500 queries) for smoke tests",
    )
    parser.add_argument("--seed", type=int, default=0, help="data seed (default 0)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    return parser


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    default_train, default_test = QUICK_SIZE if args.quick else FULL_SIZE
    args.n_train = default_train if args.n_train is None else args.n_train
    args.n_test = default_test if args.n_test is None else args.n_test
    args.query_subset = dict(args.query_subset)
    args.p = list(dict.fromkeys(args.p))  # drop repeats, keep order
    args.all_sections = not (args.quick or args.headline_only)
    if not 1 <= args.k < args.n_train:
        parser.error(f"need 1 <= --k < --n-train, got k = {args.k}, n_train = {args.n_train}")
    if args.n_test < 1 or args.repeat < 1:
        parser.error("--n-test and --repeat must be >= 1")
    return args


def _save_inputs(folder: Path, X_train, y_train, X_test) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "X_train.npy", X_train.astype(np.float64))
    np.save(folder / "y_train.npy", y_train)
    np.save(folder / "X_test.npy", X_test.astype(np.float64))


# --- the other sections: automatic choice, self-query, cost growth ---------------------------

AUTO_TOLERANCE = 1.05  # prefilter=None within 5 % of the faster of True and False
SMALL_PAIRS = 10**8  # below this many query x training pairs, repeat SMALL_REPEAT times
SMALL_REPEAT = 20
SCALING_TRAIN = (15_000, 30_000, 60_000, 120_000)
SCALING_K = (1, 5, 50)


def _one(task: Task) -> Row:
    """One measurement, without run_all's progress line (the sections print their own)."""
    with open(os.devnull, "w") as quiet:
        return run_all([task], log=quiet)[0]


def auto_choice(cases: dict, args, log=sys.stderr) -> list[dict]:
    """Per case (name -> (data_dir, n_train, n_queries, description)): seconds of
    kneighbors at p = 2 with prefilter None, True and False, and None over the faster."""
    results = []
    for name, (folder, n_train, n_queries, description) in cases.items():
        repeat = args.repeat if n_train * n_queries >= SMALL_PAIRS else SMALL_REPEAT
        times = {}
        for key in ("knnlab", "knnlab-prefilter", "knnlab-plain"):
            print(f"auto choice: {name}, {METHODS[key].label} ...", end=" ", file=log, flush=True)
            times[key] = _one(Task(key, 2.0, args.k, n_queries, repeat, folder)).seconds
            print(f"{times[key]:.3f} s", file=log, flush=True)
        best = min(times["knnlab-prefilter"], times["knnlab-plain"])
        results.append(
            {
                "case": name,
                "data": description,
                "auto": times["knnlab"],
                "prefilter_true": times["knnlab-prefilter"],
                "prefilter_false": times["knnlab-plain"],
                "auto_over_best": times["knnlab"] / best,
                "ok": times["knnlab"] <= AUTO_TOLERANCE * best,
            }
        )
    return results


def format_auto(results: list[dict]) -> str:
    lines = [
        f"{'case':<22} {'None (auto)':>11} {'True':>8} {'False':>8} {'auto/best':>9}  verdict",
        f"{'-' * 22} {'-' * 11} {'-' * 8} {'-' * 8} {'-' * 9}  -------",
    ]
    for r in results:
        verdict = "ok" if r["ok"] else f"SLOW (> {AUTO_TOLERANCE:.2f}x)"
        lines.append(
            f"{r['case']:<22} {r['auto']:>11.3f} {r['prefilter_true']:>8.3f} "
            f"{r['prefilter_false']:>8.3f} {r['auto_over_best']:>8.2f}x  {verdict}"
        )
    return "\n".join(lines)


def self_query_rows(folder: str, n_train: int, args, log=sys.stderr) -> list[Row]:
    """The queries are the training set (X_query=None), as in tuning and the novelty
    threshold: the first n_train training rows, prefilter None, True and False."""
    rows = []
    for key in ("knnlab", "knnlab-prefilter", "knnlab-plain"):
        print(f"self-query {n_train}: {METHODS[key].label} ...", end=" ", file=log, flush=True)
        row = _one(Task(key, 2.0, args.k, n_train, args.repeat, folder, n_train, True))
        print(f"{row.seconds:.3f} s", file=log, flush=True)
        rows.append(row)
    reference = rows[-1].output
    for row in rows:
        row.checks = {
            "identical": bool(
                np.array_equal(row.output[1], reference[1])
                and np.array_equal(row.output[0], reference[0])
            )
        }
    return rows


def scaling_rows(folder: str, n_queries: int, args, faiss_available, log=sys.stderr) -> list:
    """Seconds and peak memory against the training-set size (k = args.k) and against k
    (60,000 training images), knnlab's automatic search and faiss's IndexFlatL2."""
    plan_ = [(n, args.k) for n in SCALING_TRAIN] + [(60_000, k) for k in SCALING_K if k != args.k]
    results = []
    for n_train, k in plan_:
        entry = {"n_train": n_train, "k": k}
        for key in ("knnlab", "faiss") if faiss_available else ("knnlab",):
            print(f"scaling: n_train={n_train}, k={k}, {key} ...", end=" ", file=log, flush=True)
            row = _one(Task(key, 2.0, k, n_queries, args.repeat, folder, n_train))
            print(f"{row.seconds:.3f} s", file=log, flush=True)
            entry[key] = (row.seconds, row.peak_mib, row.output)
        if "faiss" in entry:
            same = (entry["knnlab"][2][1] == entry["faiss"][2][1]).all(axis=1).mean()
            entry["agree_with_faiss"] = float(same)
        results.append(entry)
    return results


def format_scaling(results: list[dict]) -> str:
    lines = [
        f"{'n_train':>8} {'k':>3} {'knnlab s':>9} {'MiB':>6} {'faiss s':>8} {'MiB':>6} "
        f"{'faiss/knnlab':>12} {'same ind':>8}",
        f"{'-' * 8} {'-' * 3} {'-' * 9} {'-' * 6} {'-' * 8} {'-' * 6} {'-' * 12} {'-' * 8}",
    ]
    for r in results:
        knn_s, knn_mib, _ = r["knnlab"]
        if "faiss" in r:
            f_s, f_mib, _ = r["faiss"]
            tail = f"{f_s:>8.3f} {f_mib:>6.0f} {f_s / knn_s:>11.2f}x {r['agree_with_faiss']:>8.4f}"
        else:
            tail = f"{'-':>8} {'-':>6} {'-':>12} {'-':>8}"
        lines.append(f"{r['n_train']:>8} {r['k']:>3} {knn_s:>9.3f} {knn_mib:>6.0f} {tail}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Build the data, run every measurement, print the tables (and write ``--json``)."""
    args = _parse_args(argv)
    info = machine_info()
    faiss_available = info["versions"]["faiss"] is not None and not args.no_faiss
    args.hnswlib = info["versions"]["hnswlib"] is not None and not args.no_hnswlib
    start = time.perf_counter()
    X_train, y_train, X_test, y_test, description = load_data(
        args.data, args.n_train, args.n_test, args.seed
    )
    print(f"data ({description}) ready in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    sections = {}
    with tempfile.TemporaryDirectory(prefix="knnlab-bench-") as tmp:
        tmp = Path(tmp)
        _save_inputs(tmp / "main", X_train, y_train, X_test)
        rows = run_all(plan(args, args.n_test, faiss_available, str(tmp / "main")))
        if args.all_sections:
            cases = {args.data: (str(tmp / "main"), args.n_train, args.n_test, description)}
            other = "synthetic" if args.data == "fashion_mnist" else "fashion_mnist"
            o_train, o_y, o_test, _, o_description = load_data(
                other, args.n_train, args.n_test, args.seed
            )
            _save_inputs(tmp / other, o_train, o_y, o_test)
            cases[other] = (str(tmp / other), args.n_train, args.n_test, o_description)
            for number, (name, (A, B, text)) in enumerate(auto_cases(args.seed).items()):
                _save_inputs(tmp / f"case{number}", A, np.zeros(len(A)), B)
                cases[name] = (str(tmp / f"case{number}"), len(A), len(B), text)
            sections["auto"] = auto_choice(cases, args)
            n_self = min(SELF_QUERY_ROWS, args.n_train)
            sections["self"] = self_query_rows(str(tmp / "main"), n_self, args)
            if args.data == "fashion_mnist":
                _save_inputs(
                    tmp / "grown", np.vstack([X_train, shifted_copy(X_train)]), np.zeros(1), X_test
                )
                sections["scaling"] = scaling_rows(
                    str(tmp / "grown"), args.n_test, args, faiss_available
                )
        del X_train, X_test
    add_checks(rows, y_test)
    report_notes = notes(args, description, args.n_test, faiss_available, rows)
    print(format_machine(info))
    print()
    print(f"== Search and predict on {description}, k = {args.k}")
    print(format_table(rows))
    print()
    print("\n".join(report_notes))
    accuracies = [
        f"{row.label} {row.checks['accuracy']:.4f}" for row in rows if row.kind == "predict"
    ]
    if accuracies:
        print("accuracy: " + ", ".join(accuracies))
    if "auto" in sections:
        print()
        print(
            f"== The automatic choice (prefilter=None) against both forced choices, p = 2, "
            f"k = {args.k}; seconds, best of {args.repeat} ({SMALL_REPEAT} below "
            f"{SMALL_PAIRS:.0e} pairs); target: within {AUTO_TOLERANCE:.2f}x of the faster"
        )
        print(format_auto(sections["auto"]))
        for r in sections["auto"]:
            print(f"  {r['case']}: {r['data']}")
    if "self" in sections:
        self_rows = sections["self"]
        print()
        print(
            f"== Queries = the training set (X_query=None), the first {self_rows[0].n_queries} "
            f"training images, p = 2, k = {args.k}"
        )
        for row in self_rows:
            same = "identical to no pre-filter" if row.checks["identical"] else "DIFFERENT"
            print(f"{row.label:<29} {row.seconds:>8.3f} s  peak {row.peak_mib:>6.0f} MiB  {same}")
    if "scaling" in sections:
        print()
        print(
            f"== How cost grows, p = 2, {args.n_test} queries: training sets of the first "
            "15,000 / 30,000 / 60,000 Fashion-MNIST images, and 120,000 = the 60,000 plus "
            "each shifted one pixel right; then k at 60,000. Seconds; peak MiB above the inputs"
        )
        print(format_scaling(sections["scaling"]))
    if args.json is not None:
        config = {
            "data": description,
            "n_train": args.n_train,
            "n_test": args.n_test,
            "n_features": IMAGE_SIDE * IMAGE_SIDE,
            "k": args.k,
            "p": [_p_text(p) for p in args.p],
            "seed": args.seed,
            "repeat": args.repeat,
            "queries": {_p_text(p): queries_for(p, args.n_test, args.query_subset) for p in args.p},
        }
        record = {
            "machine": info,
            "config": config,
            "rows": [row.to_json() for row in rows],
            "notes": report_notes,
            "auto_choice": sections.get("auto"),
            "self_query": [row.to_json() for row in sections.get("self", [])],
            "scaling": [
                {
                    "n_train": r["n_train"],
                    "k": r["k"],
                    **{f"{key}_seconds": r[key][0] for key in ("knnlab", "faiss") if key in r},
                    **{f"{key}_peak_mib": r[key][1] for key in ("knnlab", "faiss") if key in r},
                }
                for r in sections.get("scaling", [])
            ],
        }
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0
