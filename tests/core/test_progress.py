"""Progress of long work (knnlab.progress): lines with done/total and the time left when
stderr is not a terminal, a bar when it is, the innermost work speaking, silence for work
shorter than a heartbeat. No assertion depends on how fast anything runs: tests wait for
the lines they expect, with a generous bound."""

from __future__ import annotations

import io
import re
import time

import pytest

from knnlab.progress import Progress, duration, heartbeat_seconds

WAIT = 60.0  # seconds a test waits for a line before failing: only a hung thread takes it


def _wait_for(buffer: io.StringIO, pattern: str) -> str:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        found = re.search(pattern, buffer.getvalue(), re.MULTILINE)
        if found:
            return found.group(0)
        time.sleep(0.02)
    raise AssertionError(f"no line matching {pattern!r} in:\n{buffer.getvalue()}")


@pytest.fixture(autouse=True)
def _no_overrides(monkeypatch):
    monkeypatch.delenv("KNNLAB_PROGRESS", raising=False)
    monkeypatch.delenv("KNNLAB_PROGRESS_SECONDS", raising=False)


def test_a_log_gets_lines_with_done_total_and_time_left_then_done():
    buffer = io.StringIO()
    with Progress(4, "tune, 8 candidates", "search", stream=buffer, interval=0.05) as progress:
        _wait_for(buffer, r"^knnlab: tune, 8 candidates: 0/4 searches \(0 %\), \d+s elapsed, "
                  r"time left not known until the first is done$")  # fmt: skip
        progress.update()
        line = _wait_for(buffer, r"^knnlab: tune, 8 candidates: 1/4 searches \(25 %\).*$")
        assert re.search(r", \d+s elapsed, about \d+s left$", line), line
        progress.update(3)
        _wait_for(buffer, r"^knnlab: tune, 8 candidates: 4/4 searches \(100 %\)")
    assert re.search(r"^knnlab: tune, 8 candidates: done in \d+s$", buffer.getvalue(), re.M)


def test_time_left_is_the_pace_so_far():
    progress = Progress(100, "bootstrap", "resample")
    progress._start = time.monotonic() - 100.0
    progress.done = 25
    assert progress.line().endswith("25/100 resamples (25 %), 1m40s elapsed, about 5m00s left")


def test_one_step_work_says_how_long_it_has_run():
    buffer = io.StringIO()
    with Progress(1, "logging the model to MLflow", stream=buffer, interval=0.05):
        _wait_for(buffer, r"^knnlab: logging the model to MLflow: \d+s elapsed$")


def test_only_the_innermost_work_speaks():
    buffer = io.StringIO()
    with Progress(1, "evaluate", stream=buffer, interval=0.05):
        _wait_for(buffer, r"^knnlab: evaluate: \d+s elapsed$")
        with Progress(3, "bootstrap", "resample", stream=buffer, interval=0.05):
            start = len(buffer.getvalue())
            _wait_for(buffer, r"^knnlab: bootstrap: 0/3 resamples.*\n(.|\n)*"
                      r"^knnlab: bootstrap: 0/3 resamples")  # fmt: skip
            during = buffer.getvalue()[start:]
        assert "knnlab: evaluate:" not in during, during


def test_work_shorter_than_a_heartbeat_prints_nothing():
    buffer = io.StringIO()
    with Progress(10, "quick", stream=buffer, interval=3600) as progress:
        progress.update(10)
    assert buffer.getvalue() == ""


def test_progress_off_prints_nothing(monkeypatch):
    monkeypatch.setenv("KNNLAB_PROGRESS", "0")
    buffer = io.StringIO()
    with Progress(2, "quiet", stream=buffer, interval=0.01):
        time.sleep(0.2)
    assert buffer.getvalue() == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_not_lines():
    terminal = _Terminal()
    with Progress(3, "tune, 3 candidates", "search", stream=terminal, interval=0.01) as bar:
        bar.update(3)
        time.sleep(0.1)
    shown = terminal.getvalue()
    assert "tune, 3 candidates" in shown and "3/3" in shown, shown
    assert "knnlab: " not in shown, "no log lines on a terminal"


def test_the_heartbeat_can_be_set_and_a_bad_setting_is_ignored(monkeypatch):
    assert heartbeat_seconds() == 10.0
    monkeypatch.setenv("KNNLAB_PROGRESS_SECONDS", "0.5")
    assert heartbeat_seconds() == 0.5
    for bad in ("soon", "-1", "0", "inf", "nan"):
        monkeypatch.setenv("KNNLAB_PROGRESS_SECONDS", bad)
        assert heartbeat_seconds() == 10.0, bad


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0.4, "0s"), (7, "7s"), (65, "1m05s"), (3600 + 180, "1h03m")]
)
def test_durations_read_as_a_person_says_them(seconds, shown):
    assert duration(seconds) == shown


def test_a_step_starting_inside_a_stage_speaks_a_heartbeat_after_the_last_line(monkeypatch):
    """A stage's heartbeat wrote a line 8 s ago; its search starts now: the search's first
    line is due 2 s from now (a heartbeat after the last line), not 10 s (18 s of silence
    before this rule). Clock values are given, not waited for."""
    from knnlab import progress as module

    outer = Progress(1, "tune", stream=io.StringIO(), interval=10)
    inner = Progress(4, "tune, 8 candidates", "search", stream=io.StringIO(), interval=10)
    outer._start, inner._start = 100.0, 130.0
    monkeypatch.setattr(module, "_ACTIVE", [outer, inner])
    monkeypatch.setattr(module, "_LAST_LINE", [122.0])
    assert not outer.due(140.0), "the innermost speaks"
    assert not inner.due(131.9)
    assert inner.due(132.0)
    monkeypatch.setattr(module, "_ACTIVE", [outer])
    monkeypatch.setattr(module, "_LAST_LINE", [0.0])
    assert not outer.due(109.9) and outer.due(110.0), "the first line a heartbeat after start"


def test_a_closed_stderr_silences_progress_without_failing(monkeypatch):
    monkeypatch.setattr("sys.stderr", None)  # what Python gives a process started with 2>&-
    with Progress(3, "quiet", interval=0.01) as progress:
        progress.update(3)
        time.sleep(0.1)
