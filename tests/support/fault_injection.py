"""Fault injection: every fault knnlab promises to handle, tried for real on a copy of the
project. Each fault is a row: how to inject it, the exit code it must end with, what its
message must (and must not) say. A row's outcome is the exit code, the message, and whether
every output file kept its SHA-256.

    python tests/support/fault_injection.py PROJECT_DIR [NAME_PREFIX ...]

PROJECT_DIR must be a knnlab project on which ``dvc repro`` has run and whose state is
committed (the test suite makes one, ``tests/e2e/test_faults.py``, which runs each row as
its own test). Each fault is applied, the stage or command it concerns is run as a user would
run it, the fault is undone, and every output file's SHA-256 is compared with its value
before the fault. ``tools/robustness_table.py`` turns the outcomes the test suite records
into the table of ``docs/robustness.md``.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import http.server
import io
import json
import os
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

if __package__:
    from .blocked_imports import without_package
else:  # run as a script: python tests/support/fault_injection.py PROJECT_DIR
    from blocked_imports import without_package

OUTPUTS = ("data/raw", "data/split", "data/neighbours", "models", "reports", "tracking")
# Seconds differ on every run: not outputs (dvc.yaml), so a stage that completes may rewrite them.
NOT_OUTPUTS = ("reports/timings",)
STAGING_PREFIX = ".knnlab-staging."
# A command that hangs fails its row after this long instead of hanging the suite; no row
# expects to come near it.
HARNESS_TIMEOUT = 120
# The exit codes of a process stopped by Ctrl-C and by SIGTERM, by the shell's convention.
EXIT_INTERRUPTED = {signal.SIGINT: 130, signal.SIGTERM: 143}


def default_sigint() -> None:
    """In a child, before exec: Ctrl-C's default action, which Python turns into its
    KeyboardInterrupt handler. A process started in the background by a shell without job
    control (CI, `make test &`) inherits SIGINT ignored, and its children would never see the
    interrupt this suite sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Skipped(Exception):
    """This machine cannot inject the fault (e.g. no permission to mount a file system)."""


@dataclass(frozen=True)
class Result:
    """What an injected fault made the command do. ``code`` is None when it did not end
    within :data:`HARNESS_TIMEOUT`; ``message`` defaults to the last line of stderr."""

    code: int | None
    stderr: str
    message: str | None = None
    problems: tuple[str, ...] = ()  # found by the row itself (e.g. a run left RUNNING)

    @property
    def answer(self) -> str:
        if self.message is not None:
            return self.message
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return lines[-1] if lines else ""


@dataclass(frozen=True)
class Fault:
    """One row: ``inject()`` applies the fault and runs the command it concerns.

    ``code`` is the exit code expected. With ``one_line`` the answer is a single line on
    stderr starting with "knnlab " (``also`` is a pattern other stderr lines may match,
    e.g. a "waiting for the lock" notice printed before it). ``expect`` are patterns the
    message must match, ``forbid`` patterns stderr must not. ``dvc``: the row runs DVC, so
    ``dvc status`` must be up to date once it is undone. ``cleanup`` undoes what restoring
    params.yaml does not.
    """

    name: str
    inject: Callable[[], Result]
    code: int = 2
    one_line: bool = True
    also: str | None = None
    expect: tuple[str, ...] = ()
    forbid: tuple[str, ...] = ()
    dvc: bool = False
    cleanup: Callable[[], None] | None = None


@dataclass
class Outcome:
    fault: str
    exit_code: int | None
    message: str
    stderr: str
    changed: list[str]
    staging_left: list[str]
    problems: list[str] = field(default_factory=list)

    @property
    def line(self) -> str:
        kept = "outputs intact" if not self.changed else "changed: " + ", ".join(self.changed)
        return f"{self.fault:56s} exit {self.exit_code!s:>4}  {kept}  | {self.message}"


def snapshot(root: Path) -> dict[str, str]:
    """SHA-256 of every output file (temporary files of atomic writes excluded)."""
    digests = {}
    for top in OUTPUTS:
        for path in sorted((root / top).rglob("*")):
            name = path.relative_to(root).as_posix()
            if (
                path.is_file()
                and not path.name.startswith(".")
                and not name.startswith(NOT_OUTPUTS)
            ):
                digests[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("KNNLAB_DEBUG", None)
    env.update(extra or {})
    return env


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def run_command(
    cmd: list[str],
    root: Path,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> tuple[Result, str]:
    """Run ``cmd`` in its own process group; (its result, its stdout)."""
    proc = subprocess.Popen(
        cmd,
        cwd=root,
        env=_env(env),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=preexec_fn,
    )
    try:
        out, err = proc.communicate(stdin, timeout=HARNESS_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        message = f"no answer within {HARNESS_TIMEOUT} s: the suite killed it"
        return Result(None, _decode(err), message), _decode(out)
    return Result(proc.returncode, _decode(err)), _decode(out)


def knnlab(root: Path, *args: str, env: dict[str, str] | None = None, **kwargs) -> Result:
    return run_command([sys.executable, "-m", "knnlab", *args], root, env, **kwargs)[0]


class Project:
    """A project folder with its params.yaml restored after each fault."""

    def __init__(self, root: Path):
        self.root = root
        self._params_text: str | None = None

    @property
    def params_text(self) -> str:
        """params.yaml as it was before any fault (read on first use)."""
        if self._params_text is None:
            self._params_text = (self.root / "params.yaml").read_text()
        return self._params_text

    def params(self, **sections) -> None:
        params = yaml.safe_load(self.params_text)
        for dotted, value in sections.items():
            node = params
            *parents, last = dotted.split("__")
            for key in parents:
                node = node.setdefault(key, {})
            node[last] = value
        (self.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    def raw_params(self, text: str) -> None:
        _ = self.params_text
        (self.root / "params.yaml").write_text(text)

    def edit_params(self, old: str, new: str) -> str:
        """Replace the one occurrence of ``old`` in params.yaml by ``new``; the new text."""
        assert self.params_text.count(old) == 1, f"{old!r} is not once in params.yaml"
        text = self.params_text.replace(old, new)
        self.raw_params(text)
        return text

    def restore(self) -> None:
        if self._params_text is not None:
            (self.root / "params.yaml").write_text(self._params_text)

    def store_uri(self, path: Path | None = None) -> str:
        return f"sqlite:///{path or self.root / 'mlflow.db'}"

    def store_copy(self, name: str) -> Path:
        """A copy of the project's MLflow store, for a fault that damages or fills it."""
        copy = self.fault_file(name)
        shutil.copy(self.root / "mlflow.db", copy)
        return copy

    def fault_file(self, name: str, content: bytes | None = None) -> Path:
        """``faults/<name>`` in the project, a fresh file (or, without content, a free name).
        The folder is kept out of git, so experiments (``dvc exp run``) never copy it."""
        path = self.root / "faults" / name
        if not path.parent.is_dir():
            path.parent.mkdir()
            exclude = self.root / ".git" / "info" / "exclude"
            if exclude.parent.is_dir():
                with open(exclude, "a") as lines:
                    lines.write("/faults/\n")
        if path.is_symlink() or path.is_file():
            path.unlink()
        if content is not None:
            path.write_bytes(content)
        return path


def dvc_status(root: Path, *targets: str) -> str:
    """What ``dvc status`` says, in a few words."""
    result, out = run_command(["dvc", "status", "--json", *targets], root)
    if result.code:
        return f"failed ({result.stderr.strip()[-200:]})"
    changed = sorted(json.loads(out or "{}"))
    return f"{', '.join(changed)} changed" if changed else "up to date"


def _run_statuses(store: Path) -> dict[str, str]:
    """run id -> status of every run in an MLflow SQLite store."""
    with contextlib.closing(sqlite3.connect(store)) as db:
        return dict(db.execute("SELECT run_uuid, status FROM runs"))


def _tagged_run(store: Path, key: str, value: str) -> str:
    with contextlib.closing(sqlite3.connect(store)) as db:
        row = db.execute(
            "SELECT run_uuid FROM tags WHERE key = ? AND value = ? LIMIT 1", (key, value)
        ).fetchone()
    assert row, f"no run tagged {key} = {value} in {store}"
    return row[0]


def _lines_of(path: str) -> tuple[str, ...]:
    """Patterns for the lines of a system file (and the start of each, up to its second
    colon: a cut excerpt of ``root:x:0:0:...`` leaks as much), that no message may quote."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ()
    patterns = set()
    for line in text.splitlines():
        line = line.strip()
        if len(line) >= 6:
            patterns.add(re.escape(line))
        parts = line.split(":")
        if len(parts) > 2 and parts[0]:
            patterns.add(re.escape(f"{parts[0]}:{parts[1]}:"))
    return tuple(sorted(patterns))


# A child Python in which the `distributed` package is not installed, as far as imports can
# tell: the path finder skips it. Installed as sitecustomize.py on the child's PYTHONPATH.
_WITHOUT_DISTRIBUTED = without_package("distributed")


class _NotDask(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"an HTTP server, not a Dask scheduler\n")

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def http_server() -> Iterator[int]:
    """An HTTP server on 127.0.0.1 answering 200 to GET; its port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotDask)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections and never says a word; its port."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        accepted = []
        stop = threading.Event()

        def accept():
            listener.settimeout(0.2)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    accepted.append(listener.accept()[0])

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            yield listener.getsockname()[1]
        finally:
            stop.set()
            thread.join()
            for conn in accepted:
                conn.close()


class FaultCases:
    """The ways of injecting a fault, each returning inject() for a row of :func:`faults`."""

    def __init__(self, project: Project) -> None:
        self.project = project

    @property
    def root(self) -> Path:
        return self.project.root

    def stage_with(self, stage: str, env: dict[str, str] | None = None, **params):
        def go():
            self.project.params(**params)
            return knnlab(self.root, stage, env=env)

        return go

    def raw_edit(self, command: str, old: str, new: str):
        def go():
            self.project.edit_params(old, new)
            return knnlab(self.root, command)

        return go

    def appended(self, command: str, text: str):
        def go():
            self.project.raw_params(self.project.params_text + text)
            return knnlab(self.root, command)

        return go

    def data_fault(self, name: str, content: bytes):
        def go():
            path = self.project.fault_file(name, content)
            self.project.params(**_file_dataset(path))
            return knnlab(self.root, "fetch")

        return go

    def data_path(self, target: str, link: str | None = None):
        """data.path naming a file outside the project, directly or by a symlink inside it."""

        def go():
            if not os.access(target, os.R_OK):
                raise Skipped(f"{target} is not readable here")
            path = Path(target)
            if link is not None:
                path = self.project.fault_file(link)
                path.symlink_to(target)
            self.project.params(**_file_dataset(path))
            return knnlab(self.root, "fetch")

        return go

    def predict_with(self, name: str, content: bytes | None):
        """predict given a file (or, with ``content`` None, a folder)."""

        def go():
            path = self.project.fault_file(name, content)
            if content is None:
                path.mkdir(exist_ok=True)
            return knnlab(self.root, "predict", str(path))

        return go

    def predict_stdin(self, content: bytes):
        return lambda: knnlab(self.root, "predict", "-", stdin=content)

    def damaged_model(self, how: str):
        def go():
            model = self.root / "models" / "model.npz"
            original = model.read_bytes()
            damaged = self.project.fault_file("model.npz")
            if how == "truncated":
                damaged.write_bytes(original[: len(original) // 2])
            else:
                with np.load(model, allow_pickle=False) as archive:
                    arrays = {k: archive[k] for k in archive.files}
                arrays["X"] = arrays["X"] + 0.5  # changed values, stale checksum
                np.savez(damaged, **arrays)
            row = ",".join(["1.0"] * 4)
            stdin = (row + "\n").encode()
            return knnlab(self.root, "predict", "--model", str(damaged), "-", stdin=stdin)

        return go

    def tracking_fault(self, uri: str, stage: str = "tune"):
        return lambda: knnlab(self.root, stage, env={"MLFLOW_TRACKING_URI": uri})

    def read_only_store(self):
        store = self.project.store_copy("readonly.db")
        if subprocess.run(["chattr", "+i", str(store)], capture_output=True).returncode:
            raise Skipped("chattr +i (immutable file) is not available here")
        try:
            return knnlab(self.root, "evaluate", env={"MLFLOW_TRACKING_URI": f"sqlite:///{store}"})
        finally:
            subprocess.run(["chattr", "-i", str(store)], capture_output=True)

    def corrupted_store(self):
        """A copy of the store whose SQLite header is overwritten with garbage."""
        store = self.project.store_copy("corrupted.db")
        with open(store, "r+b") as db:
            db.write(b"this is not a SQLite database header!" * 4)
        return knnlab(self.root, "evaluate", env={"MLFLOW_TRACKING_URI": f"sqlite:///{store}"})

    def deleted_experiment(self):
        """A copy of the store in which the knnlab experiment was deleted (MLflow keeps it,
        marked deleted, so its name cannot be created again)."""
        from knnlab.tracking.store import mlflow_client

        uri = self.project.store_uri(self.project.store_copy("deleted.db"))
        client = mlflow_client(uri)
        client.delete_experiment(client.get_experiment_by_name("knnlab").experiment_id)
        return knnlab(self.root, "evaluate", env={"MLFLOW_TRACKING_URI": uri})

    def disk_full(self):
        """evaluate logging to a store on a file system with no space left."""
        mount = self.project.fault_file("full")
        mount.mkdir(exist_ok=True)
        # Room for the store and a little more, which the filler then takes.
        size = (self.root / "mlflow.db").stat().st_size // 2**20 + 4
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}m", "tmpfs", str(mount)],
            capture_output=True,
            text=True,
        )
        if done.returncode:
            raise Skipped(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
        try:
            store = mount / "mlflow.db"
            shutil.copy(self.root / "mlflow.db", store)
            # Unbuffered: a buffered file's close would flush what the last write left in
            # its buffer, and fail with ENOSPC outside the suppress.
            with open(mount / "filler", "wb", buffering=0) as filler, contextlib.suppress(OSError):
                while True:  # until ENOSPC
                    filler.write(b"\0" * 65536)
            return knnlab(self.root, "evaluate", env={"MLFLOW_TRACKING_URI": f"sqlite:///{store}"})
        finally:
            subprocess.run(["umount", str(mount)], capture_output=True)

    def file_size_limit(self):
        """evaluate under ``ulimit -f`` no larger than its store: any write that grows a
        file past it fails with EFBIG (Python ignores SIGXFSZ)."""
        store = self.project.store_copy("fsize.db")
        limit = store.stat().st_size

        def limit_file_size():
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        env = {"MLFLOW_TRACKING_URI": f"sqlite:///{store}"}
        return knnlab(self.root, "evaluate", env=env, preexec_fn=limit_file_size)

    def interrupted(self, stage: str, signum: int, **params):
        """``signum`` to the stage's process group while it works (once its MLflow run is
        open; plot, which adds to evaluate's run, once its staging folder exists): it must
        say "interrupted", close its run as failed and remove the staging folder."""

        def go():
            self.project.params(**params)
            store = self.project.store_copy(f"{stage}-{signal.Signals(signum).name}.db")
            before = _run_statuses(store)
            proc = subprocess.Popen(
                [sys.executable, "-m", "knnlab", stage],
                cwd=self.root,
                env=_env({"MLFLOW_TRACKING_URI": self.project.store_uri(store)}),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=default_sigint,
            )
            deadline = time.monotonic() + HARNESS_TIMEOUT
            while proc.poll() is None and time.monotonic() < deadline:
                if stage == "plot":  # it adds to evaluate's run: its work is staged
                    if list(self.root.glob(f"{STAGING_PREFIX}{proc.pid}.*")):
                        break
                elif set(_run_statuses(store)) - set(before):  # its run is open
                    break
                time.sleep(0.05)
            working = proc.poll() is None
            if working:
                os.killpg(proc.pid, signum)
            try:
                _, err = proc.communicate(timeout=HARNESS_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                _, err = proc.communicate()
                return Result(None, _decode(err), "did not stop after the signal: killed")
            if not working:
                return Result(
                    proc.returncode, _decode(err), f"ended (exit {proc.returncode}) first"
                )
            after = _run_statuses(store)
            running = [
                run
                for run, status in after.items()
                if status == "RUNNING" and before.get(run) != "RUNNING"  # not a killed row's
            ]
            new = sorted(status for run, status in after.items() if run not in before)
            problems = [f"MLflow run {run} left RUNNING" for run in running]
            if stage != "plot" and not running and not set(new) & {"FAILED", "KILLED"}:
                problems.append(f"its run ended {new}, expected FAILED or KILLED")
            return Result(proc.returncode, _decode(err), problems=tuple(problems))

        return go

    def killed_stage(self):
        """SIGKILL ``dvc repro`` while the tune stage is working on a long grid (thousands
        of candidates: it is searching or logging nested runs when the kill lands)."""
        self.project.params(**LONG_GRID)
        proc = subprocess.Popen(
            ["dvc", "repro", "tune"],
            cwd=self.root,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + HARNESS_TIMEOUT
        while time.monotonic() < deadline:  # wait for the stage's own process
            found = subprocess.run(["pgrep", "-f", "knnlab tune"], capture_output=True)
            if found.returncode == 0:
                break
            time.sleep(0.2)
        time.sleep(4)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        status = dvc_status(self.root, "tune")
        return Result(-9, "", f"after the kill, dvc status: {status}")

    def killed_while_logging(self):
        """SIGKILL evaluate inside its MLflow logging: it has computed and staged every
        output and waits for the store lock, which this script holds."""
        env = {"MLFLOW_TRACKING_URI": self.project.store_uri()}
        with open(self.root / "mlflow.db.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            proc = subprocess.Popen(
                [sys.executable, "-m", "knnlab", "evaluate"],
                cwd=self.root,
                env=_env(env),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            deadline = time.monotonic() + HARNESS_TIMEOUT
            while time.monotonic() < deadline and proc.poll() is None:
                if list(self.root.glob(f"{STAGING_PREFIX}*/reports/metrics.json")):
                    break
                time.sleep(0.2)
            time.sleep(1)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        status = dvc_status(self.root, "evaluate")
        return Result(-9, "", f"killed after staging its outputs; dvc status: {status}")

    def logging_fails(self):
        """The artifact store refuses writes in the middle of evaluate's logging."""
        artifacts = self.root / "mlruns" / "knnlab"
        if subprocess.run(["chattr", "+i", str(artifacts)], capture_output=True).returncode:
            raise Skipped("chattr +i (immutable folder) is not available here")
        try:
            return knnlab(
                self.root, "evaluate", env={"MLFLOW_TRACKING_URI": self.project.store_uri()}
            )
        finally:
            subprocess.run(["chattr", "-i", str(artifacts)], capture_output=True)

    def lying_model_header(self):
        """A model file whose X member's .npy header claims 100,000 x 100,000 float64."""
        model = self.root / "models" / "model.npz"
        crafted = self.project.fault_file("lying.npz")
        with zipfile.ZipFile(model) as source, zipfile.ZipFile(crafted, "w") as target:
            for info in source.infolist():
                data = source.read(info)
                if info.filename == "X.npy":
                    header = {"descr": "<f8", "fortran_order": False, "shape": (100_000,) * 2}
                    prefix = io.BytesIO()
                    np.lib.format.write_array_header_1_0(prefix, header)
                    data = prefix.getvalue() + data[-64:]  # and 64 bytes of data
                target.writestr(info.filename, data)
        return knnlab(self.root, "predict", "--model", str(crafted), "-", stdin=b"1,2,3,4\n")

    def store_lock_held(self):
        """Another process holds the SQLite store's lock; the stage waits, then gives up."""
        env = {"MLFLOW_TRACKING_URI": self.project.store_uri(), "KNNLAB_LOCK_TIMEOUT": "3"}
        with open(self.root / "mlflow.db.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return knnlab(self.root, "tune", env=env)

    def dvc_repro(self, target: str, **params):
        """``dvc repro <target>`` after a params edit, as a user runs it; the message is the
        knnlab line of its output."""

        def go():
            self.project.params(**params)
            result, out = run_command(["dvc", "repro", target], self.root)
            ours = [
                line for line in (out + result.stderr).splitlines() if line.startswith("knnlab ")
            ]
            return Result(result.code, result.stderr, ours[-1] if ours else None)

        return go

    def latin1_stdout(self, stage: str):
        """A stage run by ``dvc repro`` (or, for report, directly) with a stdout that cannot
        encode what is not Latin-1."""
        env = {
            "PYTHONIOENCODING": "latin-1",
            "LC_ALL": "C",
            "LANG": "C",
            "MLFLOW_TRACKING_URI": self.project.store_uri(),
        }

        def go():
            if stage == "report":
                result = knnlab(self.root, "report", env=env)
            else:
                result, _ = run_command(
                    ["dvc", "repro", "--force", "--single-item", stage], self.root, env
                )
            if result.code == 0:
                return Result(0, result.stderr, "completes (exit 0), printing in Latin-1")
            ours = [line for line in result.stderr.splitlines() if line.startswith("knnlab ")]
            return Result(result.code, result.stderr, ours[-1] if ours else None)

        return go

    def leading_zero(self):
        """``n_neighbors: 010``: what knnlab trains with and what DVC records must agree."""
        self.project.edit_params("  n_neighbors: 5\n", "  n_neighbors: 010\n")
        result, out = run_command([sys.executable, "-m", "knnlab", "params"], self.root)
        if result.code:
            return result
        ours = yaml.safe_load(out)["model"]["n_neighbors"]
        _, diff = run_command(["dvc", "params", "diff", "--json"], self.root)
        changes = json.loads(diff or "{}").get("params.yaml", {})
        theirs = changes.get("model.n_neighbors", {}).get("new")
        return Result(0, result.stderr, f"knnlab reads {ours!r}, DVC reads {theirs!r}")

    def scheduler(self, address: Callable[[int], str], server):
        """tune with compute.scheduler at ``address(port)`` of a server started here."""

        def go():
            with server() as port:
                self.project.params(compute__scheduler=address(port))
                return knnlab(self.root, "tune")

        return go

    def without_distributed(self):
        """DASK_SCHEDULER_ADDRESS set where the `distributed` package cannot be imported."""
        folder = self.project.fault_file("without-distributed")
        folder.mkdir(exist_ok=True)
        (folder / "sitecustomize.py").write_text(_WITHOUT_DISTRIBUTED)
        env = {"PYTHONPATH": str(folder), "DASK_SCHEDULER_ADDRESS": "tcp://127.0.0.1:9"}
        probe, _ = run_command([sys.executable, "-c", "import distributed"], self.root, env)
        if probe.code == 0:
            raise RuntimeError("the child could still import distributed: the blocker failed")
        return knnlab(self.root, "tune", env=env)

    def bad_port(self, command: str):
        def go():
            if command == "serve":
                store = self.root / "mlflow.db"
                run = _tagged_run(store, "knnlab.stage", "evaluate")
                env = {"MLFLOW_TRACKING_URI": self.project.store_uri(store)}
                return knnlab(self.root, "serve", f"runs:/{run}/model", "--port", "99999", env=env)
            data = self.project.fault_file("server-data")
            return knnlab(self.root, "server", "--data", str(data), "--port", "99999")

        return go

    def report_base_with_text_metric(self):
        """``report --base`` on a commit whose metrics.json holds a string where a number
        belongs; the commit is made beside HEAD, which does not move."""
        metrics = json.loads((self.root / "reports/metrics.json").read_text())
        metrics["configured"]["accuracy"] = "high"
        blob = self._git("hash-object", "-w", "--stdin", stdin=json.dumps(metrics, indent=2))
        index = self.project.fault_file("base.index")
        env = {"GIT_INDEX_FILE": str(index)}
        self._git("read-tree", "HEAD", env=env)
        self._git("update-index", "--cacheinfo", f"100644,{blob},reports/metrics.json", env=env)
        tree = self._git("write-tree", env=env)
        base = self._git("commit-tree", tree, "-p", "HEAD", "-m", "a text metric")
        return knnlab(self.root, "report", "--base", base)

    def _git(self, *args: str, stdin: str | None = None, env: dict | None = None) -> str:
        done = subprocess.run(
            ["git", *args],
            cwd=self.root,
            env=_env({**GIT_IDENTITY, **(env or {})}),
            input=stdin,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    def repro_params(self) -> None:
        """Record the restored params.yaml in dvc.lock again (a row whose `dvc repro`
        validated an edited one leaves the params stage recording it)."""
        run_command(["dvc", "repro", "params"], self.root)

    def remove_staging(self) -> None:
        for folder in self.root.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(folder)


GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "knnlab tests",
    "GIT_AUTHOR_EMAIL": "tests@knnlab.invalid",
    "GIT_COMMITTER_NAME": "knnlab tests",
    "GIT_COMMITTER_EMAIL": "tests@knnlab.invalid",
}

# A grid long enough (thousands of candidates) that tune is still working when a signal lands.
LONG_GRID = {
    "tune__grid__n_neighbors": list(range(1, 60)),
    "tune__grid__p": [1, 1.5, 2, 3, 4, float("inf")],
    "tune__grid__algorithm": ["brute", "kd_tree", "ball_tree"],
}


def _file_dataset(path: Path) -> dict:
    return {"data__dataset": "file", "data__path": str(path), "data__label_column": "label"}


def faults(project: Project | None = None) -> list[Fault]:
    """Every fault, as rows. Without a project the rows can be listed (by name) but not run."""
    project = project or Project(Path(tempfile.gettempdir()) / "no-project")
    cases = FaultCases(project)
    bad_csv = b"a,b,label\n1,2,x\n1,NaN,y\n3,4,x\n5,6,y\n"
    table = b"a,b,label\n1,2,x\n3,4,y\n5,6,x\n7,8,y\n"
    # Lines of params.yaml the duplicates land on (placeholders when only listing rows).
    text = project.params_text if (project.root / "params.yaml").exists() else "\nmodel:\n"
    duplicate_line = text[: text.index("\nmodel:\n")].count("\n") + 4
    second_model_line = text.count("\n") + 1
    interrupted_tune = {
        "tune__grid__n_neighbors": list(range(1, 31)),
        "tune__grid__weights": ["uniform", "distance"],
    }
    no_permissions = (r"(?i)permission|read-?only|cannot be written",)
    secret_files = _lines_of("/etc/shadow"), _lines_of("/etc/passwd")
    rows = [
        Fault("params: unknown key", cases.stage_with("train", model__k=3), expect=(r"model\.k",)),
        Fault(
            "params: wrong type (n_neighbors: 'five')",
            cases.stage_with("train", model__n_neighbors="five"),
            expect=(r"model\.n_neighbors",),
        ),
        Fault("params: n_neighbors = 0", cases.stage_with("train", model__n_neighbors=0)),
        Fault(
            "params: n_neighbors > train split",
            cases.stage_with("train", model__n_neighbors=10_000),
        ),
        Fault("params: p < 1", cases.stage_with("train", model__p=0.5), expect=(r"model\.p",)),
        Fault("params: unknown algorithm", cases.stage_with("train", model__algorithm="lsh")),
        Fault("params: unknown weights", cases.stage_with("train", model__weights="inverse")),
        Fault("params: unknown dataset", cases.stage_with("fetch", data__dataset="cifar")),
        Fault("params: test_size = 1.5", cases.stage_with("split", split__test_size=1.5)),
        Fault("params: empty grid list", cases.stage_with("tune", tune__grid__p=[])),
        Fault(
            "params: cv > smallest class",
            cases.stage_with("tune", tune__cv=50),  # within tune.cv's bound: the data's rule
            expect=(r"cv = 50 folds need at least 50 samples of every class",),
        ),
        Fault(
            "params: not YAML",
            cases.raw_edit("train", "model:\n", "model: [\n"),
            expect=(r"\bline \d+",),
        ),
        Fault(
            "params: typo in another section (dvc repro train)",
            cases.dvc_repro("train", data__max_row=9),
            code=255,  # DVC's exit code; the knnlab line is the params stage's
            one_line=False,
            expect=(r"^knnlab params: error: .*data\.max_row",),
            dvc=True,
        ),
        Fault(
            "params: stray top-level section (dvc repro plot)",
            cases.dvc_repro("plot", modle__k=3),
            code=255,
            one_line=False,
            expect=(r"^knnlab params: error: .*modle",),
            dvc=True,
        ),
        Fault(
            "params: n_neighbors: 010 (YAML 1.1 octal)",
            cases.leading_zero,
            code=0,
            one_line=False,
            expect=(r"^knnlab reads 10, DVC reads 10$",),
        ),
        Fault(
            "params: n_neighbors: 1:30 (YAML 1.1 sexagesimal)",
            cases.raw_edit("train", "  n_neighbors: 5\n", "  n_neighbors: 1:30\n"),
            expect=(r"model\.n_neighbors", r"1:30"),
        ),
        Fault(
            "params: a duplicated key",
            cases.raw_edit("train", "  n_neighbors: 5\n", "  n_neighbors: 5\n  n_neighbors: 7\n"),
            expect=(r"n_neighbors", rf"\blines? [^;]*\b{duplicate_line}\b"),
        ),
        Fault(
            "params: a second model section",
            cases.appended("train", "model:\n  n_neighbors: 7\n"),
            expect=(r"\bmodel\b", rf"\blines? [^;]*\b{second_model_line}\b"),
        ),
        Fault(
            "params: nested 10,000 deep",
            cases.raw_edit(
                "params", "  features: null\n", f"  features: {'[' * 10_000}{']' * 10_000}\n"
            ),
            expect=(r"(?i)nest|deep|depth",),
        ),
        Fault(
            "params: stats.resamples = 1000000000",
            cases.stage_with("params", stats__resamples=1_000_000_000),
            expect=(r"stats\.resamples",),
        ),
        Fault(
            "params: a seed of 2**32",
            cases.stage_with("split", split__seed=2**32),
            expect=(r"split\.seed",),
        ),
        Fault("data: NaN in a feature", cases.data_fault("nan.csv", bad_csv)),
        Fault(
            "data: infinite feature", cases.data_fault("inf.csv", bad_csv.replace(b"NaN", b"inf"))
        ),
        Fault(
            "data: non-numeric feature",
            cases.data_fault("text.csv", bad_csv.replace(b"NaN", b"abc")),
        ),
        Fault(
            "data: missing label column",
            cases.data_fault("nolabel.csv", b"a,b,c\n1,2,3\n4,5,6\n"),
        ),
        Fault(
            "data: a single class", cases.data_fault("oneclass.csv", b"a,label\n1,x\n2,x\n3,x\n")
        ),
        Fault("data: empty file", cases.data_fault("empty.csv", b"")),
        Fault(
            "data: corrupt parquet",
            cases.data_fault("corrupt.parquet", b"PAR1 this is not parquet"),
        ),
        Fault("data: corrupt CSV", cases.data_fault("corrupt.csv", b'a,b,label\n1,"2,x\n')),
        Fault(
            "data: duplicate column names",
            cases.data_fault("dup.csv", b"a,a,label\n1,2,x\n3,4,y\n"),
        ),
        Fault(
            "data: labels 1 and 01 (equal as text)",
            cases.data_fault("labels.csv", b"a,label\n1,1\n2,01\n3,1\n4,01\n"),
        ),
        Fault(
            "data: a gzip file named .csv",
            cases.data_fault("packed.csv", gzip.compress(table)),
            expect=(r"(?i)gzip|compressed",),
        ),
        Fault(
            "data: a semicolon-separated CSV",
            cases.data_fault("semicolon.csv", table.replace(b",", b";")),
            expect=(r"(?i)semicolon|';'|separat|delimit",),
        ),
        Fault(
            "data: a label NA",
            cases.data_fault("na.csv", b"a,label\n1,x\n2,NA\n3,x\n4,NA\n5,y\n6,y\n"),
            expect=(r"\bNA\b",),
        ),
        Fault(
            "data: data.path a symlink to /etc/shadow",
            cases.data_path("/etc/shadow", link="shadow.csv"),
            forbid=secret_files[0],
        ),
        Fault(
            "data: data.path /etc/passwd",
            cases.data_path("/etc/passwd"),
            forbid=secret_files[1],
        ),
        Fault("predict: wrong number of features", cases.predict_with("short.csv", b"1,2,3\n")),
        Fault(
            "predict: image for a model of 4 features",
            cases.predict_with("a.png", b"\x89PNG no"),
        ),
        Fault("predict: unreadable .npy", cases.predict_with("broken.npy", b"\x93NUMPY garbage")),
        Fault(
            "predict: a CSV whose only row is text",
            cases.predict_with("words.csv", b"alpha,beta,gamma,delta\n"),
            expect=(r"(?i)no (data )?rows|header|empty|no numbers",),
        ),
        Fault(
            "predict: a directory",
            cases.predict_with("a-folder", None),
            expect=(r"(?i)directory|folder",),
        ),
        Fault(
            "predict: binary bytes on stdin",
            cases.predict_stdin(bytes(range(256)) * 4),
            expect=(r"(?i)binary|not (a )?text|decode|utf-8|csv",),
        ),
        Fault("model: truncated file", cases.damaged_model("truncated")),
        Fault("model: tampered arrays", cases.damaged_model("tampered")),
        Fault("model: header claims 100,000 x 100,000", cases.lying_model_header),
        Fault(
            "mlflow: server not listening",
            cases.tracking_fault("http://127.0.0.1:9"),
            expect=(r"127\.0\.0\.1:9",),
        ),
        Fault("mlflow: read-only SQLite store", cases.read_only_store),
        Fault(
            "mlflow: credentials in the URI",
            cases.tracking_fault("http://bob:hunter2@127.0.0.1:9"),
            forbid=(r"hunter2",),
        ),
        Fault(
            "mlflow: a token in the URI's query",
            cases.tracking_fault("http://127.0.0.1:9/?token=abc"),
            forbid=(r"token=abc",),
        ),
        Fault(
            "mlflow: store lock held by another process",
            cases.store_lock_held,
            also=r"^knnlab tune: waiting for the MLflow store lock",
        ),
        Fault(
            "mlflow: artifact store refuses writes mid-logging",
            cases.logging_fails,
            expect=(
                r"the artifact store of MLflow store .* cannot write .*Operation not permitted",
            ),
        ),
        Fault(
            "mlflow: a corrupted mlflow.db",
            cases.corrupted_store,
            expect=(r"(?i)corrupt|not a (sqlite )?database|malformed|damaged",),
            forbid=no_permissions,
        ),
        Fault(
            "mlflow: the experiment was deleted",
            cases.deleted_experiment,
            expect=(r"(?i)deleted", r"(?i)restore", r"(?i)rename|another name|experiment:"),
        ),
        Fault("disk: full during evaluate", cases.disk_full, forbid=(r"sqlalchemy|sqlite3\.",)),
        Fault(
            "disk: ulimit -f during evaluate",
            cases.file_size_limit,
            forbid=(r"sqlalchemy|sqlite3\.",),
        ),
        Fault(
            "dask: compute.scheduler is an HTTP server",
            cases.scheduler(lambda port: f"tcp://127.0.0.1:{port}", http_server),
            expect=(r"127\.0\.0\.1:\d+", r"(?i)dask"),
        ),
        Fault(
            "dask: compute.scheduler answers nothing",
            cases.scheduler(lambda port: f"tcp://127.0.0.1:{port}", silent_listener),
            expect=(r"127\.0\.0\.1:\d+", r"(?i)dask"),
        ),
        Fault(
            "dask: a password in the scheduler address",
            cases.scheduler(lambda port: f"tcp://bob:hunter2@127.0.0.1:{port}", silent_listener),
            forbid=(r"hunter2",),
        ),
        Fault(
            "dask: DASK_SCHEDULER_ADDRESS without distributed installed",
            cases.without_distributed,
            expect=(r"distributed",),
        ),
        Fault("serve: --port 99999", cases.bad_port("serve"), expect=(r"99999",)),
        Fault("server: --port 99999", cases.bad_port("server"), expect=(r"99999",)),
        Fault(
            "report: --base whose metrics.json holds a string",
            cases.report_base_with_text_metric,
            expect=(r"accuracy",),
        ),
    ]
    for stage in ("tune", "evaluate", "plot"):
        grid = interrupted_tune if stage == "tune" else {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            how = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
            rows.append(
                Fault(
                    f"signal: {how} in {stage}",
                    cases.interrupted(stage, signum, **grid),
                    code=EXIT_INTERRUPTED[signum],
                    expect=(r"interrupted",),
                )
            )
    for stage in ("fetch", "split", "train", "exact", "tune", "evaluate", "plot", "params"):
        rows.append(
            Fault(
                f"stdout: Latin-1 in {stage}",
                cases.latin1_stdout(stage),
                code=0,
                one_line=False,
                dvc=True,
            )
        )
    rows.append(
        Fault("stdout: Latin-1 in report", cases.latin1_stdout("report"), code=0, one_line=False)
    )
    rows += [
        Fault(
            "kill: SIGKILL in the middle of tune",
            cases.killed_stage,
            code=-9,
            one_line=False,
            expect=(r"dvc status: tune changed",),
            dvc=True,
            cleanup=cases.repro_params,
        ),
        Fault(
            "kill: SIGKILL while evaluate logs to MLflow",
            cases.killed_while_logging,
            code=-9,
            one_line=False,
            expect=(r"dvc status: up to date",),
            dvc=True,
            cleanup=cases.remove_staging,
        ),
    ]
    return rows


def fault_names() -> list[str]:
    return [fault.name for fault in faults()]


def slug(name: str) -> str:
    """A fault's name as a pytest id: lower case words joined by dashes."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def run_fault(project: Project, fault: Fault) -> Outcome:
    """Inject ``fault``, undo it, and compare the outputs with what they were before.
    Raises :class:`Skipped` when the fault cannot be injected here."""
    root = project.root
    before = snapshot(root)
    try:
        result = fault.inject()
    finally:
        project.restore()
        if fault.cleanup is not None:
            fault.cleanup()
    after = snapshot(root)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    staging = sorted(p.name for p in root.glob(f"{STAGING_PREFIX}*"))
    outcome = Outcome(
        fault.name,
        result.code,
        result.answer,
        result.stderr,
        changed,
        staging,
        list(result.problems),
    )
    outcome.problems += _problems(fault, outcome)
    if fault.dvc and (status := dvc_status(root)) != "up to date":
        outcome.problems.append(f"dvc status after the fault is undone: {status}")
    return outcome


def _problems(fault: Fault, outcome: Outcome) -> list[str]:
    """How an outcome breaks its row's promise (none: the row passes)."""
    problems = []
    if outcome.exit_code != fault.code:
        problems.append(f"exit code {outcome.exit_code}, expected {fault.code}")
    if "Traceback" in outcome.stderr:
        problems.append("a traceback on stderr")
    if fault.one_line:
        if not outcome.message.startswith("knnlab "):
            problems.append("the last line of stderr does not start with 'knnlab '")
        others = [line for line in outcome.stderr.splitlines() if line.strip()][:-1]
        others = [line for line in others if not (fault.also and re.search(fault.also, line))]
        if others:
            problems.append(f"{len(others)} more line(s) on stderr, the first: {others[0][:200]!r}")
    for pattern in fault.expect:
        if not re.search(pattern, outcome.message):
            problems.append(f"the message does not match {pattern!r}")
    for pattern in fault.forbid:
        if re.search(pattern, outcome.stderr) or re.search(pattern, outcome.message):
            problems.append(f"stderr matches the forbidden {pattern[:60]!r}")
    if outcome.changed:
        problems.append(f"outputs changed: {', '.join(outcome.changed)}")
    if outcome.staging_left and not fault.name.startswith("kill:"):
        problems.append(f"staging folders left behind: {', '.join(outcome.staging_left)}")
    return problems


def shorten(text: str, root: Path) -> str:
    """``text`` with the project's folder and other temporary paths cut to '…'."""
    text = text.replace(str(root), "…")
    return re.sub(re.escape(tempfile.gettempdir()) + r"/[^\s'\"]*/", "…/", text)


def record(path: Path, outcome: Outcome | None, name: str, root: Path, skipped: str = "") -> None:
    """Add (or replace) one row's outcome in the JSON file ``tools/robustness_table.py`` reads."""
    rows = json.loads(path.read_text()) if path.exists() else {}
    names = fault_names()
    rows[name] = {
        "order": names.index(name),
        "exit_code": None if outcome is None else outcome.exit_code,
        "message": "" if outcome is None else shorten(outcome.message, root),
        "changed": [] if outcome is None else outcome.changed,
        "problems": [] if outcome is None else [shorten(p, root) for p in outcome.problems],
        "skipped": skipped,
    }
    path.write_text(
        json.dumps(dict(sorted(rows.items(), key=lambda kv: kv[1]["order"])), indent=2) + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python tests/support/fault_injection.py PROJECT_DIR [NAME_PREFIX ...]")
        return 2
    project = Project(Path(args[0]).resolve())
    failed = 0
    for fault in faults(project):
        if args[1:] and not fault.name.startswith(tuple(args[1:])):
            continue
        try:
            outcome = run_fault(project, fault)
        except Skipped as reason:
            print(f"{fault.name:56s} skipped: {reason}")
            continue
        print(outcome.line)
        for problem in outcome.problems:
            print(f"    FAILS: {problem}")
        failed += bool(outcome.problems)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
