"""The records passed between stages: exact round trips, strict reading, and the pure
functions the stages wire together, tested without files."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pydantic
import pytest

from knnlab import KNNClassifier
from knnlab.pipeline.analysis import evaluation, tuning
from knnlab.pipeline.analysis.training import model_card, novelty_threshold
from knnlab.pipeline.data.dataset import LABEL
from knnlab.pipeline.data.datasets import stratified_split
from knnlab.pipeline.io.artifacts import (
    ArtifactError,
    DatasetInfo,
    Evaluation,
    ModelCard,
    SplitInfo,
    TuneSummary,
)
from knnlab.pipeline.io.params import parse_params
from knnlab.pipeline.presentation import figures
from knnlab.pipeline.presentation.report import build_report

DATASET = DatasetInfo(
    name="toy",
    n_samples=12,
    n_features=2,
    n_classes=2,
    feature_columns=["a", "b"],
    label_column=LABEL,
    image_shape=None,
    class_names={"1": "one"},
)
SPLIT = SplitInfo.of(DATASET, 0.25, 42, 9, 3)
BEST = {"algorithm": "brute", "n_neighbors": 3, "p": 2, "weights": "distance"}
TUNED = TuneSummary(
    best_params=BEST,
    best_score=0.875,
    best_se=0.0625,
    scoring="accuracy",
    select="best",
    picks={
        "best": {"index": 5, "params": BEST, "score": 0.875, "se": 0.0625},
        "one_se": {
            "index": 7,
            "params": {**BEST, "n_neighbors": 5},
            "score": 0.8125,
            "se": 0.0625,
            "threshold": 0.8125,
        },
    },
    cv=3,
    seed=0,
    scale="none",
    n_candidates=8,
    n_train=9,
    index_seed=0,
)


@pytest.mark.parametrize("record", [DATASET, SPLIT, TUNED], ids=lambda r: type(r).__name__)
def test_a_record_round_trips_through_its_file_exactly(record, tmp_path):
    path = tmp_path / "record.json"
    record.write(path)
    assert type(record).read(path) == record
    text = path.read_text()
    assert text == json.dumps(record.to_dict(), indent=2, sort_keys=True) + "\n"


def test_split_info_is_the_dataset_info_plus_the_split():
    assert SPLIT.to_dict() == {
        **DATASET.to_dict(),
        "test_size": 0.25,
        "seed": 42,
        "n_train": 9,
        "n_test": 3,
    }
    assert SPLIT.display_name(1) == "one" and SPLIT.display_name(0) == "0"
    assert TUNED.model_params() == {**TUNED.best_params, "scale": "none", "random_state": 0}


def test_reading_is_strict_and_names_the_file_and_field(tmp_path):
    data = SPLIT.to_dict()
    path = tmp_path / "meta.json"
    for broken, message in [
        ({k: v for k, v in data.items() if k != "n_test"}, "missing field.*n_test"),
        ({**data, "extra": 1}, "unknown field.*extra"),
        ({**data, "n_train": "9"}, "field n_train is str '9', expected int"),
        ({**data, "n_train": True}, "field n_train is bool"),
        ({**data, "image_shape": "8x8"}, "field image_shape is str"),
    ]:
        path.write_text(json.dumps(broken))
        with pytest.raises(ArtifactError, match=message) as raised:
            SplitInfo.read(path)
        assert str(path) in str(raised.value) and "dvc repro split" in str(raised.value)
    path.write_text(json.dumps({**TUNED.to_dict(), "best_score": None}))
    with pytest.raises(ArtifactError, match="best_score is NoneType"):
        TuneSummary.read(path)


def test_records_are_frozen_and_have_a_json_schema():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SPLIT.n_train = 10
    schema = pydantic.TypeAdapter(SplitInfo).json_schema()
    assert set(schema["required"]) == {f.name for f in dataclasses.fields(SplitInfo)}
    assert schema["properties"]["n_train"]["type"] == "integer"
    assert schema["additionalProperties"] is False


def test_a_numpy_integer_is_not_taken_for_an_int():
    # Strict: what a stage writes is plain JSON-able Python, or the record refuses it.
    with pytest.raises(pydantic.ValidationError):
        SplitInfo(**{**SPLIT.to_dict(), "n_train": np.int64(9)})


def test_an_evaluation_needs_every_model(tmp_path):
    scores = {m: {"accuracy": 0.5} for m in ("configured", "tuned", "baseline")}
    times = {m: {"fit_seconds": 0.1, "predict_seconds": 0.2} for m in scores}
    Evaluation(scores, times).write(tmp_path / "m.json", tmp_path / "t.json")
    assert Evaluation.read_metrics(tmp_path / "m.json") == scores
    assert json.loads((tmp_path / "t.json").read_text()) == times
    (tmp_path / "m.json").write_text(json.dumps({"configured": {}}))
    with pytest.raises(ArtifactError, match=r"m\.json: expected one entry per model"):
        Evaluation.read_metrics(tmp_path / "m.json")


def test_the_model_card_describes_the_fit():
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [5.0, 5.0], [5.0, 6.0], [6.0, 5.0]])
    y = np.array([0, 0, 0, 1, 1, 1])
    model = KNNClassifier(2).fit(X, y)
    X_test = np.array([[0.0, 0.5], [5.5, 5.5], [20.0, 20.0]])
    card = model_card(SPLIT, model, X, X_test, (0.9, 0.4, 6))
    assert (card.dataset, card.feature_columns, card.image_shape, card.value_range) == (
        "toy", ["a", "b"], None, [0.0, 6.0]
    )  # fmt: skip
    # The test rows' mean distances to their 2 nearest training rows, by hand.
    mean = [np.mean(sorted(np.hypot(*(X - q).T))[:2]) for q in X_test]
    scale = card.test_distance_scale
    assert len(scale) == 1001 and scale == sorted(scale)
    assert scale[0] == min(mean) and scale[-1] == max(mean) and scale[500] == np.median(mean)
    assert card.novelty_threshold == np.percentile(mean, 99) and card.false_alarm_rate == 1 / 3
    # Without test rows: the training rows' own threshold, each point's 2 nearest others at
    # distances 1 and sqrt(2): mean (1 + sqrt 2) / 2.
    alone = model_card(SPLIT, model, X, X_test[:0], (0.9, 0.4, 6))
    assert alone.novelty_threshold == novelty_threshold(model) == (1 + np.sqrt(2)) / 2
    assert alone.test_distance_scale == [] and np.isnan(alone.false_alarm_rate)
    assert novelty_threshold(KNNClassifier(6).fit(X, y)) == float("inf"), "k = n: no others"
    assert ModelCard.from_dict(card.to_dict()) == card


def test_the_split_is_stratified_and_seeded():
    frame = pd.DataFrame({"a": np.arange(40.0), LABEL: [0] * 30 + [1] * 10})
    split = parse_params({"split": {"test_size": 0.25, "seed": 3}}).split
    train, test = stratified_split(frame, split)
    again, _ = stratified_split(frame, split)
    assert (len(train), len(test)) == (30, 10)
    assert test[LABEL].value_counts().to_dict() == {0: 8, 1: 2}, "each class keeps its share"
    pd.testing.assert_frame_equal(train, again)


def test_the_binary_threshold_is_chosen_on_training_scores_only():
    train_scores = np.array([0.1, 0.4, 0.6, 0.8, 0.9])
    is_positive_train = np.array([False, False, True, True, True])
    test_scores = np.array([0.5, 0.7, 0.95])
    is_positive_test = np.array([True, False, True])
    found = evaluation.binary_analysis(
        1, "one", is_positive_test, test_scores, is_positive_train, train_scores
    )
    # On the training scores, 0.6 is the lowest threshold with precision >= 0.9 (3 of 3).
    assert found["threshold"] == 0.6 and found["name"] == "one"
    rates = found["at_precision"]
    assert (rates["precision"], rates["recall"]) == (0.5, 0.5), "test: 0.7 wrong, 0.95 right"


def test_the_cv_curve_follows_the_tuned_p_and_weights():
    cv = pd.DataFrame(
        {
            "param_n_neighbors": [3, 1, 3, 1],
            "param_p": [2, 2, 1, 2],
            "param_weights": ["distance", "distance", "distance", "uniform"],
            "mean_test_accuracy": [0.9, 0.8, 0.7, 0.6],
            "std_test_accuracy": [0.01, 0.02, 0.03, 0.04],
            "sem_test_accuracy": [0.005, 0.01, 0.015, 0.02],
        }
    )
    table = evaluation.cv_curve_table(cv, TUNED)
    assert table.to_dict("list") == {
        "n_neighbors": [1, 3],
        "cv_score": [0.8, 0.9],
        "cv_std": [0.02, 0.01],
        "cv_se": [0.01, 0.005],
    }


def test_predictions_table_round_trips_labels_and_probabilities():
    result = evaluation.ModelResult(
        scores={},
        fit_seconds=0.0,
        predict_seconds=0.0,
        y_pred=np.array([1, 0]),
        proba=np.array([[0.25, 0.75], [1.0, 0.0]]),
        classes=np.array([0, 1]),
    )
    table = evaluation.prediction_table(np.array([1, 1]), result)
    y_true, y_pred, classes, proba = evaluation.read_prediction_table(table)
    np.testing.assert_array_equal(y_true, [1, 1])
    np.testing.assert_array_equal(y_pred, [1, 0])
    np.testing.assert_array_equal(classes, [0, 1])
    np.testing.assert_array_equal(proba, result.proba)


def test_the_figures_fit_the_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 2))
    y = np.array([0, 1] * 6)
    proba = np.column_stack([1 - y * 0.75, y * 0.75])
    proba[0] = [0.25, 0.75]  # one error
    test = figures.TestPredictions(y, proba.argmax(axis=1), proba, np.array([0, 1]), X)
    result = tuning.tune(
        parse_params({"tune": {"cv": 3, "grid": {"n_neighbors": [1, 3], "p": [2]}}}), X, y
    )[0]
    made = figures.pipeline_figures(SPLIT, test, TUNED, result.cv_results)
    assert sorted(made) == sorted(
        [
            "confusion_matrix.png",
            "roc_curves.png",
            "precision_recall_curves.png",
            "cv_score_vs_k.png",
            "cv_heatmap.png",
        ]
    ), "no images, no positive class, no model for a surface (search speed is tune's)"
    model = KNNClassifier(3).fit(X, y)
    binary = {"positive": 1, "name": "one", "target": 0.9, "threshold": 0.5}
    made = figures.pipeline_figures(
        SPLIT, test, TUNED, result.cv_results, binary, (model, {"train": (X, y)})
    )
    assert {"binary_threshold.png", "probability_surface.png"} <= set(made)
    images = SplitInfo.of(
        DatasetInfo(**{**DATASET.to_dict(), "n_features": 4, "image_shape": [2, 2]}), 0.25, 1, 9, 3
    )
    test4 = figures.TestPredictions(test.y_true, test.y_pred, proba, test.classes, np.ones((12, 4)))
    made = figures.pipeline_figures(images, test4, TUNED, result.cv_results)
    assert {"sample_gallery.png", "confused_pair.png"} <= set(made)


def test_the_report_reads_the_records():
    scores = {"accuracy": 0.5, "precision_macro": 0.5, "recall_macro": 0.5, "f1_macro": 0.5}
    scores |= {"f1_weighted": 0.5, "roc_auc_ovr": float("nan")}
    metrics = {m: scores for m in ("configured", "tuned", "baseline")}
    text = build_report(SPLIT, metrics, TUNED, {"n_neighbors": 5}, ["cv_heatmap.png"])
    assert text.startswith("# knnlab report: toy\n")
    assert "| 12 | 2 | 2 | 9 / 3 | 0.25 | 42 |" in text
    assert "54 candidates" not in text and "8 candidates, by accuracy" in text
    assert "| ROC-AUC (one-vs-rest) | n/a | n/a | n/a |" in text
    assert "![Mean CV score over k and p](figures/cv_heatmap.png)" in text
    assert "seconds" not in text.split("## Test-split metrics")[1].split("\n\n")[1]
    assert "in the git-ignored `reports/timings/`" in text, "where the seconds went"
