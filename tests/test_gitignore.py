"""Folders the tools generate in the working tree are ignored, so `git status` stays clean
after the quickstart and the usual commands."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from .conftest import REPO_ROOT


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
@pytest.mark.parametrize(
    "path",
    [
        "dvc_plots/index.html",  # dvc plots show / diff
        "mlflow.db",
        "mlruns/0/meta.yaml",
        "tracking/evaluate_run.json",
        "reports/timings/timings.json",  # seconds: logged to MLflow, not committed
        "data/raw/dataset.parquet",
        "models/model.npz",
        ".reports.tmp",  # an atomic write a killed stage left behind
    ],
)
def test_generated_files_are_ignored(path):
    done = subprocess.run(
        ["git", "check-ignore", "--no-index", "-q", path], cwd=REPO_ROOT, check=False
    )
    assert done.returncode == 0, f"{path} is not ignored by .gitignore"
