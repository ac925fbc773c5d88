"""Promises under failure, tested with real failures: a stage that cannot put its outputs in
place, parallel experiments, two clones on one store, determinism, credentials. The fault
rows of tests/support/fault_injection.py are tests/e2e/test_faults.py."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from ..support import fault_injection, mlflow_store
from ..support.project import run, run_queue, stages_run, store
from ..support.shared_project import copy_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(reproduced_iris, tmp_path_factory):
    """iris, reproduced and committed: this module's copy of the worker's (conftest.py)."""
    return copy_project(reproduced_iris.root, tmp_path_factory.mktemp("robust"))


def test_failing_stage_marks_its_run_failed(project):
    metrics = project / "reports" / "metrics.json"
    if subprocess.run(["chattr", "+i", str(metrics)], capture_output=True).returncode:
        pytest.skip("chattr +i (immutable file) is not available here")
    try:
        before = {r["run_id"] for r in store(project)}
        done = subprocess.run(
            ["python", "-m", "knnlab", "evaluate"],
            cwd=project,
            env=fault_injection._env({"MLFLOW_TRACKING_URI": f"sqlite:///{project}/mlflow.db"}),
            capture_output=True,
            text=True,
        )
    finally:
        subprocess.run(["chattr", "-i", str(metrics)], capture_output=True)
    assert done.returncode == 2 and "Operation not permitted" in done.stderr, done.stderr
    new = [r for r in store(project) if r["run_id"] not in before]
    assert [r["status"] for r in new] == ["FAILED"], "a failed stage's run says FAILED"


def _digests(root, patterns) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for pattern in patterns
        for p in sorted(root.glob(pattern))
    }


def test_queued_experiments_in_parallel_all_land_in_mlflow(project):
    before = {r["run_id"] for r in store(project)}
    # Three on two workers: both run at once, and one worker then takes the third.
    for k in (2, 4, 6):
        run(["dvc", "exp", "run", "--queue", "-S", f"model.n_neighbors={k}"], project)
    status = run_queue(project, workers=2)
    assert status.count("Success") == 3, status
    new = [r for r in store(project) if r["run_id"] not in before]
    evaluate = sorted(
        (int(r["params"]["n_neighbors"]), r["status"], bool(r["tags"].get("knnlab.dvc_exp_name")))
        for r in new
        if r["tags"].get("knnlab.stage") == "evaluate"
    )
    assert evaluate == [(k, "FINISHED", True) for k in (2, 4, 6)], evaluate
    assert not [r for r in new if r["tags"].get("knnlab.stage") == "tune"], "tune did not re-run"


# What the same params must reproduce byte for byte, wherever and however often they run.
DETERMINISTIC = [
    "reports/metrics.json",
    "reports/uncertainty.json",
    "reports/vs_exact.json",
    "reports/tune/*",
    "reports/plots/*",
]


def _not_cloned(folder: str, names: list[str]) -> set[str]:
    """What a clone of the project does not have: its MLflow store, and DVC's scratch folder
    ``.dvc/tmp`` (git-ignored), where the queue's workers of an earlier test may still be
    adding and removing files while the copy is made."""
    skipped = set(shutil.ignore_patterns("mlflow.db*", "mlruns")(folder, names))
    return skipped | ({"tmp"} if os.path.basename(folder) == ".dvc" else set())


def test_two_clones_log_to_one_store_at_once_and_reproduce_the_same_bytes(tmp_path, project):
    shared = tmp_path / "shared.db"
    committed = _digests(project, DETERMINISTIC)
    clones = []
    for name in ("a", "b"):
        clone = tmp_path / name
        shutil.copytree(project, clone, ignore=_not_cloned)
        clones.append(clone)

    def repro(root):
        return subprocess.run(
            ["dvc", "repro", "--force"],
            cwd=root,
            env=fault_injection._env({"MLFLOW_TRACKING_URI": f"sqlite:///{shared}"}),
            capture_output=True,
            text=True,
        )

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(repro, clones))
    for done in results:
        assert done.returncode == 0, done.stderr[-2000:]
        assert "database is locked" not in done.stderr
        assert stages_run(done.stdout) == [
            "params",
            *("fetch", "split", "train", "exact", "audit", "tune", "evaluate", "plot"),
        ]
    logged = mlflow_store.run_summary(f"sqlite:///{shared}", "knnlab")
    stages = sorted(
        r["tags"]["knnlab.stage"] for r in logged if "mlflow.parentRunId" not in r["tags"]
    )
    assert stages == ["evaluate", "evaluate", "tune", "tune"]
    assert all(r["status"] == "FINISHED" for r in logged)
    # Every stage forced to run again, in two other folders at once: the same bytes.
    assert len(committed) >= 7
    for clone in clones:
        assert _digests(clone, DETERMINISTIC) == committed, clone.name


def test_credentials_from_the_environment_never_reach_runs_or_reports(project):
    secret = "s3cr3t-token-value"
    done = subprocess.run(
        ["dvc", "repro", "--force", "evaluate"],
        cwd=project,
        env=fault_injection._env(
            {
                "MLFLOW_TRACKING_USERNAME": "alice",
                "MLFLOW_TRACKING_PASSWORD": secret,
                "MLFLOW_TRACKING_TOKEN": secret,
            }
        ),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert secret not in done.stdout + done.stderr, "not in logs"
    for run_ in store(project):
        values = [*run_["params"].values(), *run_["tags"].values()]
        assert not any(secret in str(v) for v in values), f"leaked into run {run_['name']}"
    for path in (project / "reports").rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), f"leaked into {path}"
