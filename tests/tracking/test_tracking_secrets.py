"""Credentials in a tracking URI are refused, and no URI reaches the console, a run record or
a run tag with a secret in it (real MLflow store in a temporary folder)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from knnlab.pipeline.io.params import MlflowParams
from knnlab.tracking import runs, store

from ..support import mlflow_store

TrackingError = runs.TrackingError  # the class the CLI reports as one line

SECRET = "s3cr3tVALUE"

# (URI with SECRET in it, what the error must point to instead)
REFUSED = [
    (f"http://user:{SECRET}@mlflow.example:5000", "MLFLOW_TRACKING_PASSWORD"),
    (f"https://{SECRET}@mlflow.example", "MLFLOW_TRACKING_TOKEN"),
    (f"https://mlflow.example/?token={SECRET}", "MLFLOW_TRACKING_TOKEN"),
    (f"https://mlflow.example/?password={SECRET}&x=1", "MLFLOW_TRACKING_TOKEN"),
    (f"https://mlflow.example/?access_token={SECRET}", "MLFLOW_TRACKING_TOKEN"),
    (f"https://mlflow.example/?key={SECRET}", "MLFLOW_TRACKING_TOKEN"),
    (f"https://mlflow.example/?api-key={SECRET}", "MLFLOW_TRACKING_TOKEN"),
    (f"https://acct.blob.core.windows.net/c?sv=2022-11-02&sig={SECRET}", "MLFLOW_TRACKING"),
    (f"https://mlflow.example/?Signature={SECRET}&Expires=1700000000", "MLFLOW_TRACKING"),
    (
        f"https://b.s3.amazonaws.com/k?X-Amz-Credential={SECRET}&X-Amz-Signature={SECRET}",
        "MLFLOW_TRACKING_TOKEN",
    ),
    (f"https://b.s3.amazonaws.com/k?X-Amz-Security-Token={SECRET}", "MLFLOW_TRACKING"),
    (f"https://mlflow.example/#access_token={SECRET}", "MLFLOW_TRACKING_TOKEN"),
    # An opaque token under an innocent name, and as a bare parameter.
    (f"https://mlflow.example/?t=ghp_{SECRET}0123456789abcdefghijkl", "MLFLOW_TRACKING"),
    (f"https://mlflow.example/?ghp_{SECRET}0123456789abcdefghijkl", "MLFLOW_TRACKING"),
    (f"postgresql://mlflow:{SECRET}@db.example:5432/mlflow", "PGPASSWORD"),
    (f"mysql+pymysql://db.example/mlflow?user=mlflow&password={SECRET}", "password file"),
    # A password with an unescaped '?' is still user-info, not a query.
    (f"postgresql://mlflow:{SECRET}?x@db.example/mlflow", "PGPASSWORD"),
]

HARMLESS = [
    "sqlite:////tmp/store/mlflow.db",
    "sqlite:////tmp/store/mlflow.db?timeout=30",
    "sqlite:////tmp/store/mlflow.db?mode=rwc&cache=shared&timeout=20",
    "postgresql://db.example:5432/mlflow?sslmode=require&application_name=knnlab",
    "http://127.0.0.1:5000",
    "https://mlflow.example/prefix/",
    "databricks://profile:prefix",
    "file:///data/me@work/mlruns",
    "./mlruns",
]


@pytest.mark.parametrize(("uri", "instead"), REFUSED)
def test_a_credential_in_the_uri_is_refused_without_printing_it(uri, instead, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with pytest.raises(TrackingError, match="has credentials in it") as raised:
        store.resolve_tracking_uri(MlflowParams())
    message = str(raised.value)
    assert SECRET not in message, f"the refusal printed the secret: {message}"
    assert instead in message, f"the refusal does not say where the secret goes: {message}"
    assert store.redact_uri(uri) in message, "the URI is named, redacted"


@pytest.mark.parametrize(("uri", "instead"), REFUSED)
def test_redaction_hides_every_refused_secret(uri, instead):
    redacted = store.redact_uri(uri)
    assert SECRET not in redacted, redacted
    assert "***" in redacted, redacted
    assert redacted.split(":", 1)[0] == uri.split(":", 1)[0], "the scheme stays readable"


@pytest.mark.parametrize("uri", HARMLESS)
def test_harmless_uris_are_accepted_and_left_as_they_are(uri):
    store.refuse_credentials(uri)  # raises if refused
    assert store.redact_uri(uri) == uri, "an accepted URI is recorded exactly"


def test_redaction_keeps_the_harmless_parts_of_a_refused_uri():
    uri = f"https://mlflow.example/p?timeout=5&token={SECRET}&x=1#frag"
    assert store.redact_uri(uri) == "https://mlflow.example/p?timeout=5&token=***&x=1#frag"
    user = f"postgresql://mlflow:{SECRET}@db.example:5432/mlflow?sslmode=require"
    assert store.redact_uri(user) == "postgresql://***@db.example:5432/mlflow?sslmode=require"


def test_refusal_does_not_depend_on_mlflow_required(monkeypatch, capsys, isolated_mlflow):
    """``required: false`` degrades an unreachable store to an untracked run; a credential in
    the URI is a mistake to fix, not an outage: refused before the stage computes."""
    store = isolated_mlflow.removeprefix("sqlite:///")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"{isolated_mlflow}?timeout=5&token={SECRET}")
    config = MlflowParams(required=False)
    with pytest.raises(TrackingError, match="credentials"):
        runs.preflight(config, "tune")
    with (
        pytest.raises(TrackingError, match="credentials"),
        runs.stage_run(config, "tune", "tune"),
    ):
        pytest.fail("the block must not run")
    out = capsys.readouterr()
    assert SECRET not in out.out + out.err
    assert not Path(store).exists(), "nothing reached the store"


def test_a_stage_like_flow_records_a_harmless_query_exactly_and_no_secret(
    tmp_path, monkeypatch, capsys, isolated_mlflow
):
    """stage_run, log (with the tag a later stage looks for), log_children, and the plot
    stage's finding of that run by its tag and adding to it, against a store whose URI
    carries a harmless SQLite option."""
    uri = f"{isolated_mlflow}?timeout=30"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    config = MlflowParams(experiment="secrets")
    assert runs.preflight(config, "tune"), "?timeout= is a working SQLite option"
    with runs.stage_run(config, "tune", "tune 2 candidates") as run:
        run.log(params={"cv": 5}, metrics={"best_cv_accuracy": 0.9}, tags={"knnlab.key": "k1"})
        run.log_children(
            [
                {"name": "k=1", "params": {"n_neighbors": 1}, "metrics": {"accuracy": 0.8}},
                {"name": "k=3", "params": {"n_neighbors": 3}, "metrics": {"accuracy": 0.9}},
            ]
        )
    record = runs.find_tagged_run(config, "plot", "tune", "knnlab.key", "k1")
    assert record == run.record, "found by its tag"
    assert record.tracking_uri == uri, "the record keeps the URI, query included"

    figure = tmp_path / "figure.txt"
    figure.write_text("a figure")
    runs.log_artifacts_to(record, [figure], "figures")
    assert mlflow_store.list_artifacts(uri, record.run_id, "figures") == ["figures/figure.txt"]

    logged = mlflow_store.run_summary(uri, "secrets")
    assert sorted(r["name"] for r in logged) == ["k=1", "k=3", "tune 2 candidates"]
    assert {r["status"] for r in logged} == {"FINISHED"}
    tag_text = json.dumps([r["tags"] for r in logged])
    assert "sqlite:" not in tag_text and "timeout" not in tag_text, "no tag carries the URI"
    out = capsys.readouterr()
    assert "***" not in out.out + out.err, "nothing needed hiding"

    # The same flow with a secret added to that URI stops before anything is written.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"{uri}&password={SECRET}")
    with pytest.raises(TrackingError) as raised, runs.stage_run(config, "tune", "tune"):
        pytest.fail("the block must not run")
    assert "timeout=30&password=***" in str(raised.value)
    assert len(mlflow_store.run_summary(uri, "secrets")) == 3, "no run was added"


def test_a_run_record_with_a_secret_is_refused_when_used(tmp_path):
    record = runs.RunRecord(f"https://u:{SECRET}@mlflow.example", "1", "abc")
    with pytest.raises(TrackingError, match="credentials") as raised:
        runs.log_artifacts_to(record, [tmp_path / "x"], None)
    assert SECRET not in str(raised.value)
