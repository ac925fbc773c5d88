"""knnlab.conformal against obviously-correct references (a sorted list and loops over rows
and classes), by simulation for the coverage it promises, and against MAPIE's split
conformal classifier (LAC) where MAPIE is installed."""

from __future__ import annotations

import json
import math
from decimal import ROUND_CEILING, Decimal

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from knnlab import conformal
from knnlab.estimators import KNNClassifier
from knnlab.out_of_fold import out_of_fold
from knnlab.stats import wilson_interval

# ---------------------------------------------------------------- slow references


def reference_rank(n: int, coverage: float) -> int:
    """⌈(n + 1) · coverage⌉ in decimal arithmetic, with coverage as it is written."""
    product = Decimal(n + 1) * Decimal(repr(coverage))
    return int(product.to_integral_value(rounding=ROUND_CEILING))


def reference_threshold(proba, y_code, coverage: float) -> float:
    """The ⌈(n + 1)(1 - α)⌉-th smallest score from a sorted Python list; 1.0 past the end."""
    scores = sorted(1.0 - float(proba[i][y_code[i]]) for i in range(len(y_code)))
    rank = reference_rank(len(scores), coverage)
    return 1.0 if rank > len(scores) else scores[rank - 1]


def reference_sets(proba, threshold: float) -> list[list[bool]]:
    """Class c is in row i's set iff its score 1 - proba[i][c] is at most the threshold."""
    return [[1.0 - float(p) <= threshold for p in row] for row in proba]


def random_votes(rng, n: int, n_classes: int) -> np.ndarray:
    """(n, n_classes) probabilities with no ties: Dirichlet rows."""
    return rng.dirichlet(np.ones(n_classes), size=n)


def tied_votes(rng, n: int, n_classes: int, k: int) -> np.ndarray:
    """(n, n_classes) uniform kNN votes: counts of k neighbours over k, as KNNClassifier
    computes them (a sum of ones divided by k), so scores tie as they do in practice."""
    counts = rng.multinomial(k, rng.dirichlet(np.ones(n_classes), size=n))
    return counts / counts.sum(axis=1, keepdims=True)


VOTES = {
    "random": lambda rng, n, c: random_votes(rng, n, c),
    "tied k=5": lambda rng, n, c: tied_votes(rng, n, c, 5),
    "tied k=12": lambda rng, n, c: tied_votes(rng, n, c, 12),
}
LEVELS = (0.5, 0.8, 0.9, 0.95, 0.99)


# ---------------------------------------------------------------- against the references


@pytest.mark.parametrize("kind", VOTES)
def test_scores_are_one_minus_the_true_class_vote(rng, kind):
    proba = VOTES[kind](rng, 300, 4)
    y_code = rng.integers(0, 4, 300)
    expected = [1.0 - float(proba[i][y_code[i]]) for i in range(300)]
    assert conformal.conformity_scores(proba, y_code).tolist() == expected


@pytest.mark.parametrize("kind", VOTES)
@pytest.mark.parametrize("coverage", LEVELS)
def test_threshold_is_the_conformal_order_statistic(rng, kind, coverage):
    for n in [*range(1, 31), 57, 100, 499, 1000]:
        proba = VOTES[kind](rng, n, 3)
        y_code = rng.integers(0, 3, n)
        found = conformal.calibrate(proba, y_code, coverage)
        assert found == reference_threshold(proba, y_code, coverage), n
        assert conformal.quantile_rank(n, coverage) == reference_rank(n, coverage)


@pytest.mark.parametrize(
    ("n", "coverage", "rank"),
    [
        (9, 0.9, 9),  # the binary value of 0.9 is above 9/10: exactly, ⌈10 · it⌉ = 10
        (19, 0.8, 16),  # likewise 0.8: ⌈20 · it⌉ = 17
        (1499, 0.67, 1005),  # float: 1500 * 0.67 = 1005.0000000000001, whose ceiling is 1006
        (99, 0.33, 33),
        (0, 0.5, 1),
        (1, 0.5, 1),
        (1, 0.51, 2),
    ],
)
def test_the_rank_is_exact_for_the_level_as_written(n, coverage, rank):
    assert conformal.quantile_rank(n, coverage) == rank == reference_rank(n, coverage)


@pytest.mark.parametrize("kind", VOTES)
@pytest.mark.parametrize("coverage", LEVELS)
def test_sets_match_the_loop(rng, kind, coverage):
    calibration = VOTES[kind](rng, 200, 4)
    threshold = conformal.calibrate(calibration, rng.integers(0, 4, 200), coverage)
    # New rows, and the calibration rows themselves: votes equal to the calibration votes
    # must score exactly as they did there.
    proba = np.vstack([VOTES[kind](rng, 300, 4), calibration])
    found = conformal.prediction_sets(proba, threshold)
    assert found.dtype == np.bool_ and found.shape == proba.shape
    assert found.tolist() == reference_sets(proba, threshold)


@pytest.mark.parametrize("k", [3, 5, 7, 10, 12, 15, 18])
def test_a_vote_equal_to_the_threshold_row_is_in_the_set(k):
    """No float tolerance is needed: with kNN votes j / k, the class of a new row whose vote
    equals the calibration row that set q̂ is in its set, for every j."""
    for j in range(k + 1):
        calibration = np.array([[j / k, (k - j) / k]])
        threshold = conformal.calibrate(calibration, np.array([0]), 0.5)  # rank 1 of 1
        assert threshold == 1.0 - j / k
        new_row = np.array([[j, k - j]], dtype=np.float64)
        new_row /= new_row.sum(axis=1, keepdims=True)  # as KNNClassifier computes it
        assert conformal.prediction_sets(new_row, threshold)[0, 0]


def test_too_few_rows_for_the_coverage_put_every_class_in_every_set(rng):
    """⌈(n + 1) · 0.9⌉ > n below 9 rows: the threshold is 1.0, every set is full, even for
    classes with no vote."""
    for n in range(1, 9):
        proba = tied_votes(rng, n, 3, 5)
        assert conformal.quantile_rank(n, 0.9) > n
        assert conformal.calibrate(proba, rng.integers(0, 3, n), 0.9) == 1.0
        new = np.array([[1.0, 0.0, 0.0], [0.2, 0.8, 0.0]])
        assert conformal.prediction_sets(new, 1.0).all()
    proba = tied_votes(rng, 9, 3, 5)
    y_code = rng.integers(0, 3, 9)
    assert conformal.calibrate(proba, y_code, 0.9) == max(
        conformal.conformity_scores(proba, y_code)
    )


def test_one_calibration_row():
    proba, y_code = np.array([[0.25, 0.75]]), np.array([1])
    assert conformal.calibrate(proba, y_code, 0.5) == 0.25  # ⌈2 · 0.5⌉ = 1: its own score
    assert conformal.calibrate(proba, y_code, 0.3) == 0.25
    assert conformal.calibrate(proba, y_code, 0.6) == 1.0  # ⌈1.2⌉ = 2 > 1


def test_sets_may_be_empty():
    """LAC's known behaviour: where no class gets a vote of at least 1 - q̂."""
    calibration = np.array([[1.0, 0.0, 0.0]] * 9 + [[0.8, 0.2, 0.0]])
    threshold = conformal.calibrate(calibration, np.zeros(10, dtype=np.int64), 0.9)
    assert threshold == pytest.approx(0.2)  # the 10th smallest of ten: 1 - 0.8
    sets = conformal.prediction_sets(np.array([[0.4, 0.4, 0.2], [0.8, 0.2, 0.0]]), threshold)
    assert sets.tolist() == [[False, False, False], [True, False, False]]
    assert conformal.set_text(np.array([3, 5, 8])[sets[0]]) == "{}"


def test_set_text():
    classes = np.array([1, 4, 7, 9])
    assert conformal.set_text(classes[np.array([False, True, False, True])]) == "{4, 9}"
    assert conformal.set_text(classes[np.zeros(4, dtype=bool)]) == "{}"
    assert conformal.set_text(np.array(["cat", "dog"])) == "{cat, dog}"
    assert conformal.set_text([7]) == "{7}"


def test_coverage_summary_matches_the_loop(rng):
    classes = np.array([3, 5, 8, 9])
    proba = tied_votes(rng, 400, 4, 7)
    y_code = rng.choice([0, 1, 3], size=400)  # class 8 has no row
    sets = conformal.prediction_sets(proba, 0.6)
    found = conformal.coverage_summary(sets, y_code, classes, 0.9)
    assert json.loads(json.dumps(found)) == found  # plain Python types

    covered = [bool(sets[i][y_code[i]]) for i in range(400)]
    sizes = [int(sum(sets[i])) for i in range(400)]
    low, high = wilson_interval(sum(covered), 400, 0.9)
    assert found["coverage"] == sum(covered) / 400
    assert (found["coverage_low"], found["coverage_high"]) == (low, high)
    assert found["mean_set_size"] == sum(sizes) / 400
    assert found["empty_share"] == sizes.count(0) / 400
    assert found["singleton_share"] == sizes.count(1) / 400
    assert found["n"] == 400 and type(found["n"]) is int
    per_class = []
    for code, label in enumerate(classes):
        rows = [i for i in range(400) if y_code[i] == code]
        per_class.append(
            {
                "class": str(label),
                "n": len(rows),
                "coverage": sum(covered[i] for i in rows) / len(rows) if rows else None,
                "mean_set_size": sum(sizes[i] for i in rows) / len(rows) if rows else None,
            }
        )
    assert found["per_class"] == per_class
    assert found["per_class"][2] == {"class": "8", "n": 0, "coverage": None, "mean_set_size": None}
    assert conformal.coverage_summary(sets, y_code, classes)["coverage_low"] < low  # 0.95


# ---------------------------------------------------------------- bad inputs


GOOD_PROBA = np.array([[0.2, 0.8], [0.5, 0.5], [1.0, 0.0]])
GOOD_CODES = np.array([1, 0, 0])


@pytest.mark.parametrize(
    "coverage", [0, 0.0, 1, 1.0, -0.1, 1.5, float("nan"), float("inf"), True, "0.9", None]
)
def test_calibrate_rejects_a_coverage_outside_0_1(coverage):
    with pytest.raises(ValueError, match=r"coverage must be a number strictly between 0 and 1"):
        conformal.calibrate(GOOD_PROBA, GOOD_CODES, coverage)
    with pytest.raises(ValueError, match=r"coverage"):
        conformal.quantile_rank(10, coverage)


def test_calibrate_accepts_numpy_levels():
    assert conformal.calibrate(GOOD_PROBA, GOOD_CODES, np.float64(0.5)) == 1.0 - 0.8
    assert conformal.quantile_rank(np.int64(9), np.float64(0.9)) == 9


@pytest.mark.parametrize(
    ("proba", "message"),
    [
        (np.array([0.2, 0.8, 0.5]), r"proba must be a 2-D array \(n, n_classes\)"),
        (np.zeros((3, 2, 1)), r"proba must be a 2-D array"),
        (np.zeros((3, 0)), r"proba must be a 2-D array .* at least one class"),
        (np.zeros((0, 2)), r"proba must have at least 1 row"),
        (np.array([[0.2, 0.8], [np.nan, np.nan], [1.0, 0.0]]), r"proba .* row 1 .*NaN"),
        (np.array([[0.2, 0.8], [0.5, 0.5], [1.5, -0.5]]), r"proba must hold .* \[0, 1\]; row 2"),
    ],
)
def test_calibrate_rejects_bad_proba(proba, message):
    with pytest.raises(ValueError, match=message):
        conformal.calibrate(proba, GOOD_CODES[: len(proba)], 0.9)


@pytest.mark.parametrize(
    ("y_code", "message"),
    [
        (np.array([1, 0]), r"y_code must have shape \(3,\)"),
        (np.array([[1, 0, 0]]), r"y_code must have shape \(3,\)"),
        (np.array([1.0, 0.0, 0.0]), r"y_code must hold integer class codes .* float64"),
        (np.array([1, 0, 2]), r"y_code must lie in 0\.\.1"),
        (np.array([1, -1, 0]), r"y_code must lie in 0\.\.1"),
    ],
)
def test_bad_codes(y_code, message):
    with pytest.raises(ValueError, match=message):
        conformal.calibrate(GOOD_PROBA, y_code, 0.9)
    with pytest.raises(ValueError, match=message):
        conformal.conformity_scores(GOOD_PROBA, y_code)
    with pytest.raises(ValueError, match=message):
        conformal.coverage_summary(GOOD_PROBA > 0.4, y_code, np.array([0, 1]))


@pytest.mark.parametrize("threshold", [-0.1, 1.5, float("nan"), None, "0.3", True])
def test_prediction_sets_rejects_a_threshold_outside_0_1(threshold):
    with pytest.raises(ValueError, match=r"threshold must be a number in \[0, 1\]"):
        conformal.prediction_sets(GOOD_PROBA, threshold)


def test_prediction_sets_rejects_bad_proba_and_takes_no_rows():
    with pytest.raises(ValueError, match=r"proba must hold class votes in \[0, 1\]"):
        conformal.prediction_sets(np.array([[0.5, np.nan]]), 0.5)
    with pytest.raises(ValueError, match=r"proba must be a 2-D array"):
        conformal.prediction_sets(np.array([0.5, 0.5]), 0.5)
    assert conformal.prediction_sets(np.zeros((0, 3)), 0.5).shape == (0, 3)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (np.ones((3, 2)), r"sets must be a boolean array .* float64"),
        (np.ones((3, 3), dtype=bool), r"sets must be a boolean array \(n, n_classes=2\)"),
        (np.ones(3, dtype=bool), r"sets must be a boolean array"),
        (np.ones((0, 2), dtype=bool), r"sets must have at least one row"),
    ],
)
def test_coverage_summary_rejects_bad_sets(sets, message):
    with pytest.raises(ValueError, match=message):
        conformal.coverage_summary(sets, GOOD_CODES[: len(sets)], np.array([0, 1]))


@pytest.mark.parametrize("confidence", [0.0, 1.0, 95, float("nan")])
def test_coverage_summary_rejects_a_confidence_outside_0_1(confidence):
    with pytest.raises(ValueError, match=r"confidence must be a number strictly between"):
        conformal.coverage_summary(GOOD_PROBA > 0.4, GOOD_CODES, np.array([0, 1]), confidence)


# ---------------------------------------------------------------- coverage, by simulation


def _blobs(rng, n_rows: int, n_classes: int):
    """Overlapping Gaussian classes: unit-variance blobs whose means sit 1.5 from the
    origin, evenly around a circle (kNN accuracy about 0.7 with 4 classes, 0.8 with 3)."""
    angles = 2 * np.pi * np.arange(n_classes) / n_classes
    means = 1.5 * np.c_[np.cos(angles), np.sin(angles)]
    y = rng.integers(0, n_classes, n_rows)
    return means[y] + rng.standard_normal((n_rows, 2)), y


def test_out_of_fold_calibration_keeps_its_coverage():
    """The pipeline's scheme, checked where the split-conformal proof does not reach it.

    200 fresh datasets (3 or 4 classes, k of 5, 10, 15 or 20 with uniform votes, 300
    training and 200 test rows): calibrate on the 5-fold out-of-fold votes of the training
    rows, form the test rows' sets with the model fitted on all of them; no test row is
    fitted on or calibrated with. The mean coverage over datasets is at least the level
    minus 3 standard errors. Measured (seed 20260515, under 2 s on 2 cores):

        coverage 0.9: mean coverage 0.926 (standard error 0.0024), mean set size 1.71
        coverage 0.8: mean coverage 0.829 (standard error 0.0029), mean set size 1.18,
                      2.0 % of the sets empty

    (0.918 to 0.926 and 0.828 to 0.837 with seeds 1 to 7.) Above the level: uniform votes
    are multiples of 1/k, so scores tie, and ties only add classes. Distance-weighted votes
    do not tie; with them the same scheme measured 0.910 at 0.9 with k = 5, but 0.899 ±
    0.001 with k = 15 on 300 training rows and 0.895 ± 0.001 on 60 (2000 and 3000
    datasets): slightly below the level where k is large against the training rows.
    """
    rng = np.random.default_rng(20260515)
    coverage = {0.9: [], 0.8: []}
    set_size = {0.9: [], 0.8: []}
    for _ in range(200):
        n_classes = int(rng.integers(3, 5))
        k = int(rng.choice([5, 10, 15, 20]))
        X, y = _blobs(rng, 500, n_classes)
        X_train, y_train, X_test, y_test = X[:300], y[:300], X[300:], y[300:]
        votes = out_of_fold(KNNClassifier(n_neighbors=k, n_jobs=1), X_train, y_train)
        model = KNNClassifier(n_neighbors=k, n_jobs=1).fit(X_train, y_train)
        test_proba = model.predict_proba(X_test)
        test_code = np.searchsorted(model.classes_, y_test)
        assert (model.classes_ == votes.classes).all()
        for level in coverage:
            threshold = conformal.calibrate(votes.proba, votes.y_code, level)
            sets = conformal.prediction_sets(test_proba, threshold)
            summary = conformal.coverage_summary(sets, test_code, model.classes_)
            coverage[level].append(summary["coverage"])
            set_size[level].append(summary["mean_set_size"])
    for level, values in coverage.items():
        mean = float(np.mean(values))
        standard_error = float(np.std(values, ddof=1) / math.sqrt(len(values)))
        report = f"{level}: {mean:.4f} ± {standard_error:.4f}, size {np.mean(set_size[level]):.2f}"
        assert mean >= level - 3 * standard_error, report
        assert np.mean(set_size[level]) > 1.1, report  # the classes do overlap


# ---------------------------------------------------------------- against MAPIE


class TableClassifier(ClassifierMixin, BaseEstimator):
    """A "fitted" classifier whose predict_proba returns stored rows: X is one column of row
    indices into ``table`` (n_rows, n_classes), whose columns are ``classes``."""

    def __init__(self, table=None, classes=None):
        self.table = table
        self.classes = classes

    def fit(self, X=None, y=None):
        self.classes_ = np.asarray(self.classes)
        self.n_features_in_ = 1
        return self

    def predict_proba(self, X):
        return self.table[np.asarray(X)[:, 0].astype(np.int64)]

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def mapie_sets(table, classes, y_cal, n_cal, levels):
    """MAPIE's LAC sets of table rows n_cal.. (one (n, n_classes) array per level) and its
    thresholds, calibrated on rows ..n_cal labelled y_cal."""
    mapie_classification = pytest.importorskip("mapie.classification")
    rows = np.arange(len(table))[:, None]
    estimator = TableClassifier(table, classes).fit()
    mapie = mapie_classification.SplitConformalClassifier(
        estimator, confidence_level=list(levels), conformity_score="lac", prefit=True
    )
    mapie.conformalize(rows[:n_cal], y_cal)
    _, sets = mapie.predict_set(rows[n_cal:])
    # Its thresholds (private: the one place MAPIE keeps them).
    thresholds = mapie._mapie_classifier.quantiles_
    return [sets[:, :, j] for j in range(len(levels))], thresholds


def mapie_rank(n: int, coverage: float) -> int:
    """The rank MAPIE's threshold has, read from its code (mapie 1.6,
    mapie.utils._compute_classification_quantile):
    ``np.quantile(scores, ceil((n + 1) * (1 - alpha)) / n, method="lower")`` with
    ``alpha = float(1 - Decimal(str(confidence_level)))``, which is the
    ``ceil((n + 1) * (1 - alpha))``-th smallest score, in float arithmetic.
    (MAPIE also refuses n < max(1 / alpha, 1 / (1 - alpha)) rows, where ours returns a
    threshold, 1.0 when too few.)"""
    alpha = float(Decimal(1) - Decimal(str(coverage)))
    return math.ceil((n + 1) * (1 - alpha))


MAPIE_LEVELS = (0.8, 0.9, 0.95)


@pytest.mark.parametrize("kind", VOTES)
@pytest.mark.parametrize("n_cal", [20, 57, 200, 1000])
def test_sets_agree_with_mapie(rng, kind, n_cal):
    """MAPIE's SplitConformalClassifier (LAC, prefit) gives the same sets, row for row.

    Two conventions of MAPIE's differ from ours, and neither can show here: its rank is
    computed in float arithmetic (:func:`mapie_rank`), equal to ours at these levels for
    every n up to 4000 at least (not at every level: see
    :func:`test_mapie_rank_differs_at_some_levels`); and it includes a class whose score
    exceeds q̂ by up to 1e-8 (mapie._machine_precision.EPSILON; see
    :func:`test_mapie_includes_scores_within_1e_8_above_the_threshold`), which random
    votes never come that close to (asserted) and tied votes (apart by 1/k) cannot.
    """
    pytest.importorskip("mapie")
    from mapie._machine_precision import EPSILON

    classes = np.array([3, 5, 8, 9])
    table = VOTES[kind](rng, n_cal + 500, 4)
    # Labels drawn from the votes (calibrated votes): the sets are neither empty nor full.
    y_code = np.array([rng.choice(4, p=row) for row in table[:n_cal]])
    found, thresholds = mapie_sets(table, classes, classes[y_code], n_cal, MAPIE_LEVELS)
    for j, level in enumerate(MAPIE_LEVELS):
        assert mapie_rank(n_cal, level) == conformal.quantile_rank(n_cal, level)
        threshold = conformal.calibrate(table[:n_cal], y_code, level)
        assert thresholds[j] == threshold
        scores = 1.0 - table[n_cal:]
        assert not ((scores > threshold) & (scores - threshold <= EPSILON)).any()
        ours = conformal.prediction_sets(table[n_cal:], threshold)
        assert (found[j] == ours).all(), level
        assert 0 < ours.sum(axis=1).mean() < 4  # neither trivial


def test_mapie_rank_differs_at_some_levels():
    """MAPIE computes 1 - alpha in float, and 1 - 0.7 is 0.30000000000000004: at coverage
    0.3 with 9 rows its threshold is the 4th smallest score, ours (⌈10 · 3/10⌉) the 3rd."""
    pytest.importorskip("mapie")
    classes = np.array([0, 1])
    votes = np.linspace(0.05, 0.95, 9)  # of the true class
    y_code = np.arange(9) % 2
    table = np.vstack(
        [
            np.where(y_code[:, None] == 0, np.c_[votes, 1 - votes], np.c_[1 - votes, votes]),
            [[0.5, 0.5]],
        ]
    )
    _, thresholds = mapie_sets(table, classes, classes[y_code], 9, [0.3])
    scores = sorted(1.0 - votes)
    assert (conformal.quantile_rank(9, 0.3), mapie_rank(9, 0.3)) == (3, 4)
    assert conformal.calibrate(table[:9], y_code, 0.3) == scores[2]
    assert thresholds[0] == scores[3]


def test_mapie_includes_scores_within_1e_8_above_the_threshold():
    """MAPIE's test is ``(1 - p) - q̂ <= 1e-8``; ours is ``1 - p <= q̂``, exact, since the
    scores on both sides come from one expression."""
    pytest.importorskip("mapie")
    classes = np.array([0, 1])
    calibration = np.array([[0.7, 0.3], [0.3, 0.7]] * 10)  # every score 1 - 0.7
    y_code = np.arange(20) % 2
    new = np.array([[0.7 - 5e-9, 0.3 + 5e-9], [0.7, 0.3]])
    table = np.vstack([calibration, new])
    sets, thresholds = mapie_sets(table, classes, classes[y_code], 20, [0.9])
    threshold = conformal.calibrate(calibration, y_code, 0.9)
    assert thresholds[0] == threshold == 1.0 - 0.7
    assert sets[0][:, 0].tolist() == [True, True]
    assert conformal.prediction_sets(new, threshold)[:, 0].tolist() == [False, True]
