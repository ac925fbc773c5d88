"""The ``dvc`` commands of the README and docs/, as written (issue 29): the README's
experiment sequence runs here line by line on a copy of the reproduced iris project, and
must run the experiments it says (k = 7 alone, then p = 1 alone: ``dvc exp run -S`` leaves
its value in params.yaml, which once made the second run k = 7 and p = 1 together). Every
other ``dvc`` command of the docs is run here, named with the test that runs it, or listed
with why it is checked by hand: a new command in the docs fails this module until it is."""

from __future__ import annotations

import re
import subprocess

import pytest

from ..conftest import REPO_ROOT
from ..support.project import _env, run, run_queue, store
from ..support.shared_project import copy_project

pytestmark = pytest.mark.slow

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
QUEUE_WAIT = 600  # seconds for the queued experiment; about 20 here

# Quick on the iris project: run here, as written, one after another.
RUN_HERE = ["dvc repro", "dvc metrics diff", "dvc plots show"]
# docs/approximate.md's experiments: run here as one block, in order.
APPROXIMATE_SEQUENCE = ("approximate.md", "An experiment")
# Run by other tests, which need what they set up (a remote, a server, a cluster).
ELSEWHERE = {
    "dvc remote add -d team /mnt/shared/knnlab-dvc": "tests/e2e/test_remote.py (a temp path)",
    "dvc remote add --local -d team /Volumes/shared/knnlab-dvc": "tests/e2e/test_remote.py",
    "dvc push": "tests/e2e/test_remote.py",
    "dvc exp run -n wider -S model.n_neighbors=7": "tests/e2e/test_remote.py",
    "dvc exp push origin wider": "tests/e2e/test_remote.py",
    "dvc exp pull origin wider": "tests/e2e/test_remote.py",
    "dvc exp apply wider": "tests/e2e/test_remote.py",
    "dvc remote add -d team ssh://dvc.example.org/srv/knnlab-dvc": (
        "tests/e2e/test_remote_ssh.py (a local SSH server)"
    ),
    "dvc remote modify --local team user alice": "tests/e2e/test_remote_ssh.py",
    "dvc remote modify --local team keyfile ~/.ssh/id_ed25519": "tests/e2e/test_remote_ssh.py",
    "MLFLOW_TRACKING_URI=http://127.0.0.1:5000 dvc repro": (
        "tests/tracking/test_server_postgres.py (its own port)"
    ),
    "DASK_SCHEDULER_ADDRESS=tcp://<scheduler-host>:8786 dvc repro": (
        "tests/core/test_distributed.py (a local Dask cluster)"
    ),
}
# Checked by hand, with why not here.
BY_HAND = {
    "MLFLOW_TRACKING_URI=https://mlflow.example.org dvc repro": "a server behind TLS",
    "dvc exp run -S compute.scheduler=tcp://<scheduler-host>:8786 -S 'tune.grid.p=[1,2,3,4]'": (
        "a Dask cluster; the same code path as DASK_SCHEDULER_ADDRESS"
    ),
    "DASK_SCHEDULER_ADDRESS=tcp://<scheduler-host>:8786 dvc repro -f -s tune": (
        "a Dask cluster; -f -s checked here on tune without one"
    ),
    "dvc exp run -S data.dataset=fashion_mnist -S split.test_size=10000": (
        "Fashion-MNIST, 12 minutes on 2 cores"
    ),
    "dvc exp run -S split.test_size=0.2 -S split.seed=1337 -S model.n_neighbors=20 "
    "-S model.algorithm=kd_tree -S 'tune.grid.weights=[uniform]'": "digits, 1 minute",
    "dvc exp run -S data.dataset=moons -S model.n_neighbors=15": "30 s; its figures by hand",
    'dvc exp run -S data.dataset=iris -S \'data.features=["sepal length (cm)","sepal width '
    "(cm)\"]' -S model.n_neighbors=15 -S model.weights=distance": "30 s; its figures by hand",
    "dvc exp run -S data.dataset=mnist_784 -S data.max_rows=10000 -S data.positive_class=5": (
        "downloads MNIST from OpenML: no network here"
    ),
}


def doc_commands() -> dict[str, list[str]]:
    """{command: [files]} of every ``dvc`` command in a shell block of the docs, comments
    dropped, backslash continuations joined."""
    found: dict[str, list[str]] = {}
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for block in re.findall(r"```(?:sh|bash)?\n(.*?)```", text, re.S):
            joined = re.sub(r"\\\n\s*", " ", block)
            for line in joined.splitlines():
                code = re.split(r"\s+#", line)[0].strip()
                code = re.sub(r"^\w+:\s+(?=\w+=)", "", code)  # "pipeline:  VAR=... dvc"
                for part in code.split("&&"):
                    part = re.sub(r"\s+", " ", part).strip()
                    if re.search(r"(^|\s)dvc\s", part):
                        found.setdefault(part, []).append(doc.name)
    return found


README_SEQUENCE = "Compare experiments"


def readme_sequence(doc: str = "README.md", heading: str = README_SEQUENCE) -> list[str]:
    """The first shell block under ``## heading`` of ``doc`` (the README, or a page of
    docs/), line by line, comments dropped."""
    path = REPO_ROOT / doc if doc == "README.md" else REPO_ROOT / "docs" / doc
    section = path.read_text(encoding="utf-8").split(f"## {heading}")[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [re.split(r"\s+#", line)[0].strip() for line in block.splitlines() if line.strip()]


def _evaluate_runs(project) -> list[tuple[int, int]]:
    return sorted(
        (int(r["params"]["n_neighbors"]), int(r["params"]["p"]))
        for r in store(project)
        if r["tags"].get("knnlab.stage") == "evaluate" and r["tags"].get("knnlab.dvc_exp_name")
    )


def test_the_readme_sequence_runs_each_experiment_from_the_committed_params(
    reproduced_iris, tmp_path_factory
):
    project = copy_project(reproduced_iris.root, tmp_path_factory.mktemp("readme"))
    run(["git", "branch", "-M", "main"], project)  # `knnlab report --base main`
    lines = readme_sequence()
    assert lines[0] == "source .venv/bin/activate", "the environment is on PATH here"
    for line in lines[1:]:
        if line.startswith("dvc queue start"):
            assert line == "dvc queue start -j 2", "run as written"
            status = run_queue(project, workers=2, wait=QUEUE_WAIT)
            assert "Failed" not in status, status
            continue
        done = subprocess.run(
            ["bash", "-c", line], cwd=project, env=_env(), capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, f"{line}:\n{done.stdout}\n{done.stderr}"
        if line.startswith("knnlab report --base main"):
            assert "## Changes against `main`" in done.stdout
    # k = 7 alone, then p = 1 alone (k back at the committed 5), each logged.
    assert _evaluate_runs(project) == [(5, 1), (7, 2)]
    shown = run(["dvc", "exp", "show", "--md", "--drop", ".*", "--keep", "^model\\."], project)
    assert shown.count("| 7 ") >= 1 and "| 1 " in shown, shown


def test_the_quick_docs_commands_run_as_written(reproduced_iris, tmp_path_factory):
    project = copy_project(reproduced_iris.root, tmp_path_factory.mktemp("docs"))
    outputs = {}
    for command in RUN_HERE:
        done = subprocess.run(
            ["bash", "-c", command], cwd=project, env=_env(), capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
        outputs[command] = done.stdout
    # The approximate experiments, each from the committed params, as the page says.
    for line in readme_sequence(*APPROXIMATE_SEQUENCE):
        done = subprocess.run(
            ["bash", "-c", line], cwd=project, env=_env(), capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, f"{line}:\n{done.stdout}\n{done.stderr}"
    shown = done.stdout  # the page's last line: dvc exp show
    assert "hnsw" in shown and "ivf" in shown and "16" in shown, shown


def test_every_docs_command_is_run_somewhere_or_checked_by_hand():
    blocks = readme_sequence() + readme_sequence(*APPROXIMATE_SEQUENCE)
    readme = {line for line in blocks if re.search(r"(^|\s)dvc\s", line)}
    covered = readme | set(RUN_HERE) | set(ELSEWHERE) | set(BY_HAND)
    unaccounted = {
        command: where for command, where in doc_commands().items() if command not in covered
    }
    assert not unaccounted, (
        "dvc commands in the docs that no test runs and no one checked by hand: "
        f"{unaccounted}; run them in a test, or list them in BY_HAND with why"
    )
    stale = (set(RUN_HERE) | set(ELSEWHERE) | set(BY_HAND)) - set(doc_commands())
    assert not stale, f"listed here but no longer in the docs: {sorted(stale)}"
