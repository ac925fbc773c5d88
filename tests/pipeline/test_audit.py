"""The audit's pipeline pieces: the votes file round trip, the removal check against a loop
of refits, the prediction-set record, and leaks moved at split."""

import json

import numpy as np
import pandas as pd
import pytest

from knnlab.estimators import KNNClassifier
from knnlab.pipeline.analysis import audit, data_record, votes
from knnlab.pipeline.data.dataset import LABEL, DataError
from knnlab.pipeline.data.leaks import find_leaks
from knnlab.pipeline.io.params import ParamsError, parse_params


def _data(seed=0, n=150):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], n // 3)
    X = rng.normal(size=(n, 3)) + y[:, None]
    return X, y


def test_the_votes_file_reads_back_as_written():
    X, y = _data()
    oof = votes.out_of_fold_votes({"n_neighbors": 4}, X, y)
    back = votes.read_votes_table(votes.votes_table(oof), y)
    for name in ("proba", "neighbors", "distances", "folds", "classes", "y_code"):
        np.testing.assert_array_equal(getattr(back, name), getattr(oof, name))
    with pytest.raises(ValueError, match="re-run `dvc repro train`"):
        votes.read_votes_table(votes.votes_table(oof), y[:-1])


def test_the_removal_check_equals_refitting_without_the_rows_fold_by_fold():
    X, y = _data(1)
    params = {"n_neighbors": 5}
    oof = votes.out_of_fold_votes(params, X, y)
    values = np.random.default_rng(3).normal(size=len(y))
    effect = audit.removal_effect(params, X, y, oof, values, share=0.05)
    removed = np.argsort(values, kind="stable")[: int(np.ceil(0.05 * len(y)))]
    kept = np.setdiff1d(np.arange(len(y)), removed)
    right_before, right_after = {}, {}
    for fold in range(5):  # the loop: refit on the other folds without the removed rows
        fit = np.flatnonzero(oof.folds != fold)
        held = np.intersect1d(np.flatnonzero(oof.folds == fold), kept)
        before = KNNClassifier(5).fit(X[fit], y[fit]).predict(X[held])
        fit_after = np.setdiff1d(fit, removed)
        after = KNNClassifier(5).fit(X[fit_after], y[fit_after]).predict(X[held])
        right_before.update(zip(held, before == y[held], strict=True))
        right_after.update(zip(held, after == y[held], strict=True))
    assert effect["removed"] == len(removed)
    assert effect["kept_accuracy_before"] == np.mean([right_before[i] for i in kept])
    assert effect["kept_accuracy_after"] == np.mean([right_after[i] for i in kept])
    assert effect["fixed"] == sum(right_after[i] and not right_before[i] for i in kept)
    assert effect["broken"] == sum(right_before[i] and not right_after[i] for i in kept)
    assert 0 <= effect["p_value"] <= 1


def test_the_prediction_set_record_counts_what_the_sets_hold():
    proba = np.array([[0.8, 0.2, 0.0], [0.4, 0.6, 0.0], [0.2, 0.2, 0.6], [0.0, 0.0, 1.0]])
    classes = np.array([3, 5, 7])
    card = {"coverage": 0.9, "conformal_threshold": 0.6, "calibration_rows": 100}
    record = data_record.prediction_set_record(proba, classes, np.array([3, 3, 5, 7]), card, 0.95)
    # Sets: {3}, {3, 5}, {7}, {7}: the third row's class 5 is out.
    assert record["coverage"] == 0.75 and record["mean_set_size"] == 1.25
    assert record["per_class"]["5"] == {"n": 1, "coverage": 0.0, "mean_set_size": 1.0}
    assert record["target"] == 0.9 and record["threshold"] == 0.6
    assert record["coverage_low"] < 0.75 < record["coverage_high"]


def _frames():
    rng = np.random.default_rng(0)
    X = rng.integers(0, 17, size=(120, 8)).astype(float)
    y = np.repeat([0, 1, 2], 40)
    train = pd.DataFrame(X[:90], columns=[f"f{j}" for j in range(8)]).assign(**{LABEL: y[:90]})
    test = pd.DataFrame(X[90:], columns=[f"f{j}" for j in range(8)]).assign(**{LABEL: y[90:]})
    test.iloc[[2, 5], :8] = train.iloc[[10, 20], :8].to_numpy()  # planted copies
    return train, test


def test_leaks_are_counted_and_moved_only_when_asked():
    train, test = _frames()
    same_train, same_test, leaks = find_leaks(train, test, parse_params({}).split)
    assert (leaks["exact_duplicates"], leaks["moved_to_train"]) == (2, 0)
    assert same_train.equals(train) and same_test.equals(test)
    split = parse_params({"split": {"deduplicate": True}}).split
    moved_train, moved_test, leaks = find_leaks(train, test, split)
    assert leaks["moved_to_train"] == 2 and leaks["deduplicate"] is True
    assert len(moved_train) == 92 and len(moved_test) == 28
    assert moved_train.tail(2).equals(test.iloc[[2, 5]].reset_index(drop=True).set_axis([90, 91]))


def test_moving_a_whole_test_class_is_refused():
    train, test = _frames()
    test.iloc[:, :8] = train.iloc[: len(test), :8].to_numpy()  # every test row a copy
    with pytest.raises(DataError, match=r"split\.deduplicate: true would move every test row"):
        find_leaks(train, test, parse_params({"split": {"deduplicate": True}}).split)


def test_a_k_the_fold_models_cannot_reach_is_refused_by_key():
    X, y = _data(4, n=30)  # folds of 6: each fold model fits on 24 rows
    assert votes.out_of_fold_votes({"n_neighbors": 24}, X, y).neighbors.shape == (30, 24)
    with pytest.raises(ParamsError, match=r"model\.n_neighbors = 25 is larger than the 24"):
        votes.out_of_fold_votes({"n_neighbors": 25}, X, y)
    with pytest.raises(ParamsError, match="at least 5"):
        votes.out_of_fold_votes({"n_neighbors": 1}, X[:4], y[:4])


def _project_with_copies(tmp_path, monkeypatch):
    """A table of 200 rows, 3 classes, where rows 150..159 copy rows 0..9 exactly and rows
    160..164 are rows 10..14 one unit off in one feature; fetched into data/raw."""
    rng = np.random.default_rng(5)
    X = rng.integers(0, 17, size=(200, 6)).astype(float)
    y = np.arange(200) % 3
    X[150:160], y[150:160] = X[0:10], y[0:10]
    X[160:165], y[160:165] = X[10:15] + np.eye(6)[0], y[10:15]
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(6)]).assign(y=y)
    frame.to_csv(tmp_path / "table.csv", index=False)
    monkeypatch.chdir(tmp_path)
    from knnlab.stages import fetch

    data = {"dataset": "file", "path": "table.csv", "label_column": "y"}
    fetch.run(parse_params({"data": data}))
    return data


def _leaked_rows(train: pd.DataFrame, test: pd.DataFrame) -> int:
    seen = {tuple(row) for row in train.drop(columns=[LABEL]).to_numpy()}
    return sum(tuple(row) in seen for row in test.drop(columns=[LABEL]).to_numpy())


def test_the_split_stage_counts_planted_copies_and_moves_them_when_asked(tmp_path, monkeypatch):
    from knnlab.stages import split

    data = _project_with_copies(tmp_path, monkeypatch)
    split.run(
        parse_params({"data": data, "split": {"test_size": 0.5, "seed": 1, "near_duplicate": 0.25}})
    )
    leaks = json.loads((tmp_path / "data/split/leaks.json").read_text())
    train = pd.read_parquet(tmp_path / "data/split/train.parquet")
    test = pd.read_parquet(tmp_path / "data/split/test.parquet")
    assert leaks["exact_duplicates"] == _leaked_rows(train, test) > 0, leaks
    assert leaks["near_duplicates"] > 0 and leaks["moved_to_train"] == 0
    split.run(
        parse_params(
            {
                "data": data,
                "split": {"test_size": 0.5, "seed": 1, "near_duplicate": 0.25, "deduplicate": True},
            }
        )
    )
    moved = json.loads((tmp_path / "data/split/leaks.json").read_text())
    train = pd.read_parquet(tmp_path / "data/split/train.parquet")
    test = pd.read_parquet(tmp_path / "data/split/test.parquet")
    assert moved["moved_to_train"] >= leaks["exact_duplicates"] + leaks["near_duplicates"]
    assert _leaked_rows(train, test) == 0 and len(train) + len(test) == 200
    meta = json.loads((tmp_path / "data/split/meta.json").read_text())
    assert (meta["n_train"], meta["n_test"]) == (len(train), len(test))
