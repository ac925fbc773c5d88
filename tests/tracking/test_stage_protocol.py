"""The logging stages' protocol (:class:`knnlab.tracking.stage.LoggedStage`) against a real
SQLite MLflow store and real files: outputs move into place only after the run has closed
FINISHED; a failure, an interrupt or a kill before that leaves the previous outputs; a failed
move turns the run FAILED."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from knnlab.pipeline.io import files
from knnlab.pipeline.io.params import MlflowParams
from knnlab.tracking import runs
from knnlab.tracking.errors import TrackingError
from knnlab.tracking.stage import LoggedStage

from ..support import mlflow_store

EXPERIMENT = "protocol"
CONFIG = MlflowParams(experiment=EXPERIMENT)
TARGET = Path("reports/out.txt")
MARKER = Path("tracking/demo_run.json")
TAG = "knnlab.demo_sha256"

KILLED_STAGE = textwrap.dedent(
    f"""
    import os, signal
    from knnlab.pipeline.io import files
    from knnlab.pipeline.io.params import MlflowParams
    from knnlab.tracking.stage import LoggedStage

    stage = LoggedStage(MlflowParams(experiment="{EXPERIMENT}"), "demo", "{MARKER}")
    with stage.outputs() as outputs:
        files.write_text(outputs.staged("{TARGET}"), "new\\n")
        with stage.new_run("killed", "{TAG}", "k1"):
            os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer or a kill -9 would
    """
)


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder, the working directory, holding the previous output."""
    monkeypatch.chdir(tmp_path)
    files.write_text(TARGET, "old\n")
    return tmp_path


def _runs(uri: str) -> dict[str, dict]:
    return {r["name"]: r for r in mlflow_store.run_summary(uri, EXPERIMENT)}


def _staging_folders(root: Path) -> list[Path]:
    return list(root.glob(f"{files.STAGING_PREFIX}*"))


def test_outputs_are_committed_after_the_run_closes_finished(project, isolated_mlflow):
    stage = LoggedStage(CONFIG, "demo", MARKER)
    with stage.outputs() as outputs:
        files.write_text(outputs.staged(TARGET), "new\n")
        with stage.new_run("demo", TAG, "k1") as run:
            run.log(params={"k": 3}, metrics={"accuracy": 0.75})
            assert _runs(isolated_mlflow)["demo"]["status"] == "RUNNING"
        assert _runs(isolated_mlflow)["demo"]["status"] == "FINISHED", "closed first"
        assert TARGET.read_text() == "old\n", "then committed: not yet"
        assert not MARKER.exists()

    assert TARGET.read_text() == "new\n"
    assert json.loads(MARKER.read_text()) == runs.logged_marker("demo", TAG, "k1")
    logged = _runs(isolated_mlflow)["demo"]
    assert logged["status"] == "FINISHED"
    assert logged["params"] == {"k": "3"} and logged["metrics"] == {"accuracy": 0.75}
    assert logged["tags"][TAG] == "k1", "the tag the marker names, by which a stage finds it"
    assert logged["tags"]["knnlab.stage"] == "demo"
    assert not _staging_folders(project)


@pytest.mark.parametrize(
    ("error", "status"), [(RuntimeError, "FAILED"), (KeyboardInterrupt, "KILLED")]
)
def test_a_failure_or_an_interrupt_while_logging_leaves_the_previous_outputs(
    project, isolated_mlflow, error, status
):
    stage = LoggedStage(CONFIG, "demo", MARKER)
    with pytest.raises(error, match="while logging"), stage.outputs() as outputs:
        files.write_text(outputs.staged(TARGET), "new\n")
        with stage.new_run("demo", TAG, "k1") as run:
            run.log(params={"k": 3})
            raise error("while logging")

    assert TARGET.read_text() == "old\n"
    assert not MARKER.exists()
    assert _runs(isolated_mlflow)["demo"]["status"] == status
    assert not _staging_folders(project)


def test_a_failure_before_the_run_opens_logs_nothing(project, isolated_mlflow):
    stage = LoggedStage(CONFIG, "demo", MARKER)
    with pytest.raises(ValueError, match="staged twice"), stage.outputs() as outputs:
        files.write_text(outputs.staged(TARGET), "new\n")
        outputs.staged(TARGET)
    assert TARGET.read_text() == "old\n"
    assert not MARKER.exists()
    assert _runs(isolated_mlflow) == {}
    assert not _staging_folders(project)


def test_a_failed_commit_turns_the_finished_run_failed(project, isolated_mlflow):
    files.write_text("blocked", "a file where an output's folder should be\n")
    stage = LoggedStage(CONFIG, "demo", MARKER)
    with pytest.raises(FileExistsError), stage.outputs() as outputs:
        files.write_text(outputs.staged("blocked/out.txt"), "moved first, and fails\n")
        files.write_text(outputs.staged(TARGET), "new\n")
        with stage.new_run("demo", TAG, "k1") as run:
            run.log(params={"k": 3})

    logged = _runs(isolated_mlflow)["demo"]
    assert logged["status"] == "FAILED"
    assert logged["tags"]["knnlab.ended"].startswith("outputs not written: ")
    assert TARGET.read_text() == "old\n"
    assert not MARKER.exists()
    assert not _staging_folders(project)


def test_a_killed_stage_leaves_the_previous_outputs_and_the_next_stage_cleans_up(
    project, isolated_mlflow
):
    done = subprocess.run(
        [sys.executable, "-c", KILLED_STAGE],
        cwd=project,
        capture_output=True,
        text=True,
        env=os.environ,
    )
    assert done.returncode == -9, done.stderr
    assert TARGET.read_text() == "old\n"
    assert not MARKER.exists()
    assert _staging_folders(project), "nothing in a killed process removes its staging folder"
    assert _runs(isolated_mlflow)["killed"]["status"] == "RUNNING"

    stage = LoggedStage(CONFIG, "demo", MARKER)
    with stage.outputs() as outputs:
        files.write_text(outputs.staged(TARGET), "new\n")
        with stage.new_run("next", TAG, "k2"):
            pass

    assert not _staging_folders(project)
    assert TARGET.read_text() == "new\n"
    logged = _runs(isolated_mlflow)
    assert logged["killed"]["status"] == "KILLED"
    assert logged["next"]["status"] == "FINISHED"


def _producer_run(uri: str) -> dict:
    producer = LoggedStage(CONFIG, "demo", MARKER)
    with producer.outputs() as outputs:
        files.write_text(outputs.staged(TARGET), "new\n")
        with producer.new_run("demo", TAG, "k1"):
            pass
    return _runs(uri)["demo"]


def test_a_stage_adds_to_the_run_of_an_earlier_stage(project, isolated_mlflow):
    producer = _producer_run(isolated_mlflow)
    figure, marker = Path("reports/figure.txt"), Path("tracking/plot_run.json")
    stage = LoggedStage(CONFIG, "plot", marker, add_to=("demo", TAG, "k1"))
    with stage.outputs() as outputs:
        staged = outputs.staged(figure)
        files.write_text(staged, "drawn\n")
        stage.log_artifacts([staged], "figures")
        assert not figure.exists(), "committed after logging"

    assert figure.read_text() == "drawn\n"
    assert json.loads(marker.read_text()) == runs.logged_marker("plot", TAG, "k1")
    run_id = producer["run_id"]
    assert mlflow_store.list_artifacts(isolated_mlflow, run_id, "figures") == ["figures/figure.txt"]
    assert set(_runs(isolated_mlflow)) == {"demo"}, "no run of its own"


def test_a_failure_while_adding_to_a_run_leaves_it_finished_and_the_outputs(
    project, isolated_mlflow
):
    _producer_run(isolated_mlflow)
    marker = Path("tracking/plot_run.json")
    stage = LoggedStage(CONFIG, "plot", marker, add_to=("demo", TAG, "k1"))
    with pytest.raises(RuntimeError, match="while drawing"), stage.outputs() as outputs:
        files.write_text(outputs.staged(TARGET), "drawn over\n")
        raise RuntimeError("while drawing")

    assert TARGET.read_text() == "new\n", "the producer's output, not the failed stage's"
    assert not marker.exists()
    assert _runs(isolated_mlflow)["demo"]["status"] == "FINISHED"


def test_a_missing_run_to_add_to_fails_before_the_work(project, isolated_mlflow):
    with pytest.raises(TrackingError, match=f"no finished demo run tagged {TAG}"):
        LoggedStage(CONFIG, "plot", MARKER, add_to=("demo", TAG, "absent"))


def test_a_stage_that_stages_outputs_without_logging_them_fails(project, isolated_mlflow):
    stage = LoggedStage(CONFIG, "demo", MARKER)
    with pytest.raises(RuntimeError, match="without logging them"), stage.outputs() as outputs:
        files.write_text(outputs.staged(TARGET), "new\n")
    assert TARGET.read_text() == "old\n"
