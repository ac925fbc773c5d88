"""Copies of the project in temporary git repositories, and running commands in them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ..conftest import REPO_ROOT
from . import mlflow_store

PROJECT_FILES = [
    "dvc.yaml",
    "params.yaml",
    ".dvcignore",
    ".gitignore",
    ".dvc/config",
    ".dvc/plots/offline.html",
    "src",
    "data/input",
]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)  # the project's default store, unless extra names one
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.update(
        GIT_AUTHOR_NAME="knnlab tests",
        GIT_AUTHOR_EMAIL="tests@knnlab.invalid",
        GIT_COMMITTER_NAME="knnlab tests",
        GIT_COMMITTER_EMAIL="tests@knnlab.invalid",
    )
    env.update(extra or {})
    return env


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run ``cmd`` in ``cwd``; ``env`` adds to (or overrides) the environment, e.g. an
    ``MLFLOW_TRACKING_URI`` naming a server instead of the project's own store."""
    done = subprocess.run(cmd, cwd=cwd, env=_env(env), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def run_stdout(cmd: list[str], cwd: Path) -> str:
    """As :func:`run`, its standard output alone (for output a test parses)."""
    done = subprocess.run(cmd, cwd=cwd, env=_env(None), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def make_project(root: Path, **overrides) -> Path:
    """Copy the pipeline into a fresh git repository with params overridden per section."""
    for name in PROJECT_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    params = yaml.safe_load((root / "params.yaml").read_text())
    for section, values in overrides.items():
        params[section].update(values)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", "project"], root)
    return root


def reproduce(root: Path, **overrides) -> str:
    """``make_project``, then ``dvc repro`` and a commit of what it wrote, as a user would
    (dvc.lock, reports/); what ``dvc repro`` printed."""
    make_project(root, **overrides)
    output = run(["dvc", "repro"], root)
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", "repro"], root)
    return output


def stages_run(output: str) -> list[str]:
    """The stages ``dvc repro`` ran, in the pipeline's order. DVC may run audit anywhere
    after train and before evaluate (its order between independent stages differs from one
    checkout to another); after checking that, it is listed right after train's outputs
    (after exact when that ran, else after train)."""
    stages = [
        line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")
    ]
    if "audit" not in stages:
        return stages
    at = stages.index("audit")
    assert "train" not in stages[at:] and not {"evaluate", "plot"} & set(stages[:at]), stages
    stages.remove("audit")
    after = max((stages.index(s) + 1 for s in ("train", "exact") if s in stages), default=0)
    if after == 0:  # neither ran: before whatever follows audit in the pipeline
        after = next((i for i, s in enumerate(stages) if s in ("tune", "evaluate", "plot")), 0)
    return [*stages[:after], "audit", *stages[after:]]


def store(root: Path, experiment: str = "knnlab") -> list[dict]:
    """Every run in the project's default MLflow store."""
    return mlflow_store.run_summary(f"sqlite:///{root / 'mlflow.db'}", experiment)


SMALL_GRID = {
    "grid": {"n_neighbors": [1, 3, 5], "p": [1, 2], "weights": ["uniform"], "algorithm": ["brute"]},
    "cv": 3,
}


QUEUE_WAIT = 400  # seconds for a test's queued experiments; about 20 each here


def run_queue(root: Path, workers: int = 2, wait: float = QUEUE_WAIT) -> str:
    """``dvc queue start -j WORKERS`` in ``root``, waited for with a bound, its workers
    stopped after; returns the last ``dvc queue status``. The workers are detached: with
    its output captured, ``dvc queue start`` would be waited for until they exit, and a
    worker of DVC 3.67 that decides to shut down while a task still runs can stay idle for
    good after it. So: start, poll, then stop the workers."""
    subprocess.run(
        ["dvc", "queue", "start", "-j", str(workers)],
        cwd=root,
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
        check=True,
    )
    try:
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            status = run(["dvc", "queue", "status"], root)
            if "Queued" not in status and "Running" not in status:
                break
            time.sleep(1)
    finally:
        run(["dvc", "queue", "stop", "--kill"], root)
    return status
