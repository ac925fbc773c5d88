"""The SQLite store lock: held around each write only, a waiter says so and gives up after a
bounded time, and a long grid lets other stages in (real store, real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from knnlab.pipeline.io.params import MlflowParams, ParamsError, parse_params
from knnlab.tracking import runs, store

from ..support import mlflow_store

# Holds the store lock as the evaluate stage would, until the file argv[2] appears.
HOLDER = textwrap.dedent(
    """
    import os, sys, time
    from knnlab.tracking import store
    lock = store.StoreLock(sys.argv[1], "evaluate", 60)
    with lock.held():
        print("held", flush=True)
        deadline = time.monotonic() + 120
        while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
            time.sleep(0.05)
    """
)

# A stage: opens a run (waiting for the lock), logs, closes; exit code 3 on TrackingError.
STAGE = textwrap.dedent(
    """
    import os, sys, time
    import mlflow
    from knnlab.tracking import runs
    from knnlab.pipeline.io.params import MlflowParams
    go = sys.argv[1]
    while go != "-" and not os.path.exists(go):
        time.sleep(0.02)
    print("calling", file=sys.stderr, flush=True)
    try:
        with runs.stage_run(MlflowParams(experiment="locks"), "tune", "other") as run:
            run.log(params={"a": 1}, metrics={"b": 2.0})
    except runs.TrackingError as error:
        print("error:", error, flush=True)
        sys.exit(3)
    print("done", run.record.run_id, flush=True)
    """
)

# A tune stage logging many nested runs; creates argv[1] just before it starts on them.
GRID = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from knnlab.tracking import runs
    from knnlab.pipeline.io.params import MlflowParams
    n = int(sys.argv[2])
    children = [
        {"name": f"k={i}", "params": {"n_neighbors": i}, "metrics": {"accuracy": i / n}}
        for i in range(1, n + 1)
    ]
    with runs.stage_run(MlflowParams(experiment="locks"), "tune", "grid") as run:
        Path(sys.argv[1]).touch()
        run.log_children(children)
    print("done", run.record.run_id, flush=True)
    """
)


class Lines:
    """A stream's lines as they arrive, each with the (monotonic) time it arrived."""

    def __init__(self, stream):
        self.lines: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait_for(self, text: str, timeout: float = 120) -> float:
        """When the first line containing ``text`` arrived; fails after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, line in self.lines:
                if text in line:
                    return at
            time.sleep(0.02)
        pytest.fail(f"no line with {text!r} within {timeout} s; got:\n{self.text()}")

    def text(self) -> str:
        self._thread.join(timeout=0)
        return "\n".join(line for _, line in self.lines)


def _start(code: str, *args: str, **env: str) -> tuple[subprocess.Popen, Lines, Lines]:
    process = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    return process, Lines(process.stdout), Lines(process.stderr)


def _lock_file(uri: str) -> Path:
    return Path(uri.removeprefix("sqlite:///") + ".lock")


@pytest.fixture
def holder(isolated_mlflow, tmp_path):
    """Another process holding the store lock; ``release`` lets it go."""
    release = tmp_path / "release"
    process, out, _ = _start(HOLDER, isolated_mlflow, str(release))
    out.wait_for("held", timeout=60)
    yield process, release
    release.touch()
    try:
        process.wait(timeout=30)
    finally:
        process.kill()


def test_a_waiter_says_so_within_5_s_and_gives_up_with_a_clear_error(isolated_mlflow, holder):
    held_by, _ = holder
    waiter, out, err = _start(STAGE, "-", KNNLAB_LOCK_TIMEOUT="2")
    assert waiter.wait(timeout=120) == 3, out.text() + err.text()
    called = err.wait_for("calling")
    waiting = err.wait_for("waiting for the MLflow store lock")
    assert waiting - called < 5, f"the wait was announced after {waiting - called:.1f} s"
    notice = next(line for _, line in err.lines if "waiting for" in line)
    lock = str(_lock_file(isolated_mlflow))
    assert lock in notice and f"pid {held_by.pid}" in notice and "stage evaluate" in notice
    assert "KNNLAB_LOCK_TIMEOUT" in notice, notice
    error = out.text()
    assert "gave up after 2 s waiting for the MLflow store lock" in error, error
    assert lock in error and f"pid {held_by.pid}" in error and "mlflow.lock_timeout" in error


def test_a_waiter_goes_on_once_the_holder_lets_go(isolated_mlflow, holder):
    _, release = holder
    waiter, out, err = _start(STAGE, "-")
    called = err.wait_for("calling")
    assert err.wait_for("waiting for the MLflow store lock") - called < 5
    release.touch()
    assert waiter.wait(timeout=120) == 0, out.text() + err.text()
    assert "got the MLflow store lock after" in err.text()
    (run,) = mlflow_store.run_summary(isolated_mlflow, "locks")
    assert run["status"] == "FINISHED" and run["params"] == {"a": "1"}


def test_a_lock_timeout_with_mlflow_not_required_leaves_the_stage_untracked(
    isolated_mlflow, holder, monkeypatch, capsys
):
    monkeypatch.setenv("KNNLAB_LOCK_TIMEOUT", "1")
    config = MlflowParams(experiment="locks", required=False)
    with runs.stage_run(config, "tune", "tune") as run:
        run.log(params={"a": 1})
    assert isinstance(run, runs.UntrackedRun)
    assert "gave up after 1 s" in capsys.readouterr().err


def test_the_lock_is_not_held_while_the_stage_computes(isolated_mlflow):
    take = "import fcntl, sys; fcntl.flock(open(sys.argv[1], 'a'), fcntl.LOCK_EX | fcntl.LOCK_NB)"
    lock = str(_lock_file(isolated_mlflow))
    with runs.stage_run(MlflowParams(experiment="locks"), "tune", "tune") as run:
        run.log(params={"a": 1})
        free = subprocess.run([sys.executable, "-c", take, lock], capture_output=True, text=True)
        assert free.returncode == 0, f"another process could not take the lock: {free.stderr}"
        store_lock = store.StoreLock(isolated_mlflow, "tune", 5)
        with store_lock.held(), store_lock.held():  # re-entrant within a process
            busy = subprocess.run([sys.executable, "-c", take, lock], capture_output=True)
            assert busy.returncode != 0, "held, the lock keeps other processes out"
            assert f"pid {os.getpid()}" in store_lock.holder()
        assert store_lock.holder() == "", "a released lock names no holder"


def test_a_long_grid_lets_another_stage_in(isolated_mlflow, tmp_path):
    """While one process logs a large grid, another's whole stage (open, log, close) gets
    through: the lock is let go between nested runs, not held for the whole grid."""
    import mlflow

    with runs.stage_run(MlflowParams(experiment="locks"), "prepare", "prepare"):
        pass  # the store exists, its tables made: neither process below pays for that
    go = tmp_path / "go"
    other, other_out, other_err = _start(STAGE, str(go))
    grid, grid_out, grid_err = _start(GRID, str(go), "200")
    assert other.wait(timeout=300) == 0, other_out.text() + other_err.text()
    assert grid.wait(timeout=600) == 0, grid_out.text() + grid_err.text()
    other_id = other_out.text().split()[-1]
    grid_id = grid_out.text().split()[-1]

    client = mlflow.MlflowClient(isolated_mlflow)
    children = [
        r
        for r in client.search_runs(
            [client.get_experiment_by_name("locks").experiment_id], max_results=1000
        )
        if r.data.tags.get("mlflow.parentRunId") == grid_id
    ]
    assert len(children) == 200 and {r.info.status for r in children} == {"FINISHED"}
    other_end = client.get_run(other_id).info.end_time
    last_child = max(r.info.end_time for r in children)
    assert other_end < last_child, "the other stage had to wait for the whole grid"


def test_nested_runs_keep_their_content_and_order(isolated_mlflow):
    children = [
        {
            "name": f"k={k} p=2 uniform brute",
            "params": {"n_neighbors": k, "p": 2, "weights": "uniform", "algorithm": "brute"},
            "metrics": {
                "mean_test_accuracy": k / 100,
                "rank_test_accuracy": k,
                "nan": float("nan"),
            },
            "tags": {"fold_seed": 7} if k == 1 else None,
        }
        for k in range(1, 31)
    ]
    with runs.stage_run(MlflowParams(experiment="nested"), "tune", "tune") as run:
        ids = run.log_children(children)
    by_id = {r["run_id"]: r for r in mlflow_store.run_summary(isolated_mlflow, "nested")}
    for child, run_id in zip(children, ids, strict=True):
        logged = by_id[run_id]
        assert logged["name"] == child["name"] and logged["status"] == "FINISHED"
        assert logged["params"] == {k: str(v) for k, v in child["params"].items()}
        assert logged["metrics"] == {
            k: float(v) for k, v in child["metrics"].items() if k != "nan"
        }, "NaN metrics are skipped"
        tags = logged["tags"]
        assert tags["mlflow.parentRunId"] == run.record.run_id
        assert tags["mlflow.runName"] == child["name"]
        assert tags["knnlab.pid"] == str(os.getpid())
        assert tags.get("fold_seed") == ("7" if child["tags"] else None)
    assert by_id[run.record.run_id]["status"] == "FINISHED"


def test_a_failing_stage_ends_its_run_failed(isolated_mlflow):
    config = MlflowParams(experiment="fail")
    with pytest.raises(RuntimeError, match="boom"), runs.stage_run(config, "tune", "t") as run:
        run.log(params={"a": 1})
        raise RuntimeError("boom")
    (logged,) = mlflow_store.run_summary(isolated_mlflow, "fail")
    assert logged["status"] == "FAILED"


@pytest.mark.parametrize("value", [0, -5, "600", True, float("inf"), float("nan"), None])
def test_a_lock_timeout_that_is_not_a_positive_number_is_refused(value):
    with pytest.raises(
        ParamsError, match=r"mlflow\.lock_timeout = .* positive number of seconds, at most 86400"
    ):
        parse_params({"mlflow": {"lock_timeout": value}})


def test_the_lock_timeout_comes_from_params_unless_the_environment_says(monkeypatch):
    assert parse_params({}).mlflow.lock_timeout == 600, "the default"
    config = parse_params({"mlflow": {"lock_timeout": 30}}).mlflow
    assert store.lock_timeout(config) == 30.0
    monkeypatch.setenv("KNNLAB_LOCK_TIMEOUT", "2.5")
    assert store.lock_timeout(config) == 2.5


@pytest.mark.parametrize("value", ["abc", "0", "-1", "inf", "nan", "86401"])
def test_a_bad_lock_timeout_in_the_environment_stops_the_stage_first(value, monkeypatch):
    monkeypatch.setenv("KNNLAB_LOCK_TIMEOUT", value)
    with pytest.raises(ParamsError, match=f"KNNLAB_LOCK_TIMEOUT='{value}' is not allowed"):
        runs.preflight(MlflowParams(required=False), "tune")
    with (
        pytest.raises(ParamsError, match="KNNLAB_LOCK_TIMEOUT"),
        runs.stage_run(MlflowParams(), "tune", "tune"),
    ):
        pytest.fail("the block must not run")
