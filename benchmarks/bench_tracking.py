"""Tracking benchmark: how long a tune stage takes to log its nested runs, and how long it
holds the SQLite store's lock at a time (what another process waiting to log must wait).

Run from the repository root with the project's environment::

    python benchmarks/bench_tracking.py                 # 200 and 1,000 candidates
    python benchmarks/bench_tracking.py --children 54   # the default digits grid

Each size logs into a new SQLite store in a temporary folder, through the same
``runs.stage_run`` and ``StageRun.log_children`` the tune stage uses (the store is created
and migrated first, outside the timing). Meanwhile a second process takes and lets go of the
store lock in a loop: its longest wait is how long the logging kept other writers out.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time

from knnlab.pipeline.io.params import MlflowParams
from knnlab.tracking import runs, store


def children(n: int) -> list[dict]:
    """``n`` nested runs shaped like the tune stage's: 4 params, 9 metrics each."""
    return [
        {
            "name": f"k={i} p=2 uniform brute",
            "params": {"n_neighbors": i, "p": 2, "weights": "uniform", "algorithm": "brute"},
            "metrics": {
                f"{stat}_test_{scorer}": 0.5
                for stat in ("mean", "std", "rank")
                for scorer in ("accuracy", "f1_macro", "roc_auc_ovr")
            },
        }
        for i in range(n)
    ]


def _wait_for_lock(uri: str, stop, longest) -> None:
    """Another writer: takes and lets go of the store lock in a loop, recording its longest
    wait (seconds), which is how long the logging stage kept everyone else out."""
    lock = store.StoreLock(uri, "bench-waiter", 600)
    while not stop.is_set():
        start = time.perf_counter()
        with lock.held():
            pass
        longest.value = max(longest.value, time.perf_counter() - start)
        time.sleep(0.05)


def measure(n: int) -> tuple[float, float]:
    """(seconds to log n nested runs, longest wait of another writer in seconds)."""
    with tempfile.TemporaryDirectory() as folder:
        uri = f"sqlite:///{folder}/mlflow.db"
        os.environ["MLFLOW_TRACKING_URI"] = uri
        config = MlflowParams(experiment="bench")
        with runs.stage_run(config, "bench", "warm-up"):
            pass  # creates the tables, outside the timing
        stop = multiprocessing.Event()
        longest = multiprocessing.Value("d", 0.0)
        watcher = multiprocessing.Process(target=_wait_for_lock, args=(uri, stop, longest))
        watcher.start()
        start = time.perf_counter()
        with runs.stage_run(config, "tune", f"tune {n} candidates") as run:
            run.log_children(children(n))
        seconds = time.perf_counter() - start
        stop.set()
        watcher.join()
        return seconds, longest.value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, nargs="+", default=[200, 1000])
    args = parser.parse_args(argv)
    print(f"{'nested runs':>11} {'seconds':>8} {'per run':>8} {'longest wait, other writer':>27}")
    for n in args.children:
        seconds, longest = measure(n)
        print(f"{n:>11} {seconds:>8.1f} {seconds / n * 1000:>6.0f}ms {longest:>25.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
