"""Approximate search benchmark, ann-benchmarks style: knnlab's ``hnsw`` and ``ivf`` backends
(faiss-cpu) against knnlab's exact search, on the real Fashion-MNIST, k = 5, p = 2.

Run it from the repository root with the project's environment (about 8 minutes on 2 cores,
more when it waits for other processes, see below)::

    python benchmarks/bench_ann.py                 # 60,000 x 784 train, 10,000 test queries
    python benchmarks/bench_ann.py --quick         # scikit-learn digits: a smoke test, seconds
    python benchmarks/bench_ann.py --train-rows 20000 --queries 2000 --out /tmp/ann.txt
    python benchmarks/bench_ann.py --help

Data: Debian's ``dataset-fashion-mnist`` IDX files (``apt-get install dataset-fashion-mnist``,
read with :func:`knnlab.pipeline.data.fashion_mnist.read_idx`): the first ``--train-rows`` training
images, the first ``--queries`` test images, float64 grey levels 0..255 as they are (no
scaling). ``--quick``: scikit-learn's 8x8 digits (1,797 x 64; 1,437 train, 360 queries).

What it measures, per row of the table (every index through :func:`knnlab.search.build_index`,
queries through its ``kneighbors``, the path a fitted model takes):

* **exact**: the brute-force index a fitted model searches (``build_index("brute")``: the
  training set prepared once, see :class:`knnlab.neighbors.PreparedSearch`; numba kernels
  compiled before timing); its neighbours are the ground truth;
* **hnsw** (M = 16, ef_construction = 200), ef_search 16..256, and **ivf** (nlist = the
  default round(sqrt(n)) and ``--ivf-nlists``), nprobe 1..32. Each index is built once
  (build seconds, ``nbytes``, RSS growth) and loaded from its ``state()`` with each search
  setting (``ef_search``/``nprobe`` act at search time only);
* recall@5: mean over queries of |found ∩ exact| / 5 (index sets; checked once against a
  Python loop); accuracy: the 5-NN uniform majority vote (knnlab's own vote,
  :func:`knnlab.voting.class_probabilities`, ties to the lower class) against the test
  labels; QPS: all queries in one call, median of ``--repeat``; latency: median of
  ``--single`` one-row calls (ms); build: seconds, once per index; index MB: ``ix.nbytes``
  (the serialized faiss index); RSS: VmRSS growth over the build (/proc/self/status), after
  the previous indexes were freed, so approximate. MB here is 2**20 bytes throughout.

Then, per index: loading it from ``state()`` (bytes already in memory; median of 3) against
building it again, and determinism: the ``state()`` bytes of two builds (n_jobs None and 2),
and of n_jobs = 1 against n_jobs = 2, compared; where they differ, the recall of each build.
An estimator check: ``KNNClassifier(algorithm="ivf")`` predicts what the vote on the sweep's
ivf neighbours predicts.

The machine is shared: every timed measurement also records the share of the CPU other
processes used meanwhile (from /proc/stat, minus this process's own time; the last column),
and one disturbed by more than ``--max-others`` (10 %) is run again after a quiet spell, up
to ``--retries`` times within ``--wait-budget`` seconds of waiting, keeping the least
disturbed attempt. Writes the tables, the command, date, machine and library versions to
``benchmarks/results_ann.txt`` (``--out``; ``--quick`` only prints).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from knnlab import search
from knnlab.backends.ivf import n_cells
from knnlab.neighbors import warm_up
from knnlab.voting import class_probabilities

RESULTS = Path(__file__).with_name("results_ann.txt")
K = 5
EF_SEARCH = (16, 32, 64, 128, 256)
NPROBE = (1, 2, 4, 8, 16, 32)
HNSW_BUILD = {"M": 16, "ef_construction": 200}
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


# --- data ------------------------------------------------------------------------------------


def _idx(name: str) -> np.ndarray:
    from knnlab.pipeline.data.fashion_mnist import read_idx

    for path in (FASHION_DIR / name, FASHION_DIR / f"{name}.gz"):
        if path.exists():
            return read_idx(path)
    raise SystemExit(f"{FASHION_DIR / name}(.gz) not found: apt-get install dataset-fashion-mnist")


def load_data(quick: bool, train_rows: int | None, queries: int | None):
    """(X_train, y_train, X_query, y_query, name): float64 rows, int64 labels."""
    if quick:
        from sklearn.datasets import load_digits

        X, y = load_digits(return_X_y=True)
        X_train, y_train, X_query, y_query = X[:1437], y[:1437], X[1437:], y[1437:]
        name = "scikit-learn digits (8x8, grey levels 0..16)"
    else:
        X_train = _idx("train-images-idx3-ubyte").reshape(60_000, -1)
        y_train = _idx("train-labels-idx1-ubyte")
        X_query = _idx("t10k-images-idx3-ubyte").reshape(10_000, -1)
        y_query = _idx("t10k-labels-idx1-ubyte")
        name = "Fashion-MNIST (Debian dataset-fashion-mnist IDX files, grey levels 0..255)"
    X_train, y_train = X_train[:train_rows], y_train[:train_rows]
    X_query, y_query = X_query[:queries], y_query[:queries]
    as64 = np.ascontiguousarray
    return (
        as64(X_train, dtype=np.float64),
        y_train.astype(np.int64),
        as64(X_query, dtype=np.float64),
        y_query.astype(np.int64),
        name,
    )


# --- measures --------------------------------------------------------------------------------


def rss_mb() -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_snapshot() -> tuple[float, float]:
    """(all CPUs' busy seconds, this process's CPU seconds) so far."""
    with open("/proc/stat") as handle:
        ticks = [int(v) for v in handle.readline().split()[1:]]
    busy = sum(ticks) - ticks[3] - ticks[4]  # minus idle and iowait
    times = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), times.user + times.system


def others_share(since: tuple[float, float], wall: float) -> float:
    """Share of the machine's CPU (0..1) that other processes used since ``since``; nan for
    less than a second (the kernel counts in 10 ms ticks)."""
    busy, own = cpu_snapshot()
    if wall < 1.0:
        return float("nan")
    return min(1.0, max(0.0, (busy - since[0]) - (own - since[1])) / (wall * os.cpu_count()))


def _share(value: float | None) -> str:
    return "–" if value is None or np.isnan(value) else f"{value:.0%}"


@dataclass
class Guard:
    """Runs a timed measurement again when other processes took more than ``max_others`` of
    the machine's CPU while it ran (the machine is shared): waits for a quiet spell (at most
    ``wait_s``), up to ``retries`` times, and keeps the least disturbed attempt; all the
    waiting of a run stops after ``budget_s``. Returns (result, share of the CPU others used
    during it)."""

    max_others: float = 0.10
    retries: int = 3
    wait_s: float = 60.0
    budget_s: float = 300.0
    reruns: int = 0

    def run(self, what: str, call: Callable[[], object]) -> tuple[object, float]:
        best = None
        for attempt in range(1 + self.retries):
            start, snap = time.time(), cpu_snapshot()
            out = call()
            share = others_share(snap, time.time() - start)
            if best is None or share < best[1]:  # nan (too short to tell): the first
                best = (out, share)
            del out
            if not share > self.max_others or attempt == self.retries or self.budget_s <= 0:
                break
            self.reruns += 1
            print(f"  {what}: others used {share:.0%} of the CPU; measuring again", flush=True)
            self.wait_quiet()
        return best

    def wait_quiet(self) -> None:
        began = time.time()
        deadline = began + min(self.wait_s, self.budget_s)
        while time.time() < deadline:
            start, snap = time.time(), cpu_snapshot()
            time.sleep(5)
            if others_share(snap, time.time() - start) <= self.max_others / 2:
                break
        self.budget_s -= time.time() - began


GUARD = Guard()


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |found ∩ exact| / k; rows hold distinct indices."""
    hits = (found[:, :, None] == exact[:, None, :]).any(axis=2).sum(axis=1)
    return float(hits.mean() / exact.shape[1])


def recall_loop(found: np.ndarray, exact: np.ndarray) -> float:
    k, total = exact.shape[1], 0.0
    for f, e in zip(found.tolist(), exact.tolist(), strict=True):
        total += len(set(f) & set(e)) / k
    return total / len(exact)


def recall_by_distance(dist: np.ndarray, exact_dist: np.ndarray) -> float:
    """ann-benchmarks' tie-aware recall: found rows no farther than the exact k-th."""
    return float((dist <= exact_dist[:, -1:] * (1 + 1e-12)).sum(axis=1).mean() / dist.shape[1])


def vote(dist: np.ndarray, ind: np.ndarray, y_train: np.ndarray) -> np.ndarray:
    """The uniform k-NN majority vote, ties to the lower label (labels are 0..9)."""
    proba = class_probabilities(dist, y_train[ind], 10, "uniform", [dist.shape[1]])[0]
    return np.argmax(proba, axis=1)


def accuracy(dist: np.ndarray, ind: np.ndarray, y_train: np.ndarray, y_query: np.ndarray):
    return float((vote(dist, ind, y_train) == y_query).mean())


def timed(call: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    out = call()
    return time.perf_counter() - start, out


def speed(search_fn, X_query: np.ndarray, repeat: int, single: int):
    """(dist, ind, qps, latency ms): batch median of ``repeat``, one-row median."""
    times, result = [], None
    for _ in range(repeat):
        seconds, result = timed(lambda: search_fn(X_query))
        times.append(seconds)
    latencies = [timed(lambda i=i: search_fn(X_query[i : i + 1]))[0] for i in range(single)]
    dist, ind = result
    return dist, ind, len(X_query) / statistics.median(times), statistics.median(latencies) * 1e3


@dataclass
class Row:
    method: str
    setting: str
    recall: float
    recall_dist: float
    accuracy: float
    qps: float
    latency_ms: float
    build_s: float | None
    index_mb: float | None
    rss_mb: float | None
    others: float  # other processes' CPU share while the search was timed
    build_others: float | None  # ... while the index was built


# --- runs ------------------------------------------------------------------------------------


def _build_once(algorithm: str, X: np.ndarray, options: dict, n_jobs):
    gc.collect()
    before = rss_mb()
    seconds, ix = timed(
        lambda: search.build_index(algorithm, X, p=2.0, options=options, seed=0, n_jobs=n_jobs)
    )
    grown = rss_mb() - before  # the index itself; state() below keeps a serialized copy too
    return ix, seconds, grown


def build(algorithm: str, X: np.ndarray, options: dict, n_jobs=None):
    """(index, seconds, RSS growth MB, others' CPU share during the build)."""
    (ix, seconds, grown), others = GUARD.run(
        f"{algorithm} build", lambda: _build_once(algorithm, X, options, n_jobs)
    )
    ix.state()  # serialized once here, so nbytes and the load below cost no extra time
    return ix, seconds, grown, others


def load(algorithm: str, X: np.ndarray, options: dict, state: np.ndarray):
    return search.build_index(algorithm, X, p=2.0, options=options, state=state)


def sweep(algorithm, X, options, knob, values, data, truth, args, rows, checks):
    """Build one index, then one table row per search setting; returns the build record."""
    X_query, y_train, y_query = data
    exact_dist, exact_ind = truth
    ix, build_s, rss, build_others = build(algorithm, X, options)
    state = ix.state()
    label = ", ".join(f"{k}={v}" for k, v in options.items())
    if algorithm == "ivf" and options["nlist"] is None:
        label = f"nlist={n_cells(options, len(X))} (default)"
    print(f"{algorithm} {label}: built in {build_s:.1f} s, {ix.nbytes / 2**20:.1f} MB", flush=True)
    for value in values:
        searched = load(algorithm, X, {**options, knob: value}, state)
        search_fn = lambda Q, s=searched: s.kneighbors(Q, K)  # noqa: E731
        (dist, ind, qps, latency), others = GUARD.run(
            f"{algorithm} {knob}={value}",
            lambda f=search_fn: speed(f, X_query, args.repeat, args.single),
        )
        r = recall(ind, exact_ind)
        checks["votes", algorithm, options.get("nlist"), value] = vote(dist, ind, y_train)
        if "recall_loop" not in checks:
            checks["recall_loop"] = (r, recall_loop(ind, exact_ind))
        rows.append(
            Row(
                algorithm,
                f"{label}, {knob}={value}",
                r,
                recall_by_distance(dist, exact_dist),
                accuracy(dist, ind, y_train, y_query),
                qps,
                latency,
                build_s,
                ix.nbytes / 2**20,
                rss,
                others,
                build_others,
            )
        )
        print(f"  {knob}={value}: recall {r:.4f}, {qps:,.0f} q/s, {latency:.2f} ms", flush=True)
    return {"algorithm": algorithm, "options": options, "label": label, "index": ix,
            "build_s": build_s, "build_others": build_others}  # fmt: skip


def estimator_check(X_train, y_train, X_query, checks) -> str:
    """KNNClassifier(algorithm="ivf", nprobe=8) against the vote on the sweep's neighbours."""
    from knnlab.estimators import KNNClassifier

    model = KNNClassifier(n_neighbors=K, algorithm="ivf", index={"nprobe": 8}, random_state=0)
    seconds, predicted = timed(lambda: model.fit(X_train, y_train).predict(X_query))
    same = np.array_equal(predicted, checks["votes", "ivf", None, 8])
    return (
        f"# estimator check: KNNClassifier(n_neighbors=5, algorithm='ivf', index={{'nprobe': 8}},"
        f" random_state=0).fit().predict() ({seconds:.1f} s) equals the vote on the sweep's "
        f"ivf nprobe=8 neighbours: {same}"
    )


def load_vs_rebuild(record, X, X_query, exact_ind, repeat: int) -> dict:
    """Load from state() against building again; determinism of the state() bytes."""
    algorithm, options, ix = record["algorithm"], record["options"], record["index"]
    state = ix.state()
    loads, load_others = GUARD.run(
        f"{algorithm} load",
        lambda: [timed(lambda: load(algorithm, X, options, state))[0] for _ in range(repeat)],
    )
    loaded = load(algorithm, X, options, state)
    pairs = zip(loaded.kneighbors(X_query, K), ix.kneighbors(X_query, K), strict=True)
    same_answers = all(np.array_equal(a, b) for a, b in pairs)
    del loaded
    rebuilt, rebuild_s, _, rebuild_others = build(algorithm, X, options, n_jobs=2)
    one, one_s, _, one_others = build(algorithm, X, options, n_jobs=1)
    out = {
        "label": f"{algorithm} {record['label']}",
        "state_mb": state.size / 2**20,
        "build_s": record["build_s"],
        "rebuild_s": rebuild_s,
        "one_thread_s": one_s,
        "load_s": statistics.median(loads),
        "loaded_same_answers": same_answers,
        "twice_equal": np.array_equal(state, rebuilt.state()),
        "threads_equal": np.array_equal(rebuilt.state(), one.state()),
        "others": max(
            (
                v
                for v in (record["build_others"], load_others, rebuild_others, one_others)
                if not np.isnan(v)
            ),
            default=float("nan"),
        ),
    }
    if not (out["twice_equal"] and out["threads_equal"]):
        out["recalls"] = [
            recall(b.kneighbors(X_query, K)[1], exact_ind) for b in (ix, rebuilt, one)
        ]
    return out


# --- report ----------------------------------------------------------------------------------


def _opt(value: float | None, fmt: str) -> str:
    return "–" if value is None else format(value, fmt)


def results_table(rows: list[Row]) -> list[str]:
    lines = [
        "| method | setting | recall@5 | recall@5 (ties) | accuracy | QPS (batch) "
        "| latency 1 query (ms) | build (s) | index (MB) | RSS growth at build (MB) "
        "| others' CPU: search / build |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.method} | {r.setting} | {r.recall:.4f} | {r.recall_dist:.4f} "
            f"| {r.accuracy:.4f} | {r.qps:,.0f} | {r.latency_ms:.2f} | {_opt(r.build_s, '.1f')} "
            f"| {_opt(r.index_mb, ',.1f')} | {_opt(r.rss_mb, ',.0f')} "
            f"| {_share(r.others)} / {_share(r.build_others)} |"
        )
    return lines


def load_table(loads: list[dict]) -> list[str]:
    lines = [
        "| index | state (MB) | build (s) | build again, n_jobs=2 (s) | build, n_jobs=1 (s) "
        "| load from state (s) | loaded = built answers | same bytes twice | same bytes "
        "n_jobs 1 vs 2 | others' CPU (most) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d in loads:
        lines.append(
            f"| {d['label']} | {d['state_mb']:,.1f} | {d['build_s']:.1f} | {d['rebuild_s']:.1f} "
            f"| {d['one_thread_s']:.1f} | {d['load_s']:.3f} | {d['loaded_same_answers']} "
            f"| {d['twice_equal']} | {d['threads_equal']} | {_share(d['others'])} |"
        )
    notes = [
        f"{d['label']}: recall@5 (default search setting) of build 1 / again / n_jobs=1: "
        + " / ".join(f"{r:.4f}" for r in d["recalls"])
        for d in loads
        if "recalls" in d
    ]
    return lines + ([""] if notes else []) + notes


def machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    import faiss

    versions = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("numpy", "faiss-cpu", "knnlab")
    )
    return (
        f"{os.cpu_count()} cores ({model}), faiss OpenMP threads {faiss.omp_get_max_threads()}, "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
        f"Python {platform.python_version()}, {versions}"
    )


# --- main ------------------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="scikit-learn digits, seconds")
    parser.add_argument("--train-rows", type=int, default=None, help="first N training rows")
    parser.add_argument("--queries", type=int, default=None, help="first N test rows")
    parser.add_argument(
        "--ivf-nlists",
        type=int,
        nargs="*",
        default=None,
        help="nlist values besides the default sqrt(n) (default: 1024; --quick: 100)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="batch runs (median)")
    parser.add_argument("--single", type=int, default=200, help="one-query calls (median)")
    parser.add_argument(
        "--max-others",
        type=float,
        default=0.10,
        help="measure again when other processes used more than this share of the CPU",
    )
    parser.add_argument(
        "--retries", type=int, default=None, help="at most this many times (default 3, --quick 0)"
    )
    parser.add_argument(
        "--wait-budget", type=float, default=300.0, help="seconds of waiting for quiet, in all"
    )
    parser.add_argument("--skip-load", action="store_true", help="no load/rebuild/determinism")
    parser.add_argument(
        "--out", type=Path, default=None, help=f"default {RESULTS.name}; --quick: print only"
    )
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else list(argv)
    if args.out is None and not args.quick:
        args.out = RESULTS
    if args.ivf_nlists is None:
        args.ivf_nlists = [100] if args.quick else [1024]
    return args


def run_exact(X_train, X_query, args):
    """((dist, ind, qps, latency ms), others' CPU share) of the exact search."""
    import faiss  # noqa: F401  (imported here, so no build below times the import)

    warm_up(2, X_train.shape[1])
    exact = search.build_index("brute", X_train, p=2.0)
    search_fn = lambda Q: exact.kneighbors(Q, K)  # noqa: E731
    return GUARD.run("exact", lambda: speed(search_fn, X_query, args.repeat, args.single))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    GUARD.max_others, GUARD.budget_s = args.max_others, args.wait_budget
    GUARD.retries = (0 if args.quick else 3) if args.retries is None else args.retries
    X_train, y_train, X_query, y_query, name = load_data(args.quick, args.train_rows, args.queries)
    started, cpu_before = time.time(), cpu_snapshot()
    (exact_dist, exact_ind, qps, latency), exact_others = run_exact(X_train, X_query, args)
    others = {"exact": others_share(cpu_before, time.time() - started)}
    truth = (exact_dist, exact_ind)
    rows = [
        Row("exact", "knnlab brute index (prepared once)", 1.0, 1.0,
            accuracy(exact_dist, exact_ind, y_train, y_query), qps, latency, None, 0.0, None,
            exact_others, None)
    ]  # fmt: skip
    print(f"exact: {qps:,.0f} q/s, {latency:.2f} ms", flush=True)
    data, checks = (X_query, y_train, y_query), {}
    plans = [("hnsw", {**HNSW_BUILD}, "ef_search", EF_SEARCH)]
    plans += [("ivf", {"nlist": n}, "nprobe", NPROBE) for n in (None, *args.ivf_nlists)]
    loads = []
    for algorithm, options, knob, values in plans:
        phase, cpu_phase = time.time(), cpu_snapshot()
        record = sweep(algorithm, X_train, options, knob, values, data, truth, args, rows, checks)
        if not args.skip_load:
            loads.append(load_vs_rebuild(record, X_train, X_query, exact_ind, 3))
            print(loads[-1], flush=True)
        others[f"{algorithm} {record['label']}"] = others_share(cpu_phase, time.time() - phase)
        del record
        gc.collect()

    estimator = estimator_check(X_train, y_train, X_query, checks)
    vector, loop = checks["recall_loop"]
    lines = [
        f"# command: python benchmarks/bench_ann.py {' '.join(args.argv)}".rstrip(),
        f"# date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, "
        f"took {time.time() - started:.0f} s; other processes used "
        f"{others_share(cpu_before, time.time() - started):.0%} of the machine's CPU "
        f"meanwhile; {GUARD.reruns} measurement(s) "
        f"disturbed by more than {GUARD.max_others:.0%} were run again ("
        + ", ".join(f"{name}: {_share(share)}" for name, share in others.items())
        + ")",
        f"# machine: {machine()}",
        f"# data: {name}; {len(X_train):,} x {X_train.shape[1]} train, {len(X_query):,} "
        f"queries, k = {K}, p = 2",
        f"# recall check: vectorized {vector:.6f}, Python set loop {loop:.6f}",
        estimator,
        "",
        *results_table(rows),
    ]
    if loads:
        lines += ["", *load_table(loads)]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
