"""The intervals and verdicts as the pipeline records and reports them, on real digits
predictions: reports/uncertainty.json, the report's sentences and the revision diff."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from knnlab.estimators import KNNClassifier
from knnlab.metrics import classification_scores
from knnlab.pipeline.analysis import evaluation, significance
from knnlab.pipeline.io import files
from knnlab.pipeline.io.params import MinEffectParams
from knnlab.pipeline.presentation import report


@pytest.fixture(scope="module")
def digits_models():
    """The pipeline's default split of digits; k = 5 (configured), k = 4 (one more error on
    one test row) and k = 600 (broken), each as (y_pred, proba, classes)."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=42
    )
    models = {}
    for name, k in (("k5", 5), ("k4", 4), ("k600", 600)):
        model = KNNClassifier(n_neighbors=k).fit(X_train, y_train)
        proba = model.predict_proba(X_test)
        models[name] = (model.classes_[np.argmax(proba, axis=1)], proba, model.classes_)
    return X_test, y_test, models


def _record(y_test, X_test, chosen: dict, resamples: int = 500):
    return significance.uncertainty(
        y_test,
        chosen,
        0.95,
        resamples,
        0,
        significance.test_split_fingerprint(X_test, y_test),
    )


def test_uncertainty_is_byte_identical_for_a_seed_and_brackets_every_point(digits_models):
    X_test, y_test, models = digits_models
    chosen = {"configured": models["k5"], "tuned": models["k4"], "baseline": models["k600"]}
    first = files.to_json_text(_record(y_test, X_test, chosen))
    assert files.to_json_text(_record(y_test, X_test, chosen)) == first
    record = json.loads(first)
    for model, (y_pred, proba, classes) in chosen.items():
        points = classification_scores(y_test, y_pred, proba, classes)
        for metric, value in points.items():
            interval = record["intervals"][model][metric]
            assert interval["low"] <= value <= interval["high"], (model, metric)
            assert interval["se"] > 0
    # k=4 vs k=5: 442 against 443 right of 450, one row right only by k=5.
    pair = next(p for p in record["paired"] if (p["first"], p["second"]) == ("configured", "tuned"))
    assert (pair["only_first_right"], pair["only_second_right"]) == (1, 0)
    assert pair["accuracy_difference"] == pytest.approx(-1 / 450)
    assert pair["mcnemar_p"] == 1.0 and not pair["significant"]
    assert pair["low"] < 0 <= pair["high"]


def test_the_verdict_reads_as_a_sentence():
    pair = {
        "first": "configured",
        "second": "tuned",
        "accuracy_difference": 0.0,
        "low": -0.0067,
        "high": 0.0067,
        "only_first_right": 1,
        "only_second_right": 1,
        "mcnemar_p": 1.0,
        "significant": False,
    }
    assert significance.verdict(pair, {}) == (
        "tuned is not significantly better than configured in accuracy: +0.0000 "
        "[\u22120.0067, +0.0067], McNemar p = 1.0 (1 row right only by tuned, 1 only by "
        "configured; 2 discordant)"
    )
    worse = {**pair, "accuracy_difference": -0.1, "mcnemar_p": 3e-6, "significant": True}
    assert significance.verdict(worse, {}).startswith(
        "tuned is significantly worse than configured in accuracy: \u22120.1000"
    )
    assert "p < 0.0001" in significance.verdict(worse, {})


def test_mlflow_metrics_name_each_bound(digits_models):
    X_test, y_test, models = digits_models
    record = _record(y_test, X_test, {"configured": models["k5"], "tuned": models["k4"]}, 200)
    logged = significance.mlflow_metrics(record)
    for key in (
        "test/accuracy_ci_low",
        "test/accuracy_ci_high",
        "test/roc_auc_ovr_ci_high",
        "tuned/f1_macro_ci_low",
        "paired/tuned_vs_configured_accuracy_difference",
        "paired/tuned_vs_configured_accuracy_p_value",
    ):
        assert key in logged, key
    assert logged["test/accuracy_ci_low"] < logged["test/accuracy_ci_high"]


def _state(y_test, chosen, record, metrics=None):
    return {
        "metrics": metrics or {m: classification_scores(y_test, *chosen[m]) for m in chosen},
        "uncertainty": record,
        "predictions": (
            y_test,
            next(iter(chosen.values()))[2],
            {m: (p[0], p[1]) for m, p in chosen.items()},
        ),
    }


def test_a_one_row_change_is_within_noise_and_a_broken_model_is_significant(digits_models):
    X_test, y_test, models = digits_models
    base_models = {"configured": models["k5"]}
    base = _state(y_test, base_models, _record(y_test, X_test, base_models, 300))
    for candidate, significant in (("k4", False), ("k600", True)):
        now_models = {"configured": models[candidate]}
        now = _state(y_test, now_models, _record(y_test, X_test, now_models, 300))
        comparison = significance.compare_revisions(base, now, 0.95, 300, 0)
        assert comparison["mode"] == "paired"
        rows = {(r["model"], r["metric"]): r for r in comparison["rows"]}
        accuracy = rows["configured", "accuracy"]
        assert accuracy["significant"] is significant, (candidate, accuracy)
        assert accuracy["p"] == (1.0 if candidate == "k4" else pytest.approx(0, abs=1e-12))
        lines = report.diff_section({"base": "main", "params": []}, comparison, MIN_EFFECT)
        failures = report.gate_failures(comparison, MIN_EFFECT)
        assert bool(failures) is significant, failures
        table = "\n".join(lines)
        if significant:
            assert "| configured: Accuracy | 0.9844 | 0.7000 |" in table, table
            assert "**▼ worse** (significant, McNemar p < 0.0001)" in table
        else:
            assert "| configured: Accuracy | 0.9844 | 0.9822 | \u22120.0022 [" in table, table
            assert "▲" not in table and "▼" not in table, table
            assert "within noise" in table


def test_other_test_splits_compare_unpaired_and_old_revisions_are_not_assessed(digits_models):
    X_test, y_test, models = digits_models
    chosen = {"configured": models["k5"]}
    base = _state(y_test, chosen, _record(y_test, X_test, chosen, 300))
    moved = {**base, "uncertainty": {**base["uncertainty"], "test_split": "another split"}}
    now_models = {"configured": models["k600"]}
    now = _state(y_test, now_models, _record(y_test, X_test, now_models, 300))
    unpaired = significance.compare_revisions(moved, now, 0.95, 300, 0)
    assert unpaired["mode"] == "unpaired" and "test splits differ" in unpaired["reason"]
    accuracy = next(r for r in unpaired["rows"] if r["metric"] == "accuracy")
    assert accuracy["significant"] is True and accuracy["p"] is None
    old = {**base, "uncertainty": None, "predictions": None}
    none = significance.compare_revisions(old, now, 0.95, 300, 0)
    assert (
        none["mode"] == "none"
        and "base revision has no reports/uncertainty.json" in (none["reason"])
    )
    assert all(r["significant"] is None for r in none["rows"])
    table = "\n".join(report.diff_section({"base": "v1", "params": []}, none, MIN_EFFECT))
    assert "not assessed" in table and "▼" not in table


def test_predictions_of_every_model_round_trip_through_csv(tmp_path, digits_models):
    _, y_test, models = digits_models
    results = {
        name: evaluation.ModelResult({}, 0.0, 0.0, y_pred, proba, classes)
        for name, (y_pred, proba, classes) in (
            ("configured", models["k5"]),
            ("tuned", models["k4"]),
            ("baseline", models["k600"]),
        )
    }
    table = evaluation.prediction_table(
        y_test, results["configured"], {k: v for k, v in results.items() if k != "configured"}
    )
    files.write_csv(tmp_path / "p.csv", table)
    y_true, _, found = evaluation.read_model_predictions(files.read_csv(tmp_path / "p.csv"))
    np.testing.assert_array_equal(y_true, y_test)
    assert list(found) == ["configured", "tuned", "baseline"]
    for name, result in results.items():
        np.testing.assert_array_equal(found[name][0], result.y_pred)
        np.testing.assert_array_equal(found[name][1], result.proba)  # bit for bit
    # The configured model's columns are those the DVC confusion plot reads.
    assert list(table.columns[:2]) == ["actual", "predicted"]


def test_the_report_shows_intervals_and_verdicts(digits_models):
    X_test, y_test, models = digits_models
    chosen = {"configured": models["k5"], "tuned": models["k4"], "baseline": models["k600"]}
    record = _record(y_test, X_test, chosen, 300)
    lines = report._significance_section(record)
    assert lines[0] == "## Is the difference real?"
    assert lines[2].startswith("- tuned is not significantly worse than configured in accuracy")
    cell = report._with_interval(0.98444, record["intervals"]["configured"]["accuracy"])
    low = record["intervals"]["configured"]["accuracy"]["low"]
    assert cell.startswith(f"0.984 [{low:.3f}, ")


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ({"metrics": None}, "cannot read reports/metrics.json at revision 'v1': the file is"),
        ({"metrics": "[1, 2]"}, "cannot read metrics at revision 'v1': expected a mapping"),
        ({"uncertainty": "{not json"}, "cannot read reports/uncertainty.json at revision 'v1'"),
        (
            {"predictions": "predicted,proba_0\n1,0.5\n"},
            "cannot read reports/plots/predictions.csv at revision 'v1': KeyError",
        ),
        ({"params": "a: [1,"}, "cannot read params.yaml at revision 'v1'"),
    ],
)
def test_a_broken_revision_file_is_named_with_its_revision(broken, message):
    texts = {
        "params": "model: {n_neighbors: 5}\n",
        "metrics": '{"configured": {"accuracy": 0.9}}',
        "uncertainty": None,
        "predictions": None,
        **broken,
    }
    with pytest.raises(ValueError) as error:
        report.revision_state("v1", texts)
    assert str(error.value).startswith(message), str(error.value)
    assert "\n" not in str(error.value)


def test_a_split_with_few_errors_points_to_wilson():
    metrics = {
        "configured": {"accuracy": 448 / 450},
        "tuned": {"accuracy": 443 / 450},
        "baseline": {"accuracy": 46 / 450},
    }
    lines = report._few_errors_note(metrics, 450)
    assert lines[1].startswith("Too few errors for the bootstrap: configured (2 errors of 450).")
    assert "read the Wilson row" in lines[1]
    metrics["configured"]["accuracy"] = 443 / 450
    assert report._few_errors_note(metrics, 450) == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "cannot be read (JSONDecodeError); re-run `dvc repro evaluate`"),
        ('{"confidence": 0.95}', "missing resamples, seed, n_test, intervals"),
        ("[]", "missing confidence"),
    ],
)
def test_a_mangled_uncertainty_file_names_itself_and_the_fix(tmp_path, text, message):
    from knnlab.pipeline.io.artifacts import ArtifactError

    path = tmp_path / "uncertainty.json"
    path.write_text(text)
    with pytest.raises(ArtifactError) as error:
        significance.read_uncertainty(path)
    assert str(error.value).startswith(f"{path}: "), str(error.value)
    assert message in str(error.value)


def test_a_missing_uncertainty_file_says_what_to_run(tmp_path):
    from knnlab.pipeline.io.artifacts import ArtifactError

    with pytest.raises(ArtifactError, match=r"cannot be read \(FileNotFoundError\); re-run"):
        significance.read_uncertainty(tmp_path / "absent.json")


MIN_EFFECT = MinEffectParams().by_metric(significance.stats.METRICS)


def _row(metric: str, change: float, low: float, high: float, significant):
    return {"model": "configured", "metric": metric, "base": 0.99, "current": 0.99 + change,
            "change": change, "low": low, "high": high, "p": None,
            "significant": significant}  # fmt: skip


@pytest.mark.parametrize(
    ("row", "verdict"),
    [
        (_row("roc_auc_ovr", -0.0001, -0.0003, -0.00002, True), significance.NEGLIGIBLE),
        (_row("roc_auc_ovr", -0.002, -0.003, -0.001, True), significance.WORSE),
        (_row("accuracy", -0.0044, -0.0111, 0.0, False), significance.NOISE),
        (_row("accuracy", 0.0049, 0.001, 0.008, True), significance.NEGLIGIBLE),
        (_row("accuracy", 0.005, 0.001, 0.009, True), significance.BETTER),
        (_row("f1_macro", -0.3, -0.35, -0.25, True), significance.WORSE),
        (_row("f1_macro", -0.3, math.nan, math.nan, None), significance.NOT_ASSESSED),
    ],
)
def test_a_change_is_better_or_worse_only_when_significant_and_material(row, verdict):
    assert significance.judge(row, MIN_EFFECT) == verdict


def test_a_negligible_change_reads_so_and_never_prints_minus_zero():
    row = _row("roc_auc_ovr", -0.0001, -0.0003, -0.0000231, True)
    table = "\n".join(
        report.diff_section(
            {"base": "main", "params": []}, {"reason": "paired", "rows": [row]}, MIN_EFFECT
        )
    )
    line = next(x for x in table.splitlines() if x.startswith("| configured: ROC-AUC"))
    assert "[\u22120.0003, \u22120.00002]" in line, line
    assert "significant but negligible (under 0.0010)" in line and "▼" not in line, line
    assert report.gate_failures({"rows": [row]}, MIN_EFFECT) == []


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (-0.0000231, "\u22120.00002"),
        (-0.00004999, "\u22120.00005"),
        (0.0, "+0.0000"),
        (0.0067, "+0.0067"),
        (-0.28223, "\u22120.2822"),
    ],
)
def test_signed_shows_the_first_significant_digit_of_a_small_value(value, shown):
    assert significance.signed(value) == shown


def _revision(dataset="digits", classes=range(10), **data):
    y = np.array([str(c) for c in classes])
    return {
        "params": {"data": {"dataset": dataset, **data}},
        "predictions": (y, np.array(sorted(set(y))), {}),
    }


def test_revisions_on_the_same_data_are_comparable_even_with_another_split():
    base = _revision(split_seed=1)
    assert report.comparability(base, _revision(split_seed=2)) == []
    assert report.comparability(_revision(path="a.csv"), _revision(path="b.csv")) == [], (
        "data.path is unused by an embedded dataset"
    )


def test_another_dataset_or_label_set_is_not_comparable_and_says_why():
    reasons = report.comparability(_revision("digits"), _revision("fashion_mnist"))
    assert reasons == ["the datasets differ: digits at the base, fashion_mnist here"]
    files = report.comparability(
        _revision("file", path="a.csv", classes="ab"),
        _revision("file", path="b.csv", classes="abc"),
    )
    assert files == [
        "data.path differs: 'a.csv' at the base, 'b.csv' here (another file dataset)",
        "the label sets differ: 2 classes (a, b) at the base, 3 classes (a, b, c) here",
    ]
    base, now = _revision(), _revision()
    current = {"metrics": {"configured": {"accuracy": 0.9}}, **now}
    earlier = {"metrics": {"configured": {"accuracy": 0.8}}, **base}
    values = report.metric_values(earlier, current)
    table = "\n".join(report.diff_section({"base": "main", "params": []}, None, MIN_EFFECT,
                                          ["the datasets differ: a, b"], values))  # fmt: skip
    assert "**Not comparable**: no change is marked better or worse, because" in table
    assert "| configured: Accuracy | 0.8000 | 0.9000 |" in table
    assert "▲" not in table and "significant" not in table
