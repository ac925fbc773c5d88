"""Tuning benchmark: knnlab's search-once grid search against scikit-learn's GridSearchCV.

Run from the repository root with the project's environment::

    python benchmarks/bench_tune.py              # both grids below
    python benchmarks/bench_tune.py --quick      # smaller data, a smoke test

Grids (5-fold ``StratifiedKFold`` without shuffling, as ``GridSearchCV(cv=5)`` builds them,
scored by accuracy, single process: scikit-learn with ``n_jobs=1``, knnlab with its default
threads):

* digits tutorial: ``n_neighbors`` 2, 4, ..., 18 x ``p`` 1, 2, 3 x ``weights`` uniform,
  distance on scikit-learn's digits (1797 x 64);
* Hands-On-ML MNIST: ``n_neighbors`` 3..6 x ``weights`` uniform, distance at p = 2 on a
  10,000 x 784 MNIST-shaped set (``synthetic.make_mnist_like``, no network).

knnlab's kernels are compiled (or loaded from numba's cache) before timing. Scores are
compared candidate by candidate; on integer-valued data equal distances are common, and
scikit-learn breaks such ties in no documented order, so a few candidates may differ there.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from synthetic import make_mnist_like

from knnlab.model_selection import grid_search_cv
from knnlab.neighbors import warm_up


def compare(name: str, X: np.ndarray, y: np.ndarray, grid: dict, cv: int = 5) -> dict:
    """Time both searches on the same folds; return the figures for one table row."""
    for p in grid["p"]:
        warm_up(p, X.shape[1])
    start = time.perf_counter()
    ours = grid_search_cv(
        X, y, {**grid, "algorithm": ["brute"]}, cv=cv, scoring=("accuracy",), refit=True
    )  # GridSearchCV refits too
    knnlab_seconds = time.perf_counter() - start
    start = time.perf_counter()
    theirs = GridSearchCV(
        KNeighborsClassifier(algorithm="brute"),
        grid,
        cv=StratifiedKFold(cv),
        scoring="accuracy",
        n_jobs=1,
    ).fit(X, y)
    sklearn_seconds = time.perf_counter() - start
    sk = pd.DataFrame(theirs.cv_results_)
    diff = np.abs(
        sk["mean_test_score"].to_numpy() - ours.cv_results["mean_test_accuracy"].to_numpy()
    )
    return {
        "grid": name,
        "data": f"{X.shape[0]}x{X.shape[1]}",
        "candidates": len(sk),
        "sklearn_s": sklearn_seconds,
        "knnlab_s": knnlab_seconds,
        "speedup": sklearn_seconds / knnlab_seconds,
        "max_score_diff": float(diff.max()),
        "same_best": {k: ours.best_params[k] for k in grid} == theirs.best_params_,
        "best": {k: ours.best_params[k] for k in grid},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000-row MNIST-shaped set")
    args = parser.parse_args(argv)
    X_digits, y_digits = load_digits(return_X_y=True)
    n_mnist = 2000 if args.quick else 10000
    X_mnist, y_mnist, _, _ = make_mnist_like(n_train=n_mnist, n_test=1, seed=0)
    rows = [
        compare(
            "digits tutorial",
            X_digits,
            y_digits,
            {
                "n_neighbors": list(range(2, 19, 2)),
                "p": [1, 2, 3],
                "weights": ["uniform", "distance"],
            },
        ),
        compare(
            "Hands-On-ML MNIST",
            X_mnist.astype(np.float64),
            y_mnist,
            {"n_neighbors": [3, 4, 5, 6], "p": [2], "weights": ["uniform", "distance"]},
        ),
    ]
    header = f"{'grid':20s} {'data':>9s} {'cands':>5s} {'sklearn s':>9s} {'knnlab s':>8s} "
    header += f"{'speed-up':>8s} {'max|Δscore|':>11s} same best"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['grid']:20s} {r['data']:>9s} {r['candidates']:5d} {r['sklearn_s']:9.2f} "
            f"{r['knnlab_s']:8.3f} {r['speedup']:7.1f}x {r['max_score_diff']:11.2e} "
            f"{r['same_best']} {r['best']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
