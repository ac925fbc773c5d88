"""Dask scaling benchmark: 1 worker x 1 thread against 2 workers x 1 thread (local worker
processes), on the real Fashion-MNIST (Debian's dataset-fashion-mnist IDX files).

Run from the repository root with the project's environment (about 7 minutes on 2 cores)::

    python benchmarks/bench_dask.py                  # writes benchmarks/results_dask.txt
    python benchmarks/bench_dask.py --quick          # 12,000 training rows: a smoke test

What it measures, for each cluster (a fresh ``LocalCluster``, kernels loaded on every worker
before timing):

* **search**: the 60,000 training images against 10,000 test images, k = 10, p = 2 (and
  2,000 of them at p = 1) on the cluster (:func:`knnlab.distributed.sharded_kneighbors`),
  in both layouts (:func:`knnlab.distributed.plan_search`): *replicated* (the training set
  sent to every worker, the queries split) and *sharded* (the training set cut in one
  shard per worker), with the one the default plan picks marked; each checked
  bit-identical to the single-machine :func:`knnlab.kneighbors`;
* **grid**: the pipeline's tune on the default params (train split of 52,500 rows, 5 folds,
  p 1, 2, 3, k 2..18, both weightings: 15 (fold, p) tasks), with ``compute.scheduler`` set
  to the cluster; its ``cv_results.csv`` bytes checked identical across clusters;
* **overheads**: scatter (seconds and MB/s), task scheduling (a round of no-op tasks), the
  client's merge, and the tasks' compute time from Dask's task stream (busy seconds per
  worker), so wall = scatter + compute makespan + what is left (scheduling, transfers, idle).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from knnlab import distributed
from knnlab.neighbors import kneighbors, warm_up
from knnlab.pipeline.analysis import tuning
from knnlab.pipeline.data import datasets
from knnlab.pipeline.data.dataset import features_and_labels
from knnlab.pipeline.data.fashion_mnist import load_fashion_mnist
from knnlab.pipeline.io.params import ComputeParams, Params, SplitParams

RESULTS = Path(__file__).with_name("results_dask.txt")


def _noop(i: int) -> int:
    return i


def _load_kernels() -> None:
    for p in (1, 2, 3):
        warm_up(p, 784)


def start_cluster(n_workers: int):
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=n_workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    )
    client = Client(cluster, set_as_default=False)
    client.run(_load_kernels)
    return cluster, client


def busy_seconds(stream: list[dict]) -> dict[str, float]:
    """Compute seconds per worker from Dask's task stream."""
    busy: dict[str, float] = {}
    for task in stream:
        for part in task["startstops"]:
            if part["action"] == "compute":
                busy[task["worker"]] = busy.get(task["worker"], 0.0) + part["stop"] - part["start"]
    return busy


def scheduling_overhead(client, n_tasks: int = 200) -> tuple[float, float]:
    """(seconds of one no-op task's round trip, seconds per task in a batch of n_tasks)."""
    client.submit(_noop, -1, pure=False).result()
    start = time.perf_counter()
    client.submit(_noop, -2, pure=False).result()
    single = time.perf_counter() - start
    start = time.perf_counter()
    client.gather(client.map(_noop, range(n_tasks), pure=False))
    return single, (time.perf_counter() - start) / n_tasks


def bench_search(
    client, X_train, X_query, expected, p: float, repeat: int, n_shards: int | None
) -> dict:
    """The best of ``repeat`` searches on the cluster (by wall time), with its breakdown;
    n_shards : training shards (1: replicated)."""
    from distributed import get_task_stream

    best = None
    for _ in range(repeat):
        timings: dict[str, float] = {}
        with get_task_stream(client) as stream:
            start = time.perf_counter()
            found = distributed.sharded_kneighbors(
                client, X_train, X_query, 10, p=p, n_shards=n_shards, timings=timings
            )
            wall = time.perf_counter() - start
        identical = np.array_equal(found[0], expected[0]) and np.array_equal(found[1], expected[1])
        run = {"wall": wall, **timings, "busy": busy_seconds(stream.data), "identical": identical}
        if best is None or wall < best["wall"]:
            best = run
        assert identical, "the sharded search differs from one machine"
    return best


def default_layout(client, X_train, queries, p: float) -> str:
    """The layout :func:`knnlab.distributed.sharded_kneighbors` picks without n_shards."""
    plan = distributed.plan_for(client, X_train, len(queries), 10, p)
    return "replicated" if plan.replicated else "sharded"


def bench_grid(client, address: str, X, y) -> dict:
    from distributed import get_task_stream

    params = dataclasses.replace(Params(), compute=ComputeParams(scheduler=address))
    # What the grid's one scatter costs: X and y, narrowed, to every worker (no task).
    scatter: dict[str, float] = {}
    y_code = np.unique(y, return_inverse=True)[1]
    distributed.run_tasks(client, {"X": X, "y": y_code}, [], broadcast=("X", "y"), timings=scatter)
    with get_task_stream(client) as stream:
        start = time.perf_counter()
        result, summary = tuning.tune(params, X, y)
        wall = time.perf_counter() - start
    table = io.StringIO()
    tuning.score_table(result).to_csv(table, index=False, lineterminator="\n")
    busy = busy_seconds(stream.data)
    tasks = sorted(
        (
            sum(p["stop"] - p["start"] for p in t["startstops"] if p["action"] == "compute")
            for t in stream.data
        ),
        reverse=True,
    )
    return {
        "wall": wall,
        "busy": busy,
        "tasks": tasks,
        "table": table.getvalue(),
        "best": summary.best_params,
        "scatter": scatter,
        "sent_mb": (distributed.compact(X).nbytes + y_code.nbytes) / 2**20,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="12,000 training rows")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--skip-grid", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="searches: best of this many")
    args = parser.parse_args(argv)

    dataset = load_fashion_mnist()
    X_all, _ = features_and_labels(dataset.frame)  # 70,000 x 784
    n_train = 12_000 if args.quick else 60_000
    n_queries = 2_000 if args.quick else 10_000
    X_all = np.ascontiguousarray(X_all)
    X_train, X_query = X_all[:n_train], X_all[60_000 : 60_000 + n_queries]
    frame = dataset.frame.iloc[: 16_000 if args.quick else len(dataset.frame)]
    train_split, _ = datasets.stratified_split(frame, SplitParams())
    X_tune, y_tune = features_and_labels(train_split)

    lines = [
        f"# bench_dask.py{' --quick' if args.quick else ''}: "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
        f"Python {sys.version.split()[0]}",
        f"# search: {n_train:,} x 784 training rows, {n_queries:,} queries, k = 10, p = 2",
        f"# grid: the pipeline's tune (default params) on the {len(X_tune):,}-row train split",
        "",
    ]

    _load_kernels()
    queries_of = {2.0: X_query, 1.0: X_query[: n_queries // 5]}  # p = 1: no pre-filter
    # (p, layout): the training set replicated on every worker, or one shard per worker
    searches = [(p, layout) for p in queries_of for layout in ("replicated", "sharded")]
    expected = {}
    for p, queries in queries_of.items():
        best = math.inf
        for _ in range(args.repeat):
            start = time.perf_counter()
            expected[p] = kneighbors(X_train, queries, 10, p=p, n_jobs=1)
            best = min(best, time.perf_counter() - start)
        lines.append(
            f"single machine, in-process, 1 thread: search p = {p:g}, {len(queries):,} queries "
            f"{best:.2f} s (best of {args.repeat})"
        )

    results = {}
    for n_workers in (1, 2):
        cluster, client = start_cluster(n_workers)
        try:
            single, per_task = scheduling_overhead(client)
            search = {
                (p, layout): bench_search(
                    client,
                    X_train,
                    queries_of[p],
                    expected[p],
                    p,
                    args.repeat,
                    1 if layout == "replicated" else n_workers,
                )
                for p, layout in searches
            }
            defaults = {p: default_layout(client, X_train, q, p) for p, q in queries_of.items()}
            address = cluster.scheduler_address
            grid = None if args.skip_grid else bench_grid(client, address, X_tune, y_tune)
        finally:
            client.close()
            cluster.close()
        results[n_workers] = (search, grid)
        load = os.getloadavg()[1]  # the machine is shared: was anything else running?
        lines += [
            "",
            f"## {n_workers} worker(s) x 1 thread (load average over the last 5 min: {load:.2f})",
            f"scheduling: one no-op task round trip {single * 1e3:.1f} ms; "
            f"200 no-op tasks {per_task * 1e3:.2f} ms each",
        ]
        for p, layout in searches:
            run, queries = search[p, layout], queries_of[p]
            picked = defaults[p] == layout
            # what goes to every worker: the training set when replicated, else the queries
            copies = (n_workers, 1) if run["n_shards"] == 1 else (1, n_workers)
            megabytes = (X_train.nbytes * copies[0] + queries.nbytes * copies[1]) / 2**20
            sent = distributed.compact(X_train).nbytes * copies[0]
            sent += distributed.compact(queries).nbytes * copies[1]
            lines.append(
                f"search p = {p:g}, {layout}{' (the default plan)' if picked else ''} "
                f"({run['n_shards']} training shard(s) x "
                f"{run['n_query_blocks']} query block(s)), {len(queries):,} queries, best of "
                f"{args.repeat}: wall "
                f"{run['wall']:.2f} s = compact {run['compact']:.2f} s + scatter "
                f"{run['scatter']:.2f} s ({megabytes:,.0f} MB of float64 sent as "
                f"{sent / 2**20:,.0f} MB: {sent / 2**20 / run['scatter']:,.0f} MB/s) + tasks "
                f"{run['tasks']:.2f} s + merge {run['merge'] * 1e3:.0f} ms; compute per worker "
                + ", ".join(f"{b:.2f} s" for b in sorted(run["busy"].values()))
                + f"; identical to single machine: {run['identical']}"
            )
        if grid is not None:
            lines.append(
                f"grid: wall {grid['wall']:.1f} s; compute per worker "
                + ", ".join(f"{b:.1f} s" for b in sorted(grid["busy"].values()))
                + "; tasks (s, longest first) "
                + " ".join(f"{t:.1f}" for t in grid["tasks"])
                + f"; best {grid['best']}"
            )
            lines.append(
                f"grid overheads: compact {grid['scatter']['compact']:.2f} s, scatter of X and y "
                f"to every worker {grid['scatter']['scatter']:.2f} s ({grid['sent_mb']:,.0f} MB "
                "each)"
            )
    (s1, g1), (s2, g2) = results[1], results[2]
    lines += ["", "## speed-up, 2 workers against 1"]
    for key in searches:
        lines.append(
            f"search p = {key[0]:g}, {key[1]}: {s1[key]['wall'] / s2[key]['wall']:.2f}x (wall); "
            f"compute makespan "
            f"{max(s1[key]['busy'].values()) / max(s2[key]['busy'].values()):.2f}x"
        )
    if g1 is not None:
        lines.append(
            f"grid: {g1['wall'] / g2['wall']:.2f}x (wall); compute makespan "
            f"{max(g1['busy'].values()) / max(g2['busy'].values()):.2f}x; cv_results.csv "
            f"identical: {g1['table'] == g2['table']}; best params identical: "
            f"{g1['best'] == g2['best']}"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
