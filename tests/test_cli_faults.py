"""The command line's answer to faults outside any one stage: a terminal that cannot show
a character, a port out of range, Ctrl-C and SIGTERM. Real processes, no mocks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from knnlab.estimators import KNNClassifier
from knnlab.pipeline.io.model_io import save_model

from .support.fault_injection import default_sigint


def _knnlab(*args, env=None, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "knnlab", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        **kwargs,
    )


@pytest.mark.parametrize("encoding", ["latin-1", "ascii"])
def test_characters_a_terminal_cannot_show_are_written_as_ascii(encoding):
    child = (
        "from knnlab.cli import safe_streams; import sys; safe_streams(); "
        "print('\\u2212' + '0.0044 \\u00b1 0.01 \\u2192 \\u25b2 \\u2026 \\u6f22'); "
        "print('\\u2212', file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", child],
        capture_output=True,
        env={**os.environ, "PYTHONIOENCODING": encoding},
    )
    assert done.returncode == 0, done.stderr
    plus_minus = "\u00b1" if encoding == "latin-1" else "+/-"  # Latin-1 has it
    assert done.stdout.decode(encoding) == f"-0.0044 {plus_minus} 0.01 -> ^ ... ?\n"
    assert done.stderr.decode(encoding) == "-\n"


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "runs:/0123/model", "--port", "99999"],
        ["server", "--data", "unused", "--port", "99999"],
        ["server", "--data", "unused", "--pg-port", "-1"],
    ],
    ids=["serve", "server", "pg-port"],
)
def test_a_port_out_of_range_is_one_line_not_a_traceback(args):
    done = _knnlab(*args)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"knnlab {args[0]}: error: argument {args[-2]}: expected a port from 1 to 65535, got "
        f"{args[-1]} (see knnlab {args[0]} --help)"
    ]


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 4)), np.repeat([0, 1], 20)
    path = tmp_path_factory.mktemp("model") / "model.npz"
    save_model(path, KNNClassifier(3).fit(X, y))
    return path


@pytest.mark.parametrize(
    ("sent", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_a_signal_ends_a_command_with_one_line_and_the_shell_exit_code(model_file, sent, code):
    """predict waits on its stdin, which stays open: the signal lands while it waits."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "knnlab", "predict", "--model", str(model_file), "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_sigint,  # as a terminal gives it, even to a suite run in the background
    )
    try:
        # Wait until it is reading stdin (sleeping in read), not still importing.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = _wchan(proc.pid)
            if state in ("wait_woken", "pipe_read", "pipe_wait", "do_select", "ep_poll") or (
                state and "read" in state
            ):
                break
            time.sleep(0.1)
        proc.send_signal(sent)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines() == [
        f"knnlab predict: interrupted ({sent.name}); stopped before finishing, so the outputs "
        "of its last complete run are kept"
    ]


def _wchan(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/wchan") as wchan:
            return wchan.read().strip()
    except OSError:
        return None


@pytest.mark.parametrize("sent", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_during_a_store_write_lands_when_the_write_ends(sent):
    """A signal inside the block is held back, and acted on (as the handler in place before
    would have: KeyboardInterrupt, or the command line's Terminated) once the block ends."""
    child = (
        "import os, signal; from knnlab import cli; from knnlab.tracking.store import "
        "interrupts_deferred\n"
        "signal.signal(signal.SIGTERM, cli._raise_interrupted)\n"
        "try:\n"
        "    with interrupts_deferred():\n"
        f"        os.kill(os.getpid(), {int(sent)})\n"
        "        print('write finished', flush=True)\n"
        "    print('not reached', flush=True)\n"
        "except KeyboardInterrupt as stop:\n"
        "    print('then', type(stop).__name__, flush=True)\n"
        "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, preexec_fn=default_sigint
    )
    assert done.returncode == 0, done.stderr
    raised = "KeyboardInterrupt" if sent == signal.SIGINT else "Terminated"
    assert done.stdout.splitlines() == ["write finished", f"then {raised}", "True"]


@pytest.mark.parametrize(
    "error",
    [
        # matplotlib's native code, interrupted
        "ValueError('Invalid affine transformation matrix')",
        # a numba kernel interrupted mid-search (seen in evaluate on Fashion-MNIST)
        "SystemError('CPUDispatcher(approx_candidates_minkowski) returned a result with "
        "an exception set')",
    ],
)
def test_an_interrupt_a_library_turns_into_its_own_error_is_still_an_interrupt(error):
    """A library interrupted in native code may raise its own error instead of the
    KeyboardInterrupt: the command still says it was interrupted, exits 130, and the
    process ends with that code (not killed by the signal on its way out)."""
    child = (
        "import os, signal, sys; from knnlab import cli\n"
        "def dispatch(args):\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        signal.pthread_sigmask(signal.SIG_BLOCK, [])  # a bytecode boundary\n"
        "    except KeyboardInterrupt:\n"
        f"        raise {error} from None\n"
        "cli._dispatch = dispatch\n"
        "sys.argv = ['knnlab', 'plot']\n"
        "cli.run()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", child], capture_output=True, text=True, preexec_fn=default_sigint
    )
    assert done.returncode == 130, done.stderr
    assert done.stderr == (
        "knnlab plot: interrupted (SIGINT); stopped before finishing, so the outputs of its "
        "last complete run are kept\n"
    )
