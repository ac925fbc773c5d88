"""How often do knnlab's 95 % intervals cover the truth? Coverage by simulation.

A classifier known to be right on each class with a given probability is scored on many
simulated stratified test splits (as ``split`` draws them); for each split the percentile
bootstrap, the BCa bootstrap (what knnlab reports) and Wilson's interval of the accuracy are
computed, and the share of splits whose interval holds the true accuracy is counted. Also
the paired test's false-alarm rate: two models equally accurate, right and wrong on
independent rows, compared by McNemar's exact test at 5 %.

Usage, from the repository root with the project's environment::

    python benchmarks/interval_coverage.py            # 2000 splits per row (about 2 minutes)
    python benchmarks/interval_coverage.py --splits 300

Results: benchmarks/results_coverage.txt; docs/statistics.md quotes them.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from knnlab import stats

CASES = (
    ("digits-like, 10 classes x 45 rows, accuracy 0.984", np.full(10, 0.984), 45),
    ("few errors, 10 x 45, accuracy 0.99 (about 4.5 errors)", np.full(10, 0.99), 45),
    ("near-perfect, 10 x 45, accuracy 0.995 (about 2 errors)", np.full(10, 0.995), 45),
    ("uneven classes, 10 x 45, accuracy 0.87", np.linspace(0.75, 0.99, 10), 45),
    ("moderate, 10 x 45, accuracy 0.85", np.full(10, 0.85), 45),
    ("small split, 3 x 10, accuracy 0.93 (iris-like)", np.full(3, 0.93), 10),
    ("Fashion-like, 10 x 1000, accuracy 0.855", np.full(10, 0.855), 1000),
)


def simulated_split(rng, per_class_accuracy, per_class):
    n_classes = len(per_class_accuracy)
    y = np.repeat(np.arange(n_classes), per_class)
    right = rng.random(y.size) < np.repeat(per_class_accuracy, per_class)
    wrong = (y + rng.integers(1, n_classes, y.size)) % n_classes
    return y, np.where(right, y, wrong)


def coverage(per_class_accuracy, per_class, splits, resamples, seed):
    rng = np.random.default_rng(seed)
    truth = float(np.mean(per_class_accuracy))
    hits = {"percentile": 0, "BCa": 0, "Wilson": 0}
    for trial in range(splits):
        y, y_pred = simulated_split(rng, per_class_accuracy, per_class)
        plan = stats.Bootstrap(y, resamples, seed=trial)
        classes = np.arange(len(per_class_accuracy))
        accuracy = stats.bootstrap_distribution(plan, {"m": (y_pred, None, classes)})["m"][
            "accuracy"
        ]
        low, high = stats.percentile_interval(accuracy.values, 0.95)
        hits["percentile"] += low <= truth <= high
        low, high = accuracy.interval(0.95)
        hits["BCa"] += low <= truth <= high
        low, high = stats.wilson_interval(int((y == y_pred).sum()), y.size, 0.95)
        hits["Wilson"] += low <= truth <= high
    return {name: count / splits for name, count in hits.items()}


DIFFERENCE_CASES = (
    # (rows right only by the first model, only by the second): shares of the 450 rows
    ("equal models, about 4.5 discordant rows", 0.005, 0.005),
    ("second better by 0.008, about 4.5 discordant", 0.002, 0.008),
    ("second better by 0.01, about 13.5 discordant", 0.01, 0.02),
    ("second better by 0.02, about 27 discordant", 0.02, 0.04),
)


def difference_coverage(only_first, only_second, splits, resamples, seed, per_class=45):
    """Coverage of the paired accuracy difference's 95 % interval: two models right on the
    same rows except a share only_first (only_second) of rows only the first (second) gets
    right, and 2 % both get wrong."""
    rng = np.random.default_rng(seed)
    truth = only_second - only_first
    hits = {"percentile (reported)": 0, "BCa": 0}
    for trial in range(splits):
        y = np.repeat(np.arange(10), per_class)
        u = rng.random(y.size)
        first_only = u < only_first
        second_only = (u >= only_first) & (u < only_first + only_second)
        both_wrong = (u >= only_first + only_second) & (u < only_first + only_second + 0.02)
        wrong = (y + 1) % 10
        first = np.where(second_only | both_wrong, wrong, y)
        second = np.where(first_only | both_wrong, wrong, y)
        plan = stats.Bootstrap(y, resamples, seed=trial)
        found = stats.bootstrap_distribution(
            plan, {"a": (first, None, np.arange(10)), "b": (second, None, np.arange(10))}
        )
        difference = found["b"]["accuracy"] - found["a"]["accuracy"]
        low, high = difference.interval(0.95)
        hits["percentile (reported)"] += low <= truth <= high
        low, high = stats.bca_interval(
            difference.values, difference.point, difference.jackknife, 0.95
        )
        hits["BCa"] += low <= truth <= high
    return {name: count / splits for name, count in hits.items()}


def mcnemar_false_alarms(splits, seed, accuracy=0.95, n=450):
    rng = np.random.default_rng(seed)
    alarms = 0
    for _ in range(splits):
        first, second = rng.random(n) < accuracy, rng.random(n) < accuracy
        b = int(np.count_nonzero(first & ~second))
        c = int(np.count_nonzero(~first & second))
        alarms += stats.mcnemar_exact(b, c) < 0.05
    return alarms / splits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splits", type=int, default=2000, help="simulated test splits per row")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples each")
    parser.add_argument("--seed", type=int, default=20261203)
    args = parser.parse_args()
    print(
        f"95 % interval coverage of the true accuracy, {args.splits} simulated stratified test "
        f"splits per row, {args.resamples} bootstrap resamples each (seed {args.seed})\n"
    )
    print("| case | percentile | BCa (reported) | Wilson |")
    print("|---|---|---|---|")
    for name, per_class_accuracy, per_class in CASES:
        start = time.perf_counter()
        # Large splits cost 20x more per split: a quarter as many (coverage to +/- 1 %).
        splits = args.splits if per_class < 500 else max(args.splits // 4, 50)
        found = coverage(per_class_accuracy, per_class, splits, args.resamples, args.seed)
        seconds = time.perf_counter() - start
        print(
            f"| {name} ({splits} splits, {seconds:.0f} s) | {found['percentile']:.3f} | "
            f"{found['BCa']:.3f} | {found['Wilson']:.3f} |"
        )
    splits = max(args.splits // 2, 50)
    print(
        f"\n95 % interval coverage of a paired accuracy difference, {splits} simulated splits "
        "of 10 x 45 rows per row\n"
    )
    print("| case | percentile (reported) | BCa |")
    print("|---|---|---|")
    for name, only_first, only_second in DIFFERENCE_CASES:
        found = difference_coverage(only_first, only_second, splits, args.resamples, args.seed)
        print(f"| {name} | {found['percentile (reported)']:.3f} | {found['BCa']:.3f} |")
    rate = mcnemar_false_alarms(args.splits * 5, args.seed)
    print(
        f"\nMcNemar exact test at 5 %, two equally accurate models (0.95, independent errors, "
        f"450 rows), {args.splits * 5} trials: significant in {rate:.3%} (at most 5 % expected; "
        "exact tests are conservative)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
