"""Progress of long work, said where the user reads it: a bar on a terminal, a line at least
every :data:`HEARTBEAT_SECONDS` in a log.

DVC runs stages with stderr not a terminal (a pipe, a file, CI), where a bar draws nothing
useful; there a background thread prints one line per heartbeat, whether or not a step
finished since the last (a search of 60,000 training rows can take longer than a
heartbeat)::

    knnlab: tune, 54 candidates: 12/45 searches (27 %), 1m32s elapsed, about 4m05s left

and a last line when the work is done. Work that ends within one heartbeat prints nothing.
``KNNLAB_PROGRESS=0`` silences both; ``KNNLAB_PROGRESS=lines`` prints lines on a terminal
too; ``KNNLAB_PROGRESS_SECONDS`` sets the heartbeat.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import TextIO

# A line at least this often; under the 15 s a user waits before wondering if it hangs.
HEARTBEAT_SECONDS = 10.0
PROGRESS_ENV = "KNNLAB_PROGRESS"
HEARTBEAT_ENV = "KNNLAB_PROGRESS_SECONDS"  # another heartbeat (tests: a fraction of a second)


def heartbeat_seconds() -> float:
    """:data:`HEARTBEAT_SECONDS`, or ``KNNLAB_PROGRESS_SECONDS`` when it is a positive
    number (anything else is ignored: progress is not worth failing a stage for)."""
    try:
        seconds = float(os.environ.get(HEARTBEAT_ENV, ""))
    except ValueError:
        return HEARTBEAT_SECONDS
    return seconds if 0 < seconds < float("inf") else HEARTBEAT_SECONDS


# The progresses under way, outermost first: only the innermost speaks, so a stage's own
# heartbeat ("evaluate: 1m20s elapsed") gives way to its steps' ("12/45 searches").
_ACTIVE: list[Progress] = []
_ACTIVE_LOCK = threading.Lock()
# When any of them last wrote a line: the next is due a heartbeat after it, whoever speaks,
# so a step starting inside a stage does not restart the wait (18 s went by once).
_LAST_LINE = [0.0]


def duration(seconds: float) -> str:
    """7s, 1m05s, 2h03m."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """``with Progress(total, "tune, 54 candidates", "search") as progress: ...
    progress.update()`` once per step done.

    total : int, the steps; 1 for work that is one step (logging a model): the lines then
        say only how long it has run; 0: silent.
    description : what is being done, as the line starts.
    unit : one step's name (``"search"`` -> "12/45 searches").
    stream : where to write (default: stderr, looked up when the work starts).
    interval : seconds between lines when not on a terminal (default:
        :func:`heartbeat_seconds`).
    """

    def __init__(
        self,
        total: int,
        description: str,
        unit: str = "step",
        *,
        stream: TextIO | None = None,
        interval: float | None = None,
    ):
        self.total = max(int(total), 0)
        self.description = description
        self.unit = unit
        self.stream = stream
        self.interval = interval if interval is not None else heartbeat_seconds()
        self.done = 0
        self._start = 0.0
        self._bar = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lines = 0

    def _mode(self, stream: TextIO | None) -> str:
        wanted = os.environ.get(PROGRESS_ENV, "").strip().lower()
        if stream is None or wanted in ("0", "off", "false", "no"):  # None: stderr closed
            return "off"
        if wanted == "lines":
            return "lines"
        is_terminal = getattr(stream, "isatty", lambda: False)()
        return "bar" if is_terminal else "lines"

    def __enter__(self) -> Progress:
        stream = self.stream if self.stream is not None else sys.stderr
        self.stream = stream
        self._start = time.monotonic()
        mode = self._mode(stream) if self.total else "off"  # nothing to do: nothing to say
        if mode == "bar" and self.total > 1:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=self.description, unit=self.unit, file=stream)
        elif mode != "off":
            with _ACTIVE_LOCK:
                _ACTIVE.append(self)
            self._thread = threading.Thread(target=self._beat, daemon=True, name="progress")
            self._thread.start()
        return self

    def update(self, steps: int = 1) -> None:
        self.done += steps
        if self._bar is not None:
            self._bar.update(steps)

    def __exit__(self, kind, error, traceback) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            with _ACTIVE_LOCK:
                if self in _ACTIVE:
                    _ACTIVE.remove(self)
            if kind is None and self._lines:  # said it was working: say it finished
                self._write(f"done in {duration(time.monotonic() - self._start)}")
        if self._bar is not None:
            self._bar.close()

    def _beat(self) -> None:
        # Wakes often, speaks once a heartbeat has passed since its last line, and only
        # when no progress nested in it is under way.
        while not self._stop.wait(min(1.0, self.interval / 4)):
            if self.due(time.monotonic()):
                self._write(self.line())

    def due(self, now: float) -> bool:
        """Whether this progress speaks at ``now``: it is the innermost under way, and a
        heartbeat has passed since the last line anyone wrote (or since the outermost work
        began, before any line)."""
        with _ACTIVE_LOCK:
            if not _ACTIVE or _ACTIVE[-1] is not self:
                return False
            since = max(_LAST_LINE[0], _ACTIVE[0]._start)
        return now - since >= self.interval

    def line(self) -> str:
        """12/45 searches (27 %), 1m32s elapsed, about 4m05s left."""
        elapsed = time.monotonic() - self._start
        if self.total <= 1:
            return f"{duration(elapsed)} elapsed"
        done, total = min(self.done, self.total), self.total
        units = self.unit if total == 1 else self.unit + ("es" if self.unit.endswith("h") else "s")
        text = f"{done}/{total} {units} ({100 * done // total} %), {duration(elapsed)} elapsed"
        if 0 < done < total:
            text += f", about {duration(elapsed / done * (total - done))} left"
        elif done == 0:
            text += ", time left not known until the first is done"
        return text

    def _write(self, text: str) -> None:
        self._lines += 1
        _LAST_LINE[0] = time.monotonic()
        try:
            self.stream.write(f"knnlab: {self.description}: {text}\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stream: progress is not worth dying
            self._stop.set()
