"""Shared fixtures. MLflow always points at a temporary SQLite store: the repository's own
``mlflow.db`` is never touched by a test."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def isolated_mlflow(tmp_path_factory, monkeypatch):
    store = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    uri = f"sqlite:///{store}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_STAGE", raising=False)
    return uri


@pytest.fixture(scope="session", autouse=True)
def repo_store_untouched():
    """Fail the session if any test changed the repository's own MLflow store."""
    db = REPO_ROOT / "mlflow.db"
    before = db.stat().st_mtime_ns if db.exists() else None
    yield
    after = db.stat().st_mtime_ns if db.exists() else None
    assert before == after, f"a test modified {db}; tests must use a temporary store"


@pytest.fixture
def rng(request):
    """A generator seeded from the test's id: each test gets its own stream, the same on
    every run. ``KNNLAB_TEST_SEED`` shifts every stream, to check no test depends on one."""
    shift = int(os.environ.get("KNNLAB_TEST_SEED", "0"))
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()) + shift)
