"""Never stale, never half-written, tested with real DVC, real edits and real SIGKILLs.

- An edit to code a stage runs, or to the data file it reads, makes `dvc status` name the
  stage, and `dvc repro` re-runs it; an edit to where runs are logged re-runs nothing.
- A typo anywhere in params.yaml stops every `dvc repro` target.
- A stage killed or failing while it logs to MLflow leaves every output and the run record
  as they were, byte for byte (a SIGKILL in the middle of tune:
  tests/support/fault_injection.py).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from ..support.project import _env, make_project, run, stages_run, store
from ..support.shared_project import copy_project

pytestmark = pytest.mark.slow

OUTPUTS = ("data", "models", "reports", "tracking")


def digests(root: Path) -> dict[str, str]:
    """SHA-256 of every pipeline output file."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for top in OUTPUTS
        for p in sorted((root / top).rglob("*"))
        if p.is_file()
    }


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["dvc", *args], cwd=root, env=_env(), capture_output=True, text=True)


def status(root: Path) -> set[str]:
    """The stages `dvc status` reports changed."""
    done = dvc(root, "status", "--json")
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout or "{}"))


def set_params(root: Path, **sections) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in sections.items():
        params.setdefault(section, {}).update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def project(reproduced_iris, tmp_path_factory):
    """iris, reproduced and committed: this module's copy of the worker's (conftest.py)."""
    return copy_project(reproduced_iris.root, tmp_path_factory.mktemp("integrity"))


@pytest.fixture
def clean(project):
    """The project, restored to its committed state (and up to date) after the test."""
    yield project
    run(["git", "checkout", "--", "."], project)
    run(["dvc", "checkout", "--force"], project)  # tracking/, data/, models/ from the cache
    run(["dvc", "repro"], project)  # the params stage, if params.yaml was touched
    assert not status(project), "the project is back to its committed state"


@pytest.mark.parametrize(
    "module, stages",
    [
        ("estimators.py", {"train", "audit", "tune", "evaluate", "plot"}),  # scaling, the tree path
        ("_kernels.py", {"split", "train", "exact", "audit", "tune", "evaluate", "plot"}),  # search
        ("pipeline/presentation/figures.py", {"plot"}),
        ("pipeline/analysis/evaluation.py", {"evaluate", "plot"}),
        (
            "pipeline/data/dataset.py",
            {"fetch", "split", "train", "exact", "audit", "tune", "evaluate", "plot"},
        ),
        (
            "backends/hnsw.py",
            {"train", "audit", "tune", "evaluate", "plot"},
        ),  # not the exact reference
    ],
)
def test_a_code_edit_marks_exactly_the_stages_that_run_it(clean, module, stages):
    path = clean / "src" / "knnlab" / module
    path.write_text(path.read_text() + "\n# an edit\n")
    assert status(clean) == stages


def test_renaming_the_experiment_reruns_nothing_but_the_params_check(clean):
    set_params(clean, mlflow={"experiment": "renamed"})
    assert status(clean) == {"params"}
    assert stages_run(run(["dvc", "repro"], clean)) == ["params"], "no grid search"


@pytest.mark.parametrize(
    "sections, key",
    [
        ({"data": {"max_row": 100}}, "data.max_row"),  # a typo of data.max_rows
        ({"modle": {"n_neighbors": 3}}, "modle"),  # a stray top-level section
    ],
)
def test_a_typo_anywhere_in_params_stops_every_target(clean, sections, key):
    set_params(clean, **sections)
    for target in ("train", "plot"):
        done = dvc(clean, "repro", target)
        assert done.returncode != 0, f"dvc repro {target} accepted a typo"
        assert f"unknown key {key!r}" in done.stdout + done.stderr, done.stderr[-2000:]
    assert "params" in status(clean), "dvc status shows params.yaml changed"


def test_editing_the_data_file_reruns_fetch(tmp_path):
    table = "a,b,y\n" + "".join(f"{i},{i % 7},{'xy'[i % 2]}\n" for i in range(40))
    root = make_project(
        tmp_path,
        data={"dataset": "file", "path": "data/input/table.csv", "label_column": "y"},
    )
    (root / "data" / "input" / "table.csv").write_text(table)
    run(["dvc", "repro", "split"], root)
    assert not status(root) & {"params", "fetch", "split"}
    (root / "data" / "input" / "table.csv").write_text(table + "100,3,x\n101,4,y\n")
    assert {"fetch"} <= status(root), "the edited table makes fetch changed"
    assert stages_run(run(["dvc", "repro", "split"], root)) == ["fetch", "split"]
    meta = json.loads((root / "data" / "raw" / "meta.json").read_text())
    assert meta["n_samples"] == 42, "the new rows are used"


def test_sigkill_while_evaluate_logs_keeps_outputs_and_record(clean):
    before = digests(clean)
    runs_before = {r["run_id"] for r in store(clean)}
    # Holding the store's lock stops evaluate after it has computed and staged everything,
    # inside its logging; the SIGKILL lands there.
    log = clean / "evaluate.log"
    with open(clean / "mlflow.db.lock", "a") as lock, log.open("w") as stderr:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.Popen(
            ["python", "-m", "knnlab", "evaluate"],
            cwd=clean,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
        deadline = time.monotonic() + 300
        staged = []
        while time.monotonic() < deadline and not staged and proc.poll() is None:
            staged = list(clean.glob(".knnlab-staging.*/reports/metrics.json"))
            time.sleep(0.2)
        assert staged, f"evaluate staged its outputs (exit {proc.poll()}): {log.read_text()}"
        time.sleep(1)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.unlink()
    assert digests(clean) == before, "metrics, predictions and the run record are the old ones"
    # The next logging stage cleans up after the killed one.
    run(["python", "-m", "knnlab", "evaluate"], clean)
    assert not list(clean.glob(".knnlab-staging.*")), "the killed stage's staging is removed"
    new = [r for r in store(clean) if r["run_id"] not in runs_before]
    assert all(r["status"] in ("FINISHED", "KILLED") for r in new), [r["status"] for r in new]
    marker = json.loads((clean / "tracking" / "evaluate_run.json").read_text())
    finished = [r for r in new if r["tags"].get(marker["run_tag"]) == marker["run_tag_value"]]
    assert [r["status"] for r in finished] == ["FINISHED"], "the marker's tag names the new run"


def test_a_logging_error_leaves_outputs_and_record(clean):
    before = digests(clean)
    runs_before = {r["run_id"] for r in store(clean)}
    artifacts = clean / "mlruns" / "knnlab"  # the experiment's artifact folder
    if subprocess.run(["chattr", "+i", str(artifacts)], capture_output=True).returncode:
        pytest.skip("chattr +i (immutable folder) is not available here")
    try:
        done = subprocess.run(
            ["python", "-m", "knnlab", "evaluate"],
            cwd=clean,
            env=_env(),
            capture_output=True,
            text=True,
        )
    finally:
        subprocess.run(["chattr", "-i", str(artifacts)], capture_output=True)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert digests(clean) == before, "nothing replaced by a stage whose logging failed"
    new = [r for r in store(clean) if r["run_id"] not in runs_before]
    assert [r["status"] for r in new] == ["FAILED"], "its run says FAILED"
