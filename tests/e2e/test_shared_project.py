"""The copies of the shared reproduced project (tests/support/shared_project.py): each is a
project of its own (its MLflow store, its artifacts, its git repository), and
``copy_project`` refuses a copy that is not."""

from __future__ import annotations

import shutil

import pytest
import yaml

from knnlab.tracking.store import mlflow_client

from ..support.project import run, store
from ..support.shared_project import check_copy, copy_project, store_columns_naming

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def original(reproduced_iris):
    return reproduced_iris.root


@pytest.fixture(scope="module")
def copy(original, tmp_path_factory):
    return copy_project(original, tmp_path_factory.mktemp("copy"))


def _listing(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def test_the_copy_keeps_every_run_and_names_only_its_own_folder(original, copy):
    runs = store(copy)
    assert sorted(r["run_id"] for r in runs) == sorted(r["run_id"] for r in store(original))
    assert {r["tags"].get("knnlab.stage") for r in runs} >= {"tune", "evaluate"}
    assert all(r["artifact_uri"].startswith(f"{(copy / 'mlruns').as_uri()}/") for r in runs)
    # Where MLflow keeps absolute locations: each now names the copy, none the original.
    named = set(store_columns_naming(copy / "mlflow.db", copy))
    assert {"experiments.artifact_location", "runs.artifact_uri"} <= named, named
    assert "logged_models.artifact_location" in named, "evaluate logs its model"
    assert store_columns_naming(copy / "mlflow.db", original) == []


def test_a_run_logged_in_the_copy_lands_in_the_copy_only(original, copy):
    artifacts, runs = _listing(original / "mlruns"), len(store(original))
    client = mlflow_client(f"sqlite:///{copy / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("knnlab")
    run_id = client.create_run(experiment.experiment_id).info.run_id
    client.log_text(run_id, "probe", "probe.txt")
    client.set_terminated(run_id)
    probe = copy / "mlruns" / "knnlab" / run_id / "artifacts" / "probe.txt"
    assert probe.read_text() == "probe"
    assert _listing(original / "mlruns") == artifacts and len(store(original)) == runs


def test_the_copy_is_a_git_repository_of_its_own(original, copy):
    head = run(["git", "rev-parse", "HEAD"], original)
    assert run(["git", "rev-parse", "HEAD"], copy) == head, "the same commit"
    run(["git", "commit", "-q", "--allow-empty", "-m", "only in the copy"], copy)
    assert run(["git", "rev-parse", "HEAD"], original) == head
    assert run(["git", "status", "--porcelain"], original) == ""


def test_a_plain_copy_is_refused_for_its_store(original, tmp_path):
    plain = tmp_path / "plain"
    shutil.copytree(original, plain, symlinks=True)
    with pytest.raises(AssertionError, match=r"store still names .*runs\.artifact_uri"):
        check_copy(original, plain)


def _name_the_original(copy, original):
    (copy / "notes.txt").write_text(f"built in {original}\n")


def _link_into_the_original(copy, original):
    (copy / "data" / "input" / "table.csv").symlink_to(original / "params.yaml")


def _change_a_param(copy, original):
    params = yaml.safe_load((copy / "params.yaml").read_text())
    params["model"]["n_neighbors"] = 3
    (copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _add_an_untracked_file(copy, original):
    (copy / "stray.txt").write_text("not committed\n")


@pytest.mark.parametrize(
    "damage, refusal",
    [
        (_name_the_original, r"files of the copy .* name the original .*notes\.txt"),
        (_link_into_the_original, r"symlinks of the copy .*data/input/table\.csv"),
        (_change_a_param, r"dvc status in the copy"),
        (_add_an_untracked_file, r"git status in the copy"),
    ],
    ids=["file", "symlink", "dvc", "git"],
)
def test_copy_checks_refuse_a_copy_that_is_not_its_own(original, tmp_path, damage, refusal):
    copy = copy_project(original, tmp_path / "copy")
    damage(copy, original)
    with pytest.raises(AssertionError, match=refusal):
        check_copy(original, copy)
