"""Is a difference real? Intervals and paired tests for scores on one test split.

Every interval comes from one resampling plan (:class:`Bootstrap`): stratified, seeded
bootstrap resamples of the test rows, held as multiplicities ``W`` (n_resamples, n_rows)
(how often each row is drawn). Stratified, because the split is: each resample keeps every
class's count, as every test split drawn by ``split`` does. A statistic of a resample is then
a weighted statistic of the original rows, so every metric of every resample is computed at
once from integer counts (a matrix product, or sums over score order), never by copying rows.

Counts are integers held in float64: sums of integers below 2**53 are exact in any order, so
the results do not depend on the BLAS or the thread count, and reruns are byte-identical.

Intervals are bias-corrected and accelerated (BCa, Efron 1987): the percentiles of the
resampled values, shifted by how far the point estimate sits from their median (bias) and
by how the statistic's spread changes with its value (acceleration, from a jackknife). Plain
percentiles are too narrow where the statistic is skewed, which is where kNN usually is: an
accuracy of 0.984 on 450 rows covered its true value on 91.6 % of 2000 simulated test splits
with percentiles, 95.2 % with BCa (benchmarks/results_coverage.txt, docs/statistics.md).
With fewer than about 5 errors no bootstrap interval is wide enough (88 %); Wilson's is.

Paired comparisons of two models on the same rows use the same resamples for both (the
paired bootstrap: the variation common to both models cancels; its interval is the plain
percentiles, see :meth:`Resampled.interval`) and, for accuracy, the exact McNemar test on
the rows where exactly one model is right.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from knnlab.metrics import HEADLINE_METRICS
from knnlab.progress import Progress

# The headline metrics (knnlab.metrics.classification_scores), in report order.
METRICS = HEADLINE_METRICS
# Resamples per block: bounds memory at BLOCK x n_rows multiplicities. Fixed, so the draws
# (taken block by block) do not depend on the data's size.
BLOCK = 250
# The jackknife behind BCa's acceleration leaves out one row at a time up to this many rows,
# then consecutive groups of rows (the grouped jackknife): its cost stays below half of
# 2000 resamples however large the test split, and the acceleration is a smooth statistic
# that a thousand groups estimate closely.
JACKKNIFE_GROUPS = 1000


def normal_quantile(confidence: float) -> float:
    """z such that a standard normal lies in [-z, z] with probability ``confidence``.

    Parameters
    ----------
    confidence : float
        In (0, 1), e.g. 0.95.

    Returns
    -------
    float
    """
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


# scipy.stats.binomtest gives Wilson's interval and McNemar's p-value too, within about
# 1e-14 of these but not bit for bit (its p-value is not correctly rounded): these closed
# forms keep reports/uncertainty.json byte-identical whatever scipy is installed.
def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson's score interval for a binomial proportion (``successes`` of ``n``): unlike
    the normal approximation it stays inside [0, 1] and keeps its coverage near 0 and 1.

    Parameters
    ----------
    successes : int
        Successes, in ``0 .. n``.
    n : int
        Trials, at least 1.
    confidence : float, default 0.95
        Coverage of the interval, in (0, 1).

    Returns
    -------
    low : float
    high : float

    Raises
    ------
    ValueError
        If ``n < 1`` or ``successes`` is outside ``0 .. n``.
    """
    if n <= 0:
        raise ValueError(f"a proportion needs n >= 1 trials, got n={n}")
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be in [0, {n}], got {successes}")
    z = normal_quantile(confidence)
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar_exact(only_first_right: int, only_second_right: int) -> float:
    """Two-sided exact McNemar p-value: under "the two models are equally accurate" each of
    the b + c discordant rows is equally likely to favour either, so min(b, c) is
    Binomial(b + c, 1/2); p = 2 P(X <= min(b, c)), at most 1. Exact integer arithmetic.

    Parameters
    ----------
    only_first_right : int
        b, the rows only the first model gets right.
    only_second_right : int
        c, the rows only the second model gets right.

    Returns
    -------
    float
        The p-value, correctly rounded; 1 when there is no discordant row.

    Raises
    ------
    ValueError
        If either count is negative.
    """
    b, c = int(only_first_right), int(only_second_right)
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got {b} and {c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1))
    return min(1.0, (2 * tail) / (2**n))  # int / int: correctly rounded, however large


@dataclass(frozen=True)
class Bootstrap:
    """A stratified bootstrap plan over rows labelled ``y``: ``n_resamples`` resamples,
    each drawing, within every class, as many rows as the class has, with replacement.

    Parameters
    ----------
    y : ndarray of shape (n,)
        The rows' class labels.
    n_resamples : int
        Resamples, at least 1.
    seed : int
        Seeds the draws: same seed and labels, same resamples.

    Raises
    ------
    ValueError
        If ``n_resamples < 1`` or ``y`` is not a non-empty 1-D array.
    """

    y: np.ndarray
    n_resamples: int
    seed: int

    def __post_init__(self) -> None:
        if self.n_resamples < 1:
            raise ValueError(f"n_resamples must be >= 1, got {self.n_resamples}")
        if np.asarray(self.y).ndim != 1 or len(self.y) == 0:
            raise ValueError(f"y must be a non-empty 1-D array, got shape {np.shape(self.y)}")

    def weights(self) -> Iterator[np.ndarray]:
        """Multiplicities block by block.

        Yields
        ------
        ndarray of shape (m, n)
            float64 integer counts, ``m <=`` :data:`BLOCK`; each row sums to n and, over
            every class's rows, to its count.
        """
        y = np.asarray(self.y)
        _, codes = np.unique(y, return_inverse=True)
        members = [np.flatnonzero(codes == c) for c in range(codes.max() + 1)]
        rng = np.random.default_rng(self.seed)
        n = y.shape[0]
        for start in range(0, self.n_resamples, BLOCK):
            m = min(BLOCK, self.n_resamples - start)
            flat = np.empty((m, n), dtype=np.int64)
            filled = 0
            for rows in members:
                drawn = rng.integers(0, rows.size, size=(m, rows.size))
                flat[:, filled : filled + rows.size] = rows[drawn]
                filled += rows.size
            # Row r of the block drew rows flat[r]; count them: offset each resample's
            # draws by r * n so one bincount counts every resample.
            offsets = (np.arange(m, dtype=np.int64) * n)[:, None]
            counts = np.bincount((flat + offsets).ravel(), minlength=m * n)
            yield counts.reshape(m, n).astype(np.float64)

    def jackknife_weights(self) -> Iterator[np.ndarray]:
        """Leave-one-group-out weights, block by block: every row its own group up to
        :data:`JACKKNIFE_GROUPS` rows, consecutive groups of rows beyond.

        Yields
        ------
        ndarray of shape (m, n)
            float64 ones with one group of rows set to 0 per row of the array,
            ``m <=`` :data:`BLOCK`.
        """
        n = len(self.y)
        groups = min(n, JACKKNIFE_GROUPS)
        group_of_row = np.repeat(
            np.arange(groups), np.diff(np.linspace(0, n, groups + 1).astype(int))
        )
        for start in range(0, groups, BLOCK):
            left_out = np.arange(start, min(groups, start + BLOCK))
            yield (group_of_row[None, :] != left_out[:, None]).astype(np.float64)


class _Scores:
    """One model's predictions, prepared so any weighting of the rows scores fast.

    y_true, y_pred : (n,); proba : (n, n_classes) in ``classes`` order, or None (no
    ROC-AUC).
    """

    def __init__(self, y_true, y_pred, proba, classes):
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
        classes = np.asarray(classes)
        self.labels = np.union1d(y_true, y_pred)  # knnlab.metrics' default labels
        n_labels = self.labels.size
        true_code = np.searchsorted(self.labels, y_true)
        pred_code = np.searchsorted(self.labels, y_pred)
        self.correct = (true_code == pred_code).astype(np.float64)  # (n,)
        # Only the (true, predicted) pairs that occur: a one-hot (n, n_pairs) whose product
        # with the multiplicities gives every resample's confusion counts.
        pairs, pair_of_row = np.unique(true_code * n_labels + pred_code, return_inverse=True)
        self.pair_onehot = np.zeros((y_true.size, pairs.size))
        self.pair_onehot[np.arange(y_true.size), pair_of_row] = 1.0
        self.pair_true, self.pair_pred = pairs // n_labels, pairs % n_labels
        self.n_labels = n_labels
        self.auc_columns = self._auc_columns(y_true, proba, classes)

    @staticmethod
    def _auc_columns(y_true, proba, classes):
        """Per one-vs-rest column: (row order by score, positive mask in that order, start of
        each run of tied scores). Two classes: column 1 only, as roc_auc_score scores it."""
        if proba is None:
            return None
        proba = np.asarray(proba, dtype=np.float64)
        columns = [1] if classes.size == 2 else range(classes.size)
        prepared = []
        for column in columns:
            scores = proba[:, column]
            order = np.argsort(scores, kind="stable")
            ordered = scores[order]
            starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
            prepared.append((order, y_true[order] == classes[column], starts))
        return prepared

    def accuracy(self, W: np.ndarray) -> np.ndarray:
        return (W @ self.correct) / W.sum(axis=1)

    def confusion_scores(self, W: np.ndarray) -> dict[str, np.ndarray]:
        """Precision, recall, F1 (macro) and F1 (weighted) of each resample, (m,) each;
        a class is left out of an average where its metric is 0/0, as in knnlab.metrics."""
        counts = W @ self.pair_onehot  # (m, n_pairs)
        m, n_labels = W.shape[0], self.n_labels
        confusion = np.zeros((m, n_labels, n_labels))
        confusion[:, self.pair_true, self.pair_pred] = counts  # pairs are distinct
        tp = np.diagonal(confusion, axis1=1, axis2=2)  # (m, n_labels)
        predicted, support = confusion.sum(axis=1), confusion.sum(axis=2)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(predicted > 0, tp / predicted, np.nan)
            recall = np.where(support > 0, tp / support, np.nan)
            f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), np.nan)
        return {
            "precision_macro": _nan_mean(precision),
            "recall_macro": _nan_mean(recall),
            "f1_macro": _nan_mean(f1),
            "f1_weighted": _nan_mean(f1, support),
        }

    def roc_auc(self, W: np.ndarray) -> np.ndarray:
        """Macro one-vs-rest ROC-AUC of each resample (m,): the Mann-Whitney statistic with
        every row counted as often as it was drawn, ties counting one half."""
        per_column = []
        for order, positive, starts in self.auc_columns:
            ordered = W[:, order]  # (m, n) in score order
            pos = np.add.reduceat(np.where(positive, ordered, 0.0), starts, axis=1)
            neg = np.add.reduceat(np.where(positive, 0.0, ordered), starts, axis=1)
            below = np.cumsum(neg, axis=1) - neg  # negatives scored strictly lower
            twice_wins = (pos * (2 * below + neg)).sum(axis=1)  # integers: exact
            n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                per_column.append(
                    np.where(n_pos * n_neg > 0, twice_wins / (2 * n_pos * n_neg), np.nan)
                )
        return _nan_mean(np.stack(per_column, axis=1))

    def all_scores(self, W: np.ndarray) -> dict[str, np.ndarray]:
        """Every headline metric of each resample of the block W (m, n): {metric: (m,)}."""
        scores = {"accuracy": self.accuracy(W), **self.confusion_scores(W)}
        if self.auc_columns is not None:
            scores["roc_auc_ovr"] = self.roc_auc(W)
        return scores


def _nan_mean(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Mean over axis 1 of the defined (non-NaN) entries, optionally weighted; NaN where
    none is defined. values, weights: (m, c) -> (m,)."""
    defined = ~np.isnan(values)
    w = defined.astype(np.float64) if weights is None else np.where(defined, weights, 0.0)
    total = w.sum(axis=1)
    # No weight on any defined class: their plain mean, as knnlab.metrics falls back to.
    fallback = total == 0
    w = np.where(fallback[:, None], defined, w)
    total = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (np.where(defined, values, 0.0) * w).sum(axis=1) / total, np.nan)


@dataclass(frozen=True)
class Resampled:
    """One statistic on the full rows, on every bootstrap resample and with each jackknife
    group left out: all an interval needs. Subtracting two taken on the same plan pairs
    them (resample by resample).

    Parameters
    ----------
    point : float
        The statistic on the full rows.
    values : ndarray of shape (n_resamples,)
        The statistic on each bootstrap resample.
    jackknife : ndarray of shape (n_groups,)
        The statistic with each jackknife group left out.
    difference : bool, default False
        True for a paired difference (what subtraction makes).
    """

    point: float
    values: np.ndarray
    jackknife: np.ndarray
    difference: bool = False

    def __sub__(self, other: Resampled) -> Resampled:
        return Resampled(
            self.point - other.point,
            self.values - other.values,
            self.jackknife - other.jackknife,
            difference=True,
        )

    def interval(self, confidence: float) -> tuple[float, float]:
        """BCa for a score; plain percentiles for a paired difference.

        Only the few rows where the two differ move a difference's jackknife, which makes
        BCa's acceleration erratic: simulated 95 % intervals of an accuracy difference
        covered the truth on 89-92 % of splits with BCa and 92-95 % with percentiles
        (benchmarks/results_coverage.txt).

        Parameters
        ----------
        confidence : float
            Coverage of the interval, in (0, 1).

        Returns
        -------
        low : float
        high : float
            NaN both when no resampled value is defined (for BCa, also when ``point`` is).
        """
        if self.difference:
            return percentile_interval(self.values, confidence)
        return bca_interval(self.values, self.point, self.jackknife, confidence)

    def standard_error(self) -> float:
        """The bootstrap standard error of the statistic (:func:`standard_error`).

        Returns
        -------
        float
        """
        return standard_error(self.values)


def bootstrap_distribution(plan: Bootstrap, models: dict[str, tuple]) -> dict[str, dict]:
    """Every headline metric of every model, resampled by the plan.

    Parameters
    ----------
    plan : Bootstrap
        The resampling plan; ``plan.y`` (n,) holds the rows' true labels.
    models : dict of str to tuple
        {name: (y_pred, proba, classes)}, all predicting the rows ``plan.y`` labels:
        y_pred of shape (n,); proba of shape (n, n_classes), columns in ``classes`` order,
        or None (no ROC-AUC); classes of shape (n_classes,).

    Returns
    -------
    dict of str to dict of str to Resampled
        {name: {metric: Resampled}}, the same resamples for every model (so differences
        between models are paired).
    """
    prepared = {
        name: _Scores(plan.y, y_pred, proba, np.asarray(classes))
        for name, (y_pred, proba, classes) in models.items()
    }
    n = len(plan.y)

    def collect(blocks: Iterator[np.ndarray], progress) -> dict[str, dict[str, np.ndarray]]:
        parts: dict[str, dict[str, list]] = {name: {} for name in prepared}
        for W in blocks:
            for name, scores in prepared.items():
                for metric, values in scores.all_scores(W).items():
                    parts[name].setdefault(metric, []).append(values)
            progress.update(len(W))
        return {
            name: {metric: np.concatenate(v) for metric, v in by_metric.items()}
            for name, by_metric in parts.items()
        }

    # Minutes on 10,000 test rows: said as it goes (a line at least every 10 s in a log).
    groups = min(n, JACKKNIFE_GROUPS)
    total = plan.n_resamples + groups
    with Progress(total, f"bootstrap of {len(prepared)} models on {n:,} rows", "resample") as bar:
        resampled = collect(plan.weights(), bar)
        jackknife = collect(plan.jackknife_weights(), bar)
    points = {name: scores.all_scores(np.ones((1, n))) for name, scores in prepared.items()}
    return {
        name: {
            metric: Resampled(float(points[name][metric][0]), values, jackknife[name][metric])
            for metric, values in by_metric.items()
        }
        for name, by_metric in resampled.items()
    }


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` interval of a bootstrap distribution (its percentiles),
    NaN resamples left out.

    Parameters
    ----------
    values : ndarray of shape (n_resamples,)
        The resampled statistic.
    confidence : float
        Coverage of the interval, in (0, 1).

    Returns
    -------
    low : float
    high : float
        NaN both if every value is NaN.
    """
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def bca_interval(
    values: np.ndarray, point: float, jackknife: np.ndarray, confidence: float
) -> tuple[float, float]:
    """The bias-corrected and accelerated bootstrap interval (Efron 1987; Efron &
    Tibshirani 1993, ch. 14).

    Bias: z0 = Phi^-1 of the share of resamples below the point, ties counted half (the
    statistics here are discrete: a resample often equals the point exactly). Acceleration:
    the jackknife's skewness, a = sum(d^3) / (6 sum(d^2)^1.5), d = mean - jackknife. With
    z0 = a = 0 this is the percentile interval.

    Parameters
    ----------
    values : ndarray of shape (B,)
        The resampled statistic; NaN entries left out.
    point : float
        The statistic on the full sample.
    jackknife : ndarray of shape (G,)
        Leave-out estimates; NaN entries left out.
    confidence : float
        Coverage of the interval, in (0, 1).

    Returns
    -------
    low : float
    high : float
        NaN both if no value is left or ``point`` is NaN.
    """
    values = values[~np.isnan(values)]
    jackknife = jackknife[~np.isnan(jackknife)]
    if values.size == 0 or math.isnan(point):
        return float("nan"), float("nan")
    below = np.count_nonzero(values < point) + 0.5 * np.count_nonzero(values == point)
    # Kept inside (0, 1): every resample on one side would make z0 infinite.
    share = min(max(below / values.size, 0.5 / values.size), 1.0 - 0.5 / values.size)
    normal = NormalDist()
    z0 = normal.inv_cdf(share)
    d = jackknife.mean() - jackknife if jackknife.size else np.zeros(1)
    spread = float((d * d).sum())
    a = float((d**3).sum()) / (6.0 * spread**1.5) if spread > 0 else 0.0
    levels = []
    for tail in ((1.0 - confidence) / 2.0, (1.0 + confidence) / 2.0):
        z = z0 + normal.inv_cdf(tail)
        levels.append(normal.cdf(z0 + z / (1.0 - a * z)))
    low, high = np.quantile(values, levels)
    return float(low), float(high)


def standard_error(values: np.ndarray) -> float:
    """The bootstrap standard error: the spread (ddof=1) of the resampled values.

    Parameters
    ----------
    values : ndarray of shape (n_resamples,)
        The resampled statistic; NaN entries left out.

    Returns
    -------
    float
        NaN with fewer than two values left.
    """
    values = values[~np.isnan(values)]
    return float(values.std(ddof=1)) if values.size > 1 else float("nan")


@dataclass(frozen=True)
class PairedComparison:
    """Model ``second`` against ``first`` on the same rows: accuracy difference (second
    minus first), its paired-bootstrap interval, the discordant rows and McNemar's p.

    Parameters
    ----------
    first : str
        The first model's name.
    second : str
        The second model's name.
    difference : float
        Accuracy of ``second`` minus accuracy of ``first``.
    low : float
        Lower end of the difference's paired-bootstrap interval.
    high : float
        Upper end of that interval.
    only_first_right : int
        Rows only the first model gets right.
    only_second_right : int
        Rows only the second model gets right.
    p_value : float
        The exact McNemar p-value (:func:`mcnemar_exact`).
    """

    first: str
    second: str
    difference: float
    low: float
    high: float
    only_first_right: int
    only_second_right: int
    p_value: float

    def significant(self, alpha: float) -> bool:
        """Whether McNemar's test rejects "equally accurate" at level ``alpha``.

        Parameters
        ----------
        alpha : float
            The significance level, e.g. 0.05.

        Returns
        -------
        bool
            ``p_value < alpha``.
        """
        return self.p_value < alpha


def paired_accuracy(
    first: str,
    second: str,
    correct_first: np.ndarray,
    correct_second: np.ndarray,
    difference: Resampled,
    confidence: float,
) -> PairedComparison:
    """Compare two models right/wrong on the same rows, given their paired resampled
    accuracy difference.

    Parameters
    ----------
    first : str
        The first model's name.
    second : str
        The second model's name.
    correct_first : ndarray of shape (n,)
        Booleans: the first model is right on the row.
    correct_second : ndarray of shape (n,)
        Booleans: the second model is right on the row.
    difference : Resampled
        The paired resampled accuracy difference, second minus first.
    confidence : float
        Coverage of the interval, in (0, 1).

    Returns
    -------
    PairedComparison
    """
    correct_first = np.asarray(correct_first, bool)
    correct_second = np.asarray(correct_second, bool)
    b = int(np.count_nonzero(correct_first & ~correct_second))
    c = int(np.count_nonzero(~correct_first & correct_second))
    low, high = difference.interval(confidence)
    return PairedComparison(
        first=first,
        second=second,
        difference=(c - b) / correct_first.size,
        low=low,
        high=high,
        only_first_right=b,
        only_second_right=c,
        p_value=mcnemar_exact(b, c),
    )
