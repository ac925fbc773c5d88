"""End to end: a user's table (``data.dataset: file``) through the real ``dvc repro``.

A table the pipeline cannot use correctly must stop at fetch, with one line naming the
column or value and exit code 2, before any stage logs to MLflow; one it can use must go
through every stage with its labels intact.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ..support.project import SMALL_GRID, _env, make_project, stages_run, store

pytestmark = pytest.mark.slow


def table_project(root, name: str, label_column: str = "y"):
    """A project whose params point at ``name`` (written by the test) in its root."""
    return make_project(
        root,
        data={"dataset": "file", "path": name, "label_column": label_column},
        tune=SMALL_GRID,
    )


def blobs(n: int = 40, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Two well-separated classes 1 and 2 in three features: any kNN gets them right."""
    rng = np.random.default_rng(seed)
    y = np.repeat([1, 2], n // 2)
    X = rng.normal(size=(n, 3)) + 4.0 * (y[:, None] - 1)
    return pd.DataFrame(X, columns=["a", "b", "c"]), y


def repro(root) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["dvc", "repro"], cwd=root, env=_env(), capture_output=True, text=True, timeout=600
    )


def write_duplicate_label_csv(path):
    features, y = blobs()
    rows = features.assign(y=y).to_numpy()
    lines = ["a,b,c,y,y"] + [f"{a},{b},{c},{label:g},{label:g}" for a, b, c, label in rows]
    path.write_text("\n".join(lines) + "\n")


def write_feature_named_label(path):
    features, y = blobs()
    features.assign(label=y, y=y).to_csv(path, index=False)  # "label" is the answer too


def write_colliding_text_labels(path):
    features, y = blobs()
    # As text "1" and "01" are two classes; read as numbers they would merge into one.
    labels = np.where(np.arange(len(y)) % 2, "01", "1")
    pq.write_table(pa.table({**features, "y": pa.array(labels)}), path)


def write_fractional_labels(path):
    features, y = blobs()
    features.assign(y=y / 2).to_csv(path, index=False)  # 0.5 and 1.0: a measured quantity


@pytest.mark.parametrize(
    ("name", "write", "message"),
    [
        ("t.csv", write_duplicate_label_csv, "column 'y' appears more than once"),
        ("t.csv", write_feature_named_label, "has a feature column named 'label'"),
        ("t.parquet", write_colliding_text_labels, "label '1' in row 0 and label '01' in row 1"),
        ("t.csv", write_fractional_labels, "label '0.5' in row 0 is not a whole number"),
    ],
)
def test_an_unusable_table_stops_at_fetch_before_mlflow(tmp_path, name, write, message):
    root = table_project(tmp_path, name)
    write(root / name)
    done = repro(root)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert f"knnlab fetch: error: data.path = '{name}': {message}" in output, output
    assert "python -m knnlab fetch, exited with 2" in output, output
    errors = [line for line in done.stderr.splitlines() if "knnlab fetch: error" in line]
    assert len(errors) == 1, f"one line, no traceback: {done.stderr}"
    assert "Traceback" not in output
    assert stages_run(output)[-1] == "fetch", "nothing ran after fetch"
    assert not (root / "data/raw").exists(), "fetch wrote nothing"
    assert store(root) == [], "no MLflow run was created"


def test_a_fifo_at_data_path_fails_instead_of_blocking(tmp_path):
    """Reading a fifo waits for a writer: neither DVC (which hashes data.path, a dependency
    of fetch) nor fetch may open one. The params stage refuses it first."""
    root = table_project(tmp_path, "pipe.csv")
    os.mkfifo(root / "pipe.csv")
    done = subprocess.run(
        ["dvc", "repro"], cwd=root, env=_env(), capture_output=True, text=True, timeout=120
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "data.path = 'pipe.csv' is not allowed" in output, output
    assert "not a pipe, socket or device" in output, output
    assert "exited with 2" in output, output
    assert store(root) == []


def test_numeric_text_labels_go_through_every_stage_as_integers(tmp_path):
    """Labels stored as the text "1" and "2" in parquet once failed only at plot, after
    three stages had logged to MLflow: fetch now makes them the integers 1 and 2."""
    root = table_project(tmp_path, "t.parquet")
    features, y = blobs()
    pq.write_table(pa.table({**features, "y": pa.array(y.astype(str))}), root / "t.parquet")
    done = repro(root)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert stages_run(output)[-1] == "plot", output
    raw = pd.read_parquet(root / "data/raw/dataset.parquet")
    assert raw["label"].dtype == np.int64 and raw["label"].tolist() == y.tolist()
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert metrics["configured"]["accuracy"] == 1.0, "two far-apart blobs"
    predictions = pd.read_csv(root / "reports/plots/predictions.csv")
    assert {c for c in predictions.columns if c.startswith("proba_")} == {"proba_1", "proba_2"}
    assert set(predictions["actual"]) == {1, 2}
    assert "## Is it a 2?" in (root / "reports/report.md").read_text()
    stages = [r["tags"].get("knnlab.stage") for r in store(root)]
    assert stages.count("evaluate") == 1 and stages.count("tune") == 1, stages
