"""The model lifecycle on a real SQLite store: each evaluated model is registered; the alias
``champion`` moves only to a model significantly better than the champion on the same test
split (evaluate's own judge, real digits models); otherwise the version is a challenger
with the verdict; ``models:/knnlab-<dataset>@champion`` loads the champion."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

from knnlab.estimators import KNNClassifier
from knnlab.pipeline.analysis import evaluation, significance
from knnlab.pipeline.io.model_io import save_model
from knnlab.pipeline.io.params import MlflowParams, Params
from knnlab.stages import evaluate
from knnlab.tracking import models, registry, runs

pytestmark = pytest.mark.slow

NAME = registry.registered_name("digits")


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    X, y = X[order], y[order]
    return X[:1300], y[:1300], X[1300:], y[1300:]


def _evaluate_and_register(root, digits, n_train: int, k: int, test_rows=slice(None)):
    """Fit k-NN on the first n_train training rows, log it as evaluate does and register it
    with evaluate's judge. Returns (version, decision, run id)."""
    X_train, y_train, X_test, y_test = digits
    X_test, y_test = X_test[test_rows], y_test[test_rows]
    model = KNNClassifier(k).fit(X_train[:n_train], y_train[:n_train])
    columns = [f"pixel_{i}" for i in range(X_train.shape[1])]
    save_model(root / "model.npz", model, extra={"feature_columns": columns})
    result = evaluation.evaluate_model(lambda: model, X_test, y_test)
    configured = (result.y_pred, result.proba, result.classes)
    fingerprint = significance.test_split_fingerprint(X_test, y_test)
    params = Params()
    with runs.stage_run(MlflowParams(experiment="lifecycle"), "evaluate", f"k={k}") as run:
        run.log_model(root / "model.npz", pd.DataFrame(X_test[:5], columns=columns), y_test[:5])
        version, decision = run.register_model(
            NAME,
            fingerprint,
            result.scores["accuracy"],
            lambda champion: evaluate._judge(
                run, champion, fingerprint, configured, X_test, y_test, params
            ),
        )
    return version, decision, run.record.run_id


def test_the_alias_moves_only_on_evidence(isolated_mlflow, tmp_path, digits):
    from knnlab.tracking.store import mlflow_client

    client = mlflow_client(isolated_mlflow)
    weak = _evaluate_and_register(tmp_path, digits, n_train=40, k=5)
    assert weak[0] == "1" and weak[1].crown
    assert "first version" in weak[1].verdict

    same = _evaluate_and_register(tmp_path, digits, n_train=40, k=5)
    assert same[0] == "2" and not same[1].crown
    assert same[1].verdict.startswith("this model is not significantly better than champion v1")

    strong = _evaluate_and_register(tmp_path, digits, n_train=1300, k=5)
    assert strong[0] == "3" and strong[1].crown, strong[1].verdict
    assert strong[1].verdict.startswith("this model is significantly better than champion v1")

    worse = _evaluate_and_register(tmp_path, digits, n_train=1300, k=400)
    assert not worse[1].crown
    assert worse[1].verdict.startswith("this model is significantly worse than champion v3")

    other_split = _evaluate_and_register(tmp_path, digits, n_train=1300, k=1, test_rows=slice(200))
    assert not other_split[1].crown
    assert "not compared with champion version 3: it was scored on another test split" in (
        other_split[1].verdict
    )

    champion = client.get_model_version_by_alias(NAME, registry.CHAMPION)
    assert str(champion.version) == "3" and champion.run_id == strong[2]
    roles = {v: client.get_model_version(NAME, v).tags[registry.ROLE_TAG] for v in "12345"}
    assert roles == {
        "1": "champion",  # crowned once; the alias has moved on since
        "2": "challenger",
        "3": "champion",
        "4": "challenger",
        "5": "challenger",
    }
    verdict = client.get_model_version(NAME, "4").tags[registry.VERDICT_TAG]
    assert verdict == worse[1].verdict, "the verdict is on the version, for the UI"
    # What `knnlab serve models:/knnlab-digits@champion` loads: the champion's classifier.
    loaded = models.load_logged_classifier(isolated_mlflow, f"models:/{NAME}@champion")
    X_test = digits[2]
    np.testing.assert_array_equal(
        loaded.predict(X_test), KNNClassifier(5).fit(*digits[:2]).predict(X_test)
    )
