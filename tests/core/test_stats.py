"""knnlab.stats against slow, obviously-correct references (Python loops over rows and
pairs, exact fractions), against scipy where it has the same statistic, and by simulation
for the intervals' coverage."""

from __future__ import annotations

import decimal
import math
import warnings
from fractions import Fraction
from statistics import NormalDist

import numpy as np
import pytest
from scipy import stats as scipy_stats
from sklearn import metrics as sk_metrics
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from knnlab import stats
from knnlab.estimators import KNNClassifier

# ---------------------------------------------------------------- slow references


def loop_scores(y_true, y_pred, proba, classes, weights) -> dict[str, float]:
    """Every headline metric with row i counted weights[i] times, by loops over rows and
    (positive, negative) pairs: the definitions, written out."""
    rows = [i for i in range(len(y_true)) for _ in range(int(weights[i]))]
    labels = sorted(set(y_true[rows].tolist()) | set(y_pred[rows].tolist()))
    total = len(rows)
    correct = sum(1 for i in rows if y_true[i] == y_pred[i])
    precision, recall, f1, support = [], [], [], []
    for label in labels:
        tp = sum(1 for i in rows if y_true[i] == label and y_pred[i] == label)
        predicted = sum(1 for i in rows if y_pred[i] == label)
        actual = sum(1 for i in rows if y_true[i] == label)
        precision.append(tp / predicted if predicted else math.nan)
        recall.append(tp / actual if actual else math.nan)
        f1.append(2 * tp / (actual + predicted) if actual + predicted else math.nan)
        support.append(actual)

    def mean(values, w=None):
        pairs = [(v, 1 if w is None else wi) for v, wi in zip(values, w or values, strict=True)]
        pairs = [(v, wi) for v, wi in pairs if not math.isnan(v)]
        if not pairs:
            return math.nan
        if sum(wi for _, wi in pairs) == 0:
            return sum(v for v, _ in pairs) / len(pairs)
        return sum(v * wi for v, wi in pairs) / sum(wi for _, wi in pairs)

    columns = [1] if len(classes) == 2 else range(len(classes))
    aucs = []
    for column in columns:
        positive = [i for i in rows if y_true[i] == classes[column]]
        negative = [i for i in rows if y_true[i] != classes[column]]
        if not positive or not negative:
            aucs.append(math.nan)
            continue
        wins = 0.0
        for i in positive:
            for j in negative:
                s, t = proba[i, column], proba[j, column]
                wins += 1.0 if s > t else 0.5 if s == t else 0.0
        aucs.append(wins / (len(positive) * len(negative)))
    return {
        "accuracy": correct / total,
        "precision_macro": mean(precision),
        "recall_macro": mean(recall),
        "f1_macro": mean(f1),
        "f1_weighted": mean(f1, support),
        "roc_auc_ovr": mean(aucs),
    }


def mcnemar_by_fractions(b: int, c: int) -> float:
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(Fraction(math.comb(n, i), 2**n) for i in range(min(b, c) + 1))
    return float(min(Fraction(1), 2 * tail))


def _small_problem(seed: int, n_classes: int = 3, n: int = 36):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n // n_classes)
    # Scores on a coarse grid so ties are common; predictions sometimes wrong.
    proba = rng.integers(0, 4, size=(y.size, n_classes)).astype(float) + 0.5
    proba[np.arange(y.size), y] += rng.integers(0, 3, size=y.size)
    proba /= proba.sum(axis=1, keepdims=True)
    y_pred = np.argmax(proba, axis=1)
    return y, y_pred, proba, np.arange(n_classes)


# ---------------------------------------------------------------- the resampling plan


def test_every_resample_keeps_each_class_count_and_sums_to_n():
    y = np.array([3, 3, 3, 7, 7, 1, 1, 1, 1, 1, 9])
    weights = np.concatenate(list(stats.Bootstrap(y, 600, seed=5).weights()))
    assert weights.shape == (600, y.size)
    assert (weights == np.round(weights)).all() and (weights >= 0).all()
    for label in np.unique(y):
        np.testing.assert_array_equal(weights[:, y == label].sum(axis=1), (y == label).sum())
    # A class of one row is drawn exactly once in every resample.
    np.testing.assert_array_equal(weights[:, y == 9], 1)
    # Rows are drawn unevenly: a bootstrap, not the identity.
    assert weights[:, y == 1].std() > 0.5


def test_the_plan_is_fixed_by_its_seed():
    y = np.arange(90) % 3
    first = np.concatenate(list(stats.Bootstrap(y, 300, seed=1).weights()))
    again = np.concatenate(list(stats.Bootstrap(y, 300, seed=1).weights()))
    other = np.concatenate(list(stats.Bootstrap(y, 300, seed=2).weights()))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    # More resamples extend the plan; the first block is the same draw.
    longer = next(stats.Bootstrap(y, 900, seed=1).weights())
    np.testing.assert_array_equal(longer, first[: stats.BLOCK])


@pytest.mark.parametrize("bad", [{"n_resamples": 0}, {"y": np.array([])}])
def test_a_bad_plan_is_refused(bad):
    args = {"y": np.array([0, 1]), "n_resamples": 10, "seed": 0, **bad}
    with pytest.raises(ValueError, match=r"n_resamples|non-empty"):
        stats.Bootstrap(**args)


# ---------------------------------------------------------------- the resampled scores


@pytest.mark.parametrize("n_classes", [2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_resampled_scores_match_the_loop_reference(n_classes, seed):
    y, y_pred, proba, classes = _small_problem(seed, n_classes, n=10 * n_classes)
    plan = stats.Bootstrap(y, 12, seed=seed)
    found = stats.bootstrap_distribution(plan, {"m": (y_pred, proba, classes)})["m"]
    weights = np.concatenate(list(plan.weights()))
    for b, w in enumerate(weights):
        expected = loop_scores(y, y_pred, proba, classes, w)
        for metric, value in expected.items():
            assert found[metric].values[b] == pytest.approx(value, rel=1e-12, nan_ok=True), (
                metric,
                b,
            )


def test_a_class_never_predicted_leaves_precision_out_as_the_metrics_do():
    # A constant predictor: precision is 0/0 for every class but one.
    y = np.repeat([0, 1, 2], 8)
    y_pred = np.zeros_like(y)
    proba = np.tile([1.0, 0.0, 0.0], (y.size, 1))
    plan = stats.Bootstrap(y, 5, seed=0)
    found = stats.bootstrap_distribution(plan, {"m": (y_pred, proba, np.arange(3))})["m"]
    for b, w in enumerate(np.concatenate(list(plan.weights()))):
        expected = loop_scores(y, y_pred, proba, np.arange(3), w)
        for metric, value in expected.items():
            assert found[metric].values[b] == pytest.approx(value, rel=1e-12), metric


def test_resampled_scores_match_scikit_learn_on_the_rows_drawn():
    """On real digits: each resample scored as a weighted statistic equals scikit-learn
    scoring the rows the resample drew (copied out)."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=42
    )
    model = KNNClassifier(n_neighbors=5).fit(X_train, y_train)
    proba = model.predict_proba(X_test)
    y_pred = model.classes_[np.argmax(proba, axis=1)]
    plan = stats.Bootstrap(y_test, 20, seed=3)
    found = stats.bootstrap_distribution(plan, {"m": (y_pred, proba, model.classes_)})["m"]
    for b, w in enumerate(np.concatenate(list(plan.weights()))):
        rows = np.repeat(np.arange(y_test.size), w.astype(int))
        t, p, s = y_test[rows], y_pred[rows], proba[rows]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            precision, recall, f1, _ = sk_metrics.precision_recall_fscore_support(
                t, p, average="macro", zero_division=np.nan
            )
        assert found["accuracy"].values[b] == pytest.approx(
            sk_metrics.accuracy_score(t, p), rel=1e-12
        )
        assert found["precision_macro"].values[b] == pytest.approx(precision, rel=1e-12)
        assert found["recall_macro"].values[b] == pytest.approx(recall, rel=1e-12)
        assert found["f1_macro"].values[b] == pytest.approx(f1, rel=1e-12)
        assert found["f1_weighted"].values[b] == pytest.approx(
            sk_metrics.f1_score(t, p, average="weighted"), rel=1e-12
        )
        assert found["roc_auc_ovr"].values[b] == pytest.approx(
            sk_metrics.roc_auc_score(t, s, multi_class="ovr", labels=model.classes_), rel=1e-12
        )


def test_unit_weights_give_the_point_scores():
    from knnlab.metrics import classification_scores

    y, y_pred, proba, classes = _small_problem(4, 4, n=40)
    scores = stats._Scores(y, y_pred, proba, classes).all_scores(np.ones((1, y.size)))
    for metric, value in classification_scores(y, y_pred, proba, classes).items():
        assert scores[metric][0] == pytest.approx(value, rel=1e-13), metric


# ---------------------------------------------------------------- closed-form statistics


@pytest.mark.parametrize(("k", "n"), [(0, 1), (1, 1), (0, 30), (443, 450), (7, 450), (225, 450)])
def test_wilson_interval_matches_scipy(k, n):
    low, high = stats.wilson_interval(k, n, 0.95)
    ci = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert low == pytest.approx(ci.low, abs=1e-12)
    assert high == pytest.approx(ci.high, abs=1e-12)


@pytest.mark.parametrize("bad", [(5, 0), (-1, 10), (11, 10)])
def test_wilson_interval_refuses_impossible_counts(bad):
    with pytest.raises(ValueError, match=r"n >= 1|successes"):
        stats.wilson_interval(*bad)


@pytest.mark.parametrize(
    ("b", "c"), [(0, 0), (1, 1), (0, 1), (1, 0), (3, 9), (9, 3), (12, 12), (0, 25), (40, 61)]
)
def test_mcnemar_matches_exact_fractions_and_scipy(b, c):
    p = stats.mcnemar_exact(b, c)
    assert p == mcnemar_by_fractions(b, c)
    if b + c:
        assert p == pytest.approx(scipy_stats.binomtest(b, b + c).pvalue, rel=1e-12)


def test_mcnemar_handles_thousands_of_discordant_rows():
    # 2**n overflows a float for n > 1023; the p-value must still come out right.
    p = stats.mcnemar_exact(2400, 2600)
    assert p == pytest.approx(scipy_stats.binomtest(2400, 5000).pvalue, rel=1e-9)
    assert 0.0 < p < 0.01


def wilson_by_decimals(k: int, n: int, confidence: float) -> tuple[float, float]:
    """Wilson's bounds as the roots of (k/n - pi)^2 = z^2 pi (1 - pi) / n, in 50 digits."""
    with decimal.localcontext() as context:
        context.prec = 50
        z = decimal.Decimal(NormalDist().inv_cdf(0.5 + confidence / 2.0))
        k_, n_ = decimal.Decimal(k), decimal.Decimal(n)
        root = z * (z * z + 4 * k_ * (n_ - k_) / n_).sqrt()
        low = (2 * k_ + z * z - root) / (2 * (n_ + z * z))
        high = (2 * k_ + z * z + root) / (2 * (n_ + z * z))
        return max(0.0, float(low)), min(1.0, float(high))


WILSON_GRID = [
    (k, n, confidence)
    for confidence in (0.8, 0.9, 0.95, 0.99)
    for n in (1, 2, 3, 10, 30, 450, 1797, 70_000, 10**6)
    for k in sorted({0, 1, 2, n // 3, n // 2, n - 2, n - 1, n} & set(range(n + 1)))
]


def test_wilson_interval_matches_the_exact_roots_and_scipy_on_a_grid():
    # scipy's binomtest gives the same interval within about 1e-14 but not bit for bit
    # (about two inputs in three differ in the last bits), so knnlab keeps its own closed
    # form: a swap would change committed reports. Near 0 (k = 0) only an absolute bound
    # makes sense.
    for k, n, confidence in WILSON_GRID:
        low, high = stats.wilson_interval(k, n, confidence)
        reference = wilson_by_decimals(k, n, confidence)
        ci = scipy_stats.binomtest(k, n).proportion_ci(confidence, method="wilson")
        for found, expected, by_scipy in zip(
            (low, high), reference, (ci.low, ci.high), strict=True
        ):
            assert found == pytest.approx(expected, rel=1e-12, abs=1e-15), (k, n, confidence)
            assert found == pytest.approx(by_scipy, rel=1e-12, abs=1e-15), (k, n, confidence)


MCNEMAR_GRID = [(b, c) for b in (0, 1, 2, 5, 17, 60) for c in (0, 1, 3, 8, 17, 61, 250)] + [
    (400, 520),
    (0, 1000),
]


def test_mcnemar_is_the_correctly_rounded_binomial_tail_on_a_grid():
    # scipy's two-sided binomtest agrees to 1e-12 but is not correctly rounded (four inputs
    # in five differ in the last bits), so knnlab keeps its exact integer sum.
    for b, c in MCNEMAR_GRID:
        p = stats.mcnemar_exact(b, c)
        assert p == mcnemar_by_fractions(b, c), (b, c)
        if b + c:
            by_scipy = scipy_stats.binomtest(b, b + c, 0.5).pvalue
            assert p == pytest.approx(by_scipy, rel=1e-12, abs=1e-300), (b, c)


def test_the_committed_digits_report_values_come_out_bit_for_bit():
    # reports/uncertainty.json of the repository's digits run: 450 test rows, 46 and 443
    # right, 397 rows only the kNN models get right.
    assert stats.wilson_interval(46, 450, 0.95) == (0.07751547434220601, 0.13366280599766844)
    assert stats.wilson_interval(443, 450, 0.95) == (0.9682429992233327, 0.9924449051672114)
    assert stats.mcnemar_exact(0, 397) == 6.196147063758909e-120
    assert stats.mcnemar_exact(1, 1) == 1.0


def test_percentile_interval_leaves_out_undefined_resamples():
    values = np.r_[np.arange(100.0), np.nan]
    expected = np.quantile(np.arange(100.0), [0.025, 0.975])
    np.testing.assert_allclose(stats.percentile_interval(values, 0.95), expected, rtol=1e-12)
    assert all(math.isnan(v) for v in stats.percentile_interval(np.array([np.nan]), 0.95))


def test_paired_accuracy_counts_the_discordant_rows():
    first = np.array([1, 1, 1, 0, 0, 1, 1, 0], bool)
    second = np.array([1, 0, 1, 1, 1, 1, 1, 0], bool)
    nothing = stats.Resampled(0.0, np.zeros(10), np.zeros(8))
    comparison = stats.paired_accuracy("a", "b", first, second, nothing, 0.95)
    assert (comparison.only_first_right, comparison.only_second_right) == (1, 2)
    assert comparison.difference == pytest.approx(1 / 8)
    assert comparison.p_value == mcnemar_by_fractions(1, 2) == 1.0
    assert not comparison.significant(0.05)


def test_the_same_predictions_differ_by_exactly_nothing():
    y, y_pred, proba, classes = _small_problem(2)
    plan = stats.Bootstrap(y, 300, seed=0)
    found = stats.bootstrap_distribution(
        plan, {"a": (y_pred, proba, classes), "b": (y_pred.copy(), proba.copy(), classes)}
    )
    for metric in stats.METRICS:
        difference = found["b"][metric] - found["a"][metric]
        assert difference.point == 0 and not difference.values.any()
        assert difference.interval(0.95) == (0.0, 0.0)


# ---------------------------------------------------------------- coverage, by simulation


def _simulated_test_split(rng, per_class_accuracy, per_class: int):
    """A classifier known to be right on class c with probability per_class_accuracy[c],
    on a stratified test split of per_class rows per class (as `split` draws them)."""
    n_classes = len(per_class_accuracy)
    y = np.repeat(np.arange(n_classes), per_class)
    right = rng.random(y.size) < np.repeat(per_class_accuracy, per_class)
    wrong = (y + rng.integers(1, n_classes, y.size)) % n_classes
    return y, np.where(right, y, wrong)


@pytest.mark.slow
@pytest.mark.parametrize(
    "per_class_accuracy",
    [np.full(10, 0.984), np.linspace(0.75, 0.99, 10)],
    ids=["digits-like 0.984", "uneven classes 0.87"],
)
def test_bootstrap_intervals_cover_the_true_accuracy(per_class_accuracy):
    """500 test splits of 450 rows: the 95 % BCa interval (1000 resamples each) covers the
    classifier's true accuracy on at least 93 % of them, and so does Wilson's. (Plain
    percentiles do not: 92 % at 0.984, measured over 2000 splits.)"""
    rng = np.random.default_rng(20261203)
    truth = per_class_accuracy.mean()
    covered_bootstrap = covered_wilson = 0
    for trial in range(500):
        y, y_pred = _simulated_test_split(rng, per_class_accuracy, 45)
        plan = stats.Bootstrap(y, 1000, seed=trial)
        resampled = stats.bootstrap_distribution(plan, {"m": (y_pred, None, np.arange(10))})
        low, high = resampled["m"]["accuracy"].interval(0.95)
        covered_bootstrap += low <= truth <= high
        low, high = stats.wilson_interval(int((y == y_pred).sum()), y.size, 0.95)
        covered_wilson += low <= truth <= high
    assert covered_bootstrap / 500 >= 0.93, covered_bootstrap
    assert covered_wilson / 500 >= 0.93, covered_wilson


def test_wilson_keeps_its_coverage_with_two_errors_in_450_rows():
    """With about two errors in 450 rows, Wilson's interval still covers the true accuracy
    on >= 93 % of 500 simulated splits."""
    rng = np.random.default_rng(7)
    per_class_accuracy = np.full(10, 0.995)
    covered = 0
    for _ in range(500):
        y, y_pred = _simulated_test_split(rng, per_class_accuracy, 45)
        low, high = stats.wilson_interval(int((y == y_pred).sum()), y.size, 0.95)
        covered += low <= per_class_accuracy.mean() <= high
    assert covered / 500 >= 0.93, covered


# ---------------------------------------------------------------- BCa


def bca_by_the_book(values, point, jackknife, confidence):
    """Efron & Tibshirani (1993), eq. 14.14-14.15, written out with loops."""
    normal = NormalDist()
    b = len(values)
    below = 0.0
    for v in values:
        below += 1.0 if v < point else 0.5 if v == point else 0.0
    share = min(max(below / b, 0.5 / b), 1 - 0.5 / b)
    z0 = normal.inv_cdf(share)
    mean = sum(jackknife) / len(jackknife)
    num = sum((mean - j) ** 3 for j in jackknife)
    den = 6 * sum((mean - j) ** 2 for j in jackknife) ** 1.5
    a = num / den if den else 0.0
    bounds = []
    for alpha in ((1 - confidence) / 2, (1 + confidence) / 2):
        z = z0 + normal.inv_cdf(alpha)
        level = normal.cdf(z0 + z / (1 - a * z))
        # numpy's default quantile: linear between order statistics at level * (b - 1).
        ordered = sorted(values)
        h = level * (b - 1)
        lo = math.floor(h)
        hi = min(lo + 1, b - 1)
        bounds.append(ordered[lo] + (h - lo) * (ordered[hi] - ordered[lo]))
    return tuple(bounds)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bca_matches_the_book(seed):
    rng = np.random.default_rng(seed)
    values = np.round(rng.gamma(2.0, size=400), 2)  # skewed, with ties
    jackknife = rng.gamma(3.0, size=60)
    point = float(np.median(values)) + 0.05
    found = stats.bca_interval(values, point, jackknife, 0.95)
    expected = bca_by_the_book(values.tolist(), point, jackknife.tolist(), 0.95)
    np.testing.assert_allclose(found, expected, rtol=1e-12)


def test_bca_agrees_with_scipy_on_a_skewed_mean():
    """One class, so the plan is the ordinary bootstrap: the BCa interval of an accuracy
    (a mean of 0/1) agrees with scipy.stats.bootstrap's BCa to Monte Carlo error."""
    rng = np.random.default_rng(11)
    right = rng.random(300) < 0.97  # skewed: few errors
    y = np.zeros(right.size, dtype=int)
    y_pred = np.where(right, 0, 1)
    plan = stats.Bootstrap(y, 20000, seed=0)
    ours = stats.bootstrap_distribution(plan, {"m": (y_pred, None, np.array([0, 1]))})
    low, high = ours["m"]["accuracy"].interval(0.95)
    theirs = scipy_stats.bootstrap(
        (right.astype(float),), np.mean, n_resamples=20000, method="BCa", random_state=0
    ).confidence_interval
    assert low == pytest.approx(theirs.low, abs=0.004)
    assert high == pytest.approx(theirs.high, abs=0.004)
    # Skewed: BCa reaches further down than up from the point, unlike a symmetric interval.
    assert right.mean() - low > high - right.mean()


def test_jackknife_leaves_out_every_row_once_then_groups():
    small = np.concatenate(list(stats.Bootstrap(np.arange(30) % 3, 10, 0).jackknife_weights()))
    np.testing.assert_array_equal(small, 1 - np.eye(30))
    y = np.arange(2500) % 5
    groups = np.concatenate(list(stats.Bootstrap(y, 10, 0).jackknife_weights()))
    assert groups.shape == (stats.JACKKNIFE_GROUPS, y.size)
    np.testing.assert_array_equal((groups == 0).sum(axis=0), 1)  # each row left out once
    assert set(np.unique((groups == 0).sum(axis=1))) <= {2, 3}  # 2500 rows in 1000 groups


def test_a_paired_difference_takes_percentiles_and_a_score_takes_bca():
    y, y_pred, proba, classes = _small_problem(5, 4, n=80)
    other = np.where(np.arange(y.size) % 7 == 0, y, y_pred)  # a few rows fixed
    plan = stats.Bootstrap(y, 400, seed=2)
    found = stats.bootstrap_distribution(
        plan, {"a": (y_pred, proba, classes), "b": (other, proba, classes)}
    )
    score = found["a"]["accuracy"]
    assert score.interval(0.9) == stats.bca_interval(
        score.values, score.point, score.jackknife, 0.9
    )
    difference = found["b"]["accuracy"] - found["a"]["accuracy"]
    assert difference.interval(0.9) == stats.percentile_interval(difference.values, 0.9)
    assert difference.point == pytest.approx(np.mean(other == y) - np.mean(y_pred == y))
