"""Fault injection: every fault knnlab promises to handle, tried for real on a copy of the
project, one line each: the fault, the exit code, the message, and whether the outputs
survived.

    python tests/fault_injection.py [PROJECT_DIR]

PROJECT_DIR must be a knnlab project on which ``dvc repro`` has run (the test suite makes
one); without it a temporary iris project is built first. Each fault is applied, the stage
or command it concerns is run as a user would run it, the fault is undone, and every output
file's SHA-256 is compared with its value before the fault.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

OUTPUTS = ("data/raw", "data/split", "models", "reports", "tracking")


@dataclass
class Outcome:
    fault: str
    exit_code: int
    message: str
    changed: list[str]
    seconds: float

    @property
    def line(self) -> str:
        kept = "outputs intact" if not self.changed else "changed: " + ", ".join(self.changed)
        timing = f"exit {self.exit_code:3d}  {self.seconds:5.1f}s"
        return f"{self.fault:48s} {timing}  {kept}  | {self.message}"


def snapshot(root: Path) -> dict[str, str]:
    """SHA-256 of every output file (temporary files of atomic writes excluded)."""
    digests = {}
    for top in OUTPUTS:
        for path in sorted((root / top).rglob("*")):
            if path.is_file() and not path.name.startswith("."):
                digests[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env.pop("KNNLAB_DEBUG", None)
    env.update(extra or {})
    return env


def knnlab(root: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None):
    done = subprocess.run(
        [sys.executable, "-m", "knnlab", *args],
        cwd=root,
        env=_env(env),
        capture_output=True,
        text=True,
        input=stdin,
        timeout=120,
    )
    return done.returncode, done.stderr.strip().splitlines()[-1:] or [""]


class Project:
    """A project folder with its params.yaml restored after each fault."""

    def __init__(self, root: Path):
        self.root = root
        self.params_text = (root / "params.yaml").read_text()

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
        (self.root / "params.yaml").write_text(text)

    def restore(self) -> None:
        (self.root / "params.yaml").write_text(self.params_text)


def _dvc_status(root: Path, stage: str) -> str:
    """What ``dvc status <stage>`` says, in a few words."""
    done = subprocess.run(
        ["dvc", "status", "--json", stage], cwd=root, env=_env(), capture_output=True, text=True
    )
    if done.returncode:
        return f"failed ({done.stderr.strip()[-200:]})"
    changed = sorted(json.loads(done.stdout or "{}"))
    return f"{', '.join(changed)} changed" if changed else "up to date"


def _data_file(root: Path, name: str, content: bytes) -> dict:
    path = root / "faults" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    return {"data__dataset": "file", "data__path": str(path), "data__label_column": "label"}


class FaultCases:
    """The faults, each a method that injects one kind into the project and runs the
    command it should break; :func:`faults` lists them by name."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.root = project.root

    def stage_with(self, stage: str, **params):
        def go():
            self.project.params(**params)
            return knnlab(self.root, stage)

        return go

    def data_fault(self, name: str, content: bytes):
        def go():
            self.project.params(**_data_file(self.root, name, content))
            return knnlab(self.root, "fetch")

        return go

    def predict_with(self, name: str, content: bytes):
        def go():
            path = self.root / "faults" / name
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(content)
            return knnlab(self.root, "predict", str(path))

        return go

    def damaged_model(self, how: str):
        def go():
            model = self.root / "models" / "model.npz"
            original = model.read_bytes()
            damaged = self.root / "faults" / "model.npz"
            damaged.parent.mkdir(exist_ok=True)
            if how == "truncated":
                damaged.write_bytes(original[: len(original) // 2])
            else:
                with np.load(model, allow_pickle=False) as archive:
                    arrays = {k: archive[k] for k in archive.files}
                arrays["X"] = arrays["X"] + 0.5  # changed values, stale checksum
                np.savez(damaged, **arrays)
            row = ",".join(["1.0"] * 4)
            return knnlab(self.root, "predict", "--model", str(damaged), "-", stdin=row + "\n")

        return go

    def tracking_fault(self, uri: str, stage: str = "tune"):
        return lambda: knnlab(self.root, stage, env={"MLFLOW_TRACKING_URI": uri})

    def read_only_store(self):
        store = self.root / "faults" / "readonly.db"
        store.parent.mkdir(exist_ok=True)
        shutil.copy(self.root / "mlflow.db", store)
        if subprocess.run(["chattr", "+i", str(store)], capture_output=True).returncode:
            return 0, ["skipped: chattr +i (immutable file) is not available here"]
        try:
            return knnlab(self.root, "evaluate", env={"MLFLOW_TRACKING_URI": f"sqlite:///{store}"})
        finally:
            subprocess.run(["chattr", "-i", str(store)], capture_output=True)

    def killed_stage(self):
        """SIGKILL ``dvc repro`` while the tune stage is working on a long grid (thousands
        of candidates: it is searching or logging nested runs when the kill lands)."""
        self.project.params(
            tune__grid__n_neighbors=list(range(1, 60)),
            tune__grid__p=[1, 1.5, 2, 3, 4, float("inf")],
            tune__grid__algorithm=["brute", "kd_tree", "ball_tree"],
        )
        proc = subprocess.Popen(
            ["dvc", "repro", "tune"],
            cwd=self.root,
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # wait for the stage's own process
            found = subprocess.run(["pgrep", "-f", "knnlab tune"], capture_output=True)
            if found.returncode == 0:
                break
            time.sleep(0.2)
        time.sleep(4)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return -9, [f"after the kill, dvc status: {_dvc_status(self.root, 'tune')}"]

    def killed_while_logging(self):
        """SIGKILL evaluate inside its MLflow logging: it has computed and staged every
        output and waits for the store lock, which this script holds."""
        env = {"MLFLOW_TRACKING_URI": f"sqlite:///{self.root / 'mlflow.db'}"}
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
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline and proc.poll() is None:
                if list(self.root.glob(".knnlab-staging.*/reports/metrics.json")):
                    break
                time.sleep(0.2)
            time.sleep(1)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        return -9, [
            f"killed after staging its outputs; dvc status: {_dvc_status(self.root, 'evaluate')}"
        ]

    def logging_fails(self):
        """The artifact store refuses writes in the middle of evaluate's logging."""
        artifacts = self.root / "mlruns" / "knnlab"
        if subprocess.run(["chattr", "+i", str(artifacts)], capture_output=True).returncode:
            return 1, ["skipped: chattr +i (immutable folder) is not available here"]
        try:
            env = {"MLFLOW_TRACKING_URI": f"sqlite:///{self.root / 'mlflow.db'}"}
            return knnlab(self.root, "evaluate", env=env)
        finally:
            subprocess.run(["chattr", "-i", str(artifacts)], capture_output=True)

    def lying_model_header(self):
        """A model file whose X member's .npy header claims 100,000 x 100,000 float64."""
        model = self.root / "models" / "model.npz"
        crafted = self.root / "faults" / "lying.npz"
        crafted.parent.mkdir(exist_ok=True)
        with zipfile.ZipFile(model) as source, zipfile.ZipFile(crafted, "w") as target:
            for info in source.infolist():
                data = source.read(info)
                if info.filename == "X.npy":
                    header = {"descr": "<f8", "fortran_order": False, "shape": (100_000,) * 2}
                    prefix = io.BytesIO()
                    np.lib.format.write_array_header_1_0(prefix, header)
                    data = prefix.getvalue() + data[-64:]  # and 64 bytes of data
                target.writestr(info.filename, data)
        return knnlab(self.root, "predict", "--model", str(crafted), "-", stdin="1,2,3,4\n")

    def store_lock_held(self):
        """Another process holds the SQLite store's lock; the stage waits, then gives up."""
        env = {
            "MLFLOW_TRACKING_URI": f"sqlite:///{self.root / 'mlflow.db'}",
            "KNNLAB_LOCK_TIMEOUT": "3",
        }
        with open(self.root / "mlflow.db.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return knnlab(self.root, "tune", env=env)

    def dvc_repro(self, target: str, **params):
        """``dvc repro <target>`` after a params edit, as a user runs it; the message is the
        knnlab line of its output."""

        def go():
            self.project.params(**params)
            done = subprocess.run(
                ["dvc", "repro", target],
                cwd=self.root,
                env=_env(),
                capture_output=True,
                text=True,
                timeout=300,
            )
            output = (done.stdout + done.stderr).splitlines()
            ours = [line for line in output if line.startswith("knnlab ")]
            return done.returncode, ours[-1:] or output[-1:] or [""]

        return go


def faults(project: Project) -> list[tuple[str, Callable[[], tuple[int, list[str]]]]]:
    """Every fault, named: (name, inject) where inject() -> (exit code, message lines)."""
    cases = FaultCases(project)
    root = project.root
    bad_csv = b"a,b,label\n1,2,x\n1,NaN,y\n3,4,x\n5,6,y\n"
    return [
        ("params: unknown key", cases.stage_with("train", model__k=3)),
        (
            "params: wrong type (n_neighbors: 'five')",
            cases.stage_with("train", model__n_neighbors="five"),
        ),
        ("params: n_neighbors = 0", cases.stage_with("train", model__n_neighbors=0)),
        ("params: n_neighbors > train split", cases.stage_with("train", model__n_neighbors=10_000)),
        ("params: p < 1", cases.stage_with("train", model__p=0.5)),
        ("params: unknown algorithm", cases.stage_with("train", model__algorithm="lsh")),
        ("params: unknown weights", cases.stage_with("train", model__weights="inverse")),
        ("params: unknown dataset", cases.stage_with("fetch", data__dataset="cifar")),
        ("params: test_size = 1.5", cases.stage_with("split", split__test_size=1.5)),
        ("params: empty grid list", cases.stage_with("tune", tune__grid__p=[])),
        ("params: cv > smallest class", cases.stage_with("tune", tune__cv=500)),
        ("params: not YAML", lambda: (project.raw_params("model: [\n"), knnlab(root, "train"))[1]),
        (
            "params: typo in another section (dvc repro train)",
            cases.dvc_repro("train", data__max_row=9),
        ),
        ("params: stray top-level section (dvc repro plot)", cases.dvc_repro("plot", modle__k=3)),
        ("data: NaN in a feature", cases.data_fault("nan.csv", bad_csv)),
        ("data: infinite feature", cases.data_fault("inf.csv", bad_csv.replace(b"NaN", b"inf"))),
        (
            "data: non-numeric feature",
            cases.data_fault("text.csv", bad_csv.replace(b"NaN", b"abc")),
        ),
        ("data: missing label column", cases.data_fault("nolabel.csv", b"a,b,c\n1,2,3\n4,5,6\n")),
        ("data: a single class", cases.data_fault("oneclass.csv", b"a,label\n1,x\n2,x\n3,x\n")),
        ("data: empty file", cases.data_fault("empty.csv", b"")),
        ("data: corrupt parquet", cases.data_fault("corrupt.parquet", b"PAR1 this is not parquet")),
        ("data: corrupt CSV", cases.data_fault("corrupt.csv", b'a,b,label\n1,"2,x\n')),
        ("data: duplicate column names", cases.data_fault("dup.csv", b"a,a,label\n1,2,x\n3,4,y\n")),
        (
            "data: labels 1 and 01 (equal as text)",
            cases.data_fault("labels.csv", b"a,label\n1,1\n2,01\n3,1\n4,01\n"),
        ),
        ("predict: wrong number of features", cases.predict_with("short.csv", b"1,2,3\n")),
        ("predict: image for a model of 4 features", cases.predict_with("a.png", b"\x89PNG no")),
        ("predict: unreadable .npy", cases.predict_with("broken.npy", b"\x93NUMPY garbage")),
        ("model: truncated file", cases.damaged_model("truncated")),
        ("model: tampered arrays", cases.damaged_model("tampered")),
        ("mlflow: server not listening", cases.tracking_fault("http://127.0.0.1:9")),
        ("mlflow: read-only SQLite store", cases.read_only_store),
        ("mlflow: credentials in the URI", cases.tracking_fault("http://bob:hunter2@127.0.0.1:9")),
        ("model: header claims 100,000 x 100,000", cases.lying_model_header),
        (
            "mlflow: a token in the URI's query",
            cases.tracking_fault("http://127.0.0.1:9/?token=abc"),
        ),
        ("mlflow: store lock held by another process", cases.store_lock_held),
        ("mlflow: artifact store refuses writes mid-logging", cases.logging_fails),
        ("kill: SIGKILL in the middle of tune", cases.killed_stage),
        ("kill: SIGKILL while evaluate logs to MLflow", cases.killed_while_logging),
    ]


def run_faults(root: Path, groups: tuple[str, ...] | None = None) -> list[Outcome]:
    """Inject every fault (or those whose name starts with one of ``groups``)."""
    project = Project(root)
    outcomes = []
    for name, inject in faults(project):
        if groups is not None and not name.startswith(groups):
            continue
        before = snapshot(root)
        start = time.perf_counter()
        try:
            code, message = inject()
        finally:
            project.restore()
        seconds = time.perf_counter() - start
        after = snapshot(root)
        changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
        outcomes.append(Outcome(name, code, message[0], changed, seconds))
    return outcomes


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python tests/fault_injection.py PROJECT_DIR (a project after dvc repro)")
        return 2
    outcomes = run_faults(Path(args[0]).resolve())
    for outcome in outcomes:
        print(outcome.line)
    return 0 if all(o.exit_code != 0 and not o.changed for o in outcomes) else 1


if __name__ == "__main__":
    raise SystemExit(main())
