"""End to end: a team sharing one DVC remote (a shared-filesystem path) and one git remote.

Teammate A reproduces, commits, `dvc push`es and `git push`es; a teammate's fresh clone
`dvc pull`s and its `dvc repro` runs nothing. A SQLite file on the share stands in for the
team's MLflow server: what matters here is which store a clone's stages look in.
docs/team-remote.md promises what these tests check.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ..support import mlflow_store
from ..support.project import SMALL_GRID, _env, make_project, stages_run, store

pytestmark = pytest.mark.slow

# What `dvc pull` brings: every DVC-cached output (reports/ are committed to git instead).
PULLED = ["data/raw", "data/split", "models", "tracking"]
UP_TO_DATE = "Data and pipelines are up to date."
PLOT_ONLY_MODULE = (
    "src/knnlab/pipeline/presentation/report.py"  # a dependency of plot and of no other stage
)


def _sh(cmd: list[str], cwd: Path, store_uri: str | None = None) -> subprocess.CompletedProcess:
    """Run ``cmd``; with ``store_uri``, the stages log to that MLflow store (the team's)."""
    env = _env()
    if store_uri:
        env["MLFLOW_TRACKING_URI"] = store_uri
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _ok(cmd: list[str], cwd: Path, store_uri: str | None = None) -> str:
    done = _sh(cmd, cwd, store_uri)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _fails(cmd: list[str], cwd: Path, store_uri: str | None = None) -> str:
    done = _sh(cmd, cwd, store_uri)
    assert done.returncode != 0, f"{' '.join(cmd)} succeeded:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@dataclass(frozen=True)
class Team:
    origin: Path  # the team's git remote (a bare repository)
    remote: Path  # the DVC remote on the share
    store_uri: str  # the team's MLflow store
    a: Path  # teammate A's working copy


@pytest.fixture(scope="module")
def team(tmp_path_factory) -> Team:
    """A: `dvc remote add -d` on the share (committed), repro, commit, dvc push, git push."""
    base = tmp_path_factory.mktemp("team")
    share = base / "share"
    team = Team(
        origin=base / "origin.git",
        remote=share / "knnlab-dvc",
        store_uri=f"sqlite:///{share / 'mlflow.db'}",
        a=base / "a",
    )
    share.mkdir()
    _ok(["git", "init", "-q", "--bare", "-b", "main", str(team.origin)], base)
    # stats.resamples: its minimum, to save seconds; this file tests the workflow, not intervals.
    make_project(team.a, data={"dataset": "iris"}, tune=SMALL_GRID, stats={"resamples": 200})
    _ok(["git", "remote", "add", "origin", str(team.origin)], team.a)
    _ok(["dvc", "remote", "add", "-d", "team", str(team.remote)], team.a)
    output = _ok(["dvc", "repro"], team.a, team.store_uri)
    assert stages_run(output) == [
        "params",
        "fetch",
        "split",
        "train",
        "exact",
        "audit",
        "tune",
        "evaluate",
        "plot",
    ]
    _ok(["git", "add", "-A"], team.a)
    _ok(["git", "commit", "-q", "-m", "repro"], team.a)
    _ok(["dvc", "push"], team.a)  # before `git push`: a pulled commit finds its outputs
    _ok(["git", "push", "-q", "origin", "main"], team.a)
    return team


def _clone_and_pull(team: Team, where: Path) -> Path:
    """A teammate's side: `git clone`, then `dvc pull` from the remote the project names."""
    _ok(["git", "clone", "-q", str(team.origin), str(where)], where.parent)
    output = _ok(["dvc", "pull"], where)
    for path in PULLED:
        assert (where / path).exists(), f"dvc pull did not bring {path}:\n{output}"
    return where


def _outputs(root: Path) -> dict[str, bytes]:
    """Every pipeline output, pulled or committed (reports/timings: seconds, local only)."""
    files = {}
    for top in [*PULLED, "reports"]:
        for path in sorted((root / top).rglob("*")):
            relative = path.relative_to(root).as_posix()
            if path.is_file() and not relative.startswith("reports/timings/"):
                files[relative] = path.read_bytes()
    return files


def _clean(root: Path) -> str:
    return _ok(["git", "status", "--porcelain", "--untracked-files=all"], root)


def _change_plot_only(root: Path) -> None:
    module = root / PLOT_ONLY_MODULE
    module.write_text(module.read_text() + "\n# a change only plot depends on\n")


def test_push_sends_the_cached_outputs_and_not_the_committed_reports(team):
    assert "Cache and remote 'team' are in sync." in _ok(["dvc", "status", "-c"], team.a)
    pushed = {p.parent.name + p.name for p in (team.remote / "files/md5").rglob("*") if p.is_file()}
    lock = yaml.safe_load((team.a / "dvc.lock").read_text())
    outs = {o["path"]: o["md5"] for s in lock["stages"].values() for o in s.get("outs", [])}
    for path in ("models/model.npz", "tracking/evaluate_run.json", "data/split"):
        assert outs[path] in pushed, f"{path} is DVC-cached: dvc push sends it"
    committed = {path: md5 for path, md5 in outs.items() if path.startswith("reports/")}
    assert committed and not set(committed.values()) & pushed, "cache: false is git's, not pushed"


def test_a_teammates_clone_pulls_and_reproduces_nothing(team, tmp_path):
    b = _clone_and_pull(team, tmp_path / "b")
    assert UP_TO_DATE in _ok(["dvc", "status"], b)
    assert stages_run(_ok(["dvc", "repro"], b)) == [], "everything came from the remote"
    assert _outputs(b) == _outputs(team.a), "the clone has A's outputs, byte for byte"
    assert _clean(b) == ""
    assert not (b / "mlflow.db").exists(), "nothing ran: the clone's own store is empty"


def test_a_changed_experiment_reaches_a_teammate_without_running_anything(team, tmp_path):
    """Teammate C runs k + 2 as an experiment, then commits it on a branch: both the
    experiment (`dvc exp push`) and the branch (`dvc push`, `git push`) reach new clones."""
    c = _clone_and_pull(team, tmp_path / "c")
    k = yaml.safe_load((c / "params.yaml").read_text())["model"]["n_neighbors"] + 2
    run = ["dvc", "exp", "run", "-n", "wider", "-S", f"model.n_neighbors={k}"]
    assert stages_run(_ok(run, c, team.store_uri)) == [
        "params",
        "train",
        "audit",
        "evaluate",
        "plot",
    ]
    assert "Pushed experiment wider" in _ok(["dvc", "exp", "push", "origin", "wider"], c)
    _ok(["git", "switch", "-q", "-c", "wider"], c)
    _ok(["git", "add", "-A"], c)
    _ok(["git", "commit", "-q", "-m", f"k = {k}"], c)
    _ok(["dvc", "push"], c)
    _ok(["git", "push", "-q", "origin", "wider"], c)

    b = _clone_and_pull(team, tmp_path / "b")  # on main, up to date
    _ok(["git", "fetch", "-q", "origin"], b)
    _ok(["git", "switch", "-q", "wider"], b)
    assert UP_TO_DATE not in _ok(["dvc", "status"], b), "a new commit, the old outputs"
    _ok(["dvc", "pull"], b)
    assert UP_TO_DATE in _ok(["dvc", "status"], b)
    assert stages_run(_ok(["dvc", "repro"], b)) == []
    assert _outputs(b) == _outputs(c)
    assert _clean(b) == ""

    e = tmp_path / "e"
    _ok(["git", "clone", "-q", str(team.origin), str(e)], tmp_path)
    _ok(["dvc", "exp", "pull", "origin", "wider"], e)  # the experiment and its outputs
    _ok(["dvc", "exp", "apply", "wider"], e)
    assert UP_TO_DATE in _ok(["dvc", "status"], e)
    assert stages_run(_ok(["dvc", "repro"], e)) == []
    assert _outputs(e) == _outputs(c)


def test_plot_in_a_clone_finds_the_evaluate_run_in_the_team_store(team, tmp_path):
    b = _clone_and_pull(team, tmp_path / "b")
    runs_before = len(mlflow_store.run_summary(team.store_uri, "knnlab"))
    _change_plot_only(b)
    output = _ok(["dvc", "repro"], b, team.store_uri)
    assert stages_run(output) == ["plot"], "A's evaluate run is in the store plot looks in"
    assert _outputs(b) == _outputs(team.a)
    assert len(mlflow_store.run_summary(team.store_uri, "knnlab")) == runs_before, "added to it"


def test_plot_in_a_clone_with_its_own_store_says_how_to_log_the_run_again(team, tmp_path):
    b = _clone_and_pull(team, tmp_path / "b")
    _change_plot_only(b)
    message = _fails(["dvc", "repro"], b)
    tag = json.loads((b / "tracking/evaluate_run.json").read_text())["run_tag_value"]
    assert f"no finished evaluate run tagged knnlab.evaluation_sha256 = {tag[:16]}" in message
    assert f"sqlite:///{b / 'mlflow.db'}" in message, "names the store it looked in"
    assert "`knnlab relog` logs the current outputs to it without recomputing" in message
    assert "`dvc repro --force --downstream evaluate` recomputes them" in message

    output = _ok(["dvc", "repro", "--force", "--downstream", "evaluate"], b)
    assert stages_run(output) == ["evaluate", "plot"]
    assert _outputs(b) == _outputs(team.a), "the same outputs, now logged in the clone's store"
    assert set(_clean(b).splitlines()) == {" M dvc.lock", f" M {PLOT_ONLY_MODULE}"}
    [evaluate] = [r for r in store(b) if r["tags"].get("knnlab.stage") == "evaluate"]
    artifacts = mlflow_store.list_artifacts(f"sqlite:///{b / 'mlflow.db'}", evaluate["run_id"])
    assert {"figures", "report.md"} <= set(artifacts)


def test_pull_from_a_wrong_path_or_no_remote_says_so(team, tmp_path):
    nowhere = tmp_path / "not-mounted" / "knnlab-dvc"
    c = tmp_path / "c"
    _ok(["git", "clone", "-q", str(team.origin), str(c)], tmp_path)
    _ok(["dvc", "remote", "modify", "--local", "team", "url", str(nowhere)], c)
    assert _clean(c) == "", ".dvc/config.local is this machine's: git ignores it"
    assert _ok(["dvc", "config", "remote.team.url"], c).strip() == str(nowhere), "--local wins"
    message = _fails(["dvc", "pull"], c)
    assert "Some of the cache files do not exist neither locally nor on remote" in message
    assert "Checkout failed for following targets" in message and "models/model.npz" in message
    assert str(nowhere / "files/md5") in _fails(["dvc", "pull", "-v"], c), "-v names the path"

    d = tmp_path / "d"  # a project that names no remote
    _ok(["git", "clone", "-q", str(team.origin), str(d)], tmp_path)
    _ok(["dvc", "remote", "remove", "team"], d)
    assert "No remote provided and no default remote set." in _fails(["dvc", "pull"], d)
    empty = tmp_path / "nobody-pushed-here"
    empty.mkdir()
    _ok(["dvc", "remote", "add", "--local", "-d", "team", str(empty)], d)
    assert "neither locally nor on remote" in _fails(["dvc", "pull"], d), "nothing pushed there"
    _ok(["dvc", "remote", "modify", "--local", "team", "url", str(team.remote)], d)
    _ok(["dvc", "pull"], d)
    assert UP_TO_DATE in _ok(["dvc", "status"], d)
