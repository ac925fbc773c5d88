"""Runs whose process was killed: a later stage closes them, and only them (real MLflow
store, real processes)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap

import pytest

from knnlab.pipeline.io.params import MlflowParams
from knnlab.tracking import runs
from knnlab.tracking.errors import TrackingError

from ..support import mlflow_store

KILLED_STAGE = textwrap.dedent(
    """
    import os, signal
    from knnlab.tracking import runs
    from knnlab.pipeline.io.params import MlflowParams

    with runs.stage_run(MlflowParams(experiment="orphans"), "tune", "tune") as run:
        run.log_children([{"name": "k=1", "params": {"k": 1}, "metrics": {"accuracy": 0.5}}])
        print(run.record.run_id, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer or a kill -9 would
    """
)


def _runs(uri: str) -> dict[str, dict]:
    return {r["run_id"]: r for r in mlflow_store.run_summary(uri, "orphans")}


def test_the_next_stage_closes_the_run_of_a_killed_stage(isolated_mlflow):
    uri = isolated_mlflow
    done = subprocess.run(
        [sys.executable, "-c", KILLED_STAGE], capture_output=True, text=True, env=os.environ
    )
    assert done.returncode == -9, done.stderr
    killed = done.stdout.strip()
    before = _runs(uri)
    assert before[killed]["status"] == "RUNNING", "nothing in a killed process can close it"
    (child,) = [r for r in before.values() if r["run_id"] != killed]
    assert child["status"] == "FINISHED"

    with runs.stage_run(MlflowParams(experiment="orphans"), "evaluate", "evaluate"):
        pass

    after = _runs(uri)
    assert after[killed]["status"] == "KILLED"
    assert "killed" in after[killed]["tags"]["knnlab.ended"]
    assert after[child["run_id"]]["status"] == "FINISHED", "finished runs are left alone"
    (evaluate,) = [r for r in after.values() if r["name"] == "evaluate"]
    assert evaluate["status"] == "FINISHED"
    assert evaluate["tags"]["knnlab.pid"] == str(os.getpid())


def test_runs_of_live_processes_and_other_hosts_stay_running(isolated_mlflow):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=isolated_mlflow)
    experiment_id = client.create_experiment("orphans")
    host = socket.gethostname()
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = runs.process_tags() | {
            "knnlab.pid": str(sleeper.pid),
            "knnlab.pid_start": runs._process_start(sleeper.pid) or "",
        }
        cases = {
            "live process": live,
            "another host": {"knnlab.host": f"not-{host}", "knnlab.pid": "999999999"},
            "no process tags": {},
            # This process's PID with another start time: the PID was reused, the run's
            # own process is gone.
            "reused pid": runs.process_tags() | {"knnlab.pid_start": "1"},
        }
        ids = {
            name: client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
            for name, tags in cases.items()
        }
        closed = runs.close_orphaned_runs(client, experiment_id)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert closed == [ids["reused pid"]]
    status = {r["name"]: r["status"] for r in _runs(isolated_mlflow).values()}
    assert status == {
        "live process": "RUNNING",
        "another host": "RUNNING",
        "no process tags": "RUNNING",
        "reused pid": "KILLED",
    }


def test_a_later_stage_finds_the_newest_finished_run_by_its_tag(isolated_mlflow, capsys):
    """How plot finds the evaluate run of the outputs it draws (run ids are not DVC outputs):
    by tag, across experiments; only FINISHED runs of that stage; newest first."""
    tag = "knnlab.evaluation_sha256"
    ids = []
    for experiment, stage, value in [
        ("first", "evaluate", "aaa"),
        ("renamed", "evaluate", "aaa"),  # the same evaluation again, in another experiment
        ("renamed", "tune", "bbb"),
        ("renamed", "evaluate", "ccc"),
    ]:
        with runs.stage_run(MlflowParams(experiment=experiment), stage, "r") as run:
            run.log(tags={tag: value})
        ids.append(run.record.run_id)
    with (
        pytest.raises(RuntimeError),
        runs.stage_run(MlflowParams(experiment="first"), "evaluate", "failed") as run,
    ):
        run.log(tags={tag: "ccc"})
        raise RuntimeError("a stage that failed after tagging its run")
    config = MlflowParams(experiment="elsewhere")
    assert runs.find_tagged_run(config, "plot", "evaluate", tag, "aaa").run_id == ids[1]
    assert runs.find_tagged_run(config, "plot", "evaluate", tag, "ccc").run_id == ids[3]

    with pytest.raises(TrackingError) as raised:
        runs.find_tagged_run(config, "plot", "evaluate", tag, "bbb")  # a tune run's tag
    message = str(raised.value)
    assert f"no finished evaluate run tagged {tag} = bbb" in message
    assert isolated_mlflow in message and "dvc repro --force --downstream evaluate" in message

    lenient = MlflowParams(experiment="elsewhere", required=False)
    assert runs.find_tagged_run(lenient, "plot", "evaluate", tag, "zzz") is None
    assert "knnlab plot: warning: no finished evaluate run" in capsys.readouterr().err
