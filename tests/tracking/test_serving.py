"""The logged model, served the standard ways (issue 15): MLflow's pyfunc takes every input
form MLflow's scoring server makes of a request, and returns labels or, with a param, class
probabilities; bad inputs fail with one line saying what is expected. Then real scoring
servers on 127.0.0.1 answer HTTP requests with exactly the model's own predictions:
``knnlab serve`` with no environment on PATH, and ``mlflow models serve --env-manager local``
for ``runs:/`` and ``models:/`` URIs. The model carries knnlab as a wheel that installs and
imports on its own, which is what MLflow's other environment managers build on."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from knnlab.pipeline.io.model_io import load_model, save_model
from knnlab.tracking import models, serving
from knnlab.tracking.flavour import _load_pyfunc

from ..conftest import REPO_ROOT
from ..support.blocked_imports import run_core_only
from .test_logged_model import _fit_and_log, _model_folder

N_FEATURES = 64  # as the digits: {"inputs": [[...64 numbers...]]}
BIN = Path(sys.executable).parent  # the project environment's bin, never activated here
SYSTEM_PATH = "/usr/bin:/bin"  # what a shell has without the environment
SERVING_DOC = (REPO_ROOT / "docs" / "tracking.md").read_text(encoding="utf-8")
# The serving commands of docs/tracking.md, run as written but for the port and placeholders.
KNNLAB_SERVE = ".venv/bin/knnlab serve runs:/<run_id>/model --port 5001"
MLFLOW_SERVE = (
    'PATH="$PWD/.venv/bin:$PATH" .venv/bin/mlflow models serve -m models:/<model_id> '
    "--env-manager local -p 5002"
)
MLFLOW_SERVE_DEFAULT = ".venv/bin/mlflow models serve -m runs:/<run_id>/model -p 5003"
ENV_MANAGERS = os.environ.get("KNNLAB_TEST_ENV_MANAGERS") == "1"


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """One logged model: (uri, run id, model id, model folder, features, labels, proba)."""
    root = tmp_path_factory.mktemp("served")
    uri, run_id, frame, predicted = _fit_and_log(root, n_features=N_FEATURES, seed=3)
    folder = _model_folder(uri, run_id)
    model_id = folder.parent.name
    classifier = load_model(folder / "data" / "model.npz")  # knnlab's own, no MLflow
    proba = pd.DataFrame(classifier.predict_proba(frame.to_numpy()), columns=["left", "right"])
    return uri, run_id, model_id, folder, frame, predicted, proba


@pytest.fixture(scope="module")
def pyfunc(logged):
    import mlflow

    uri, run_id, *_ = logged
    mlflow.set_tracking_uri(uri)
    return mlflow.pyfunc.load_model(f"runs:/{run_id}/model")


# --- the pyfunc, in this process ---------------------------------------------------------


INPUT_FORMS = {  # each made of the feature frame
    "float64 array": lambda frame: frame.to_numpy(),
    "nested list": lambda frame: frame.to_numpy().tolist(),
    "frame with the feature names": lambda frame: frame,
    "frame with the names shuffled, and more": lambda frame: frame[frame.columns[::-1]].assign(
        label="extra columns are ignored"
    ),
    "frame without column names": lambda frame: pd.DataFrame(frame.to_numpy()),
    "mapping of feature name to values": lambda frame: frame.to_dict(orient="list"),
    "list of records": lambda frame: frame.to_dict(orient="records"),
}


@pytest.mark.parametrize("make", INPUT_FORMS.values(), ids=INPUT_FORMS.keys())
def test_pyfunc_takes_arrays_lists_and_frames_with_or_without_names(logged, pyfunc, make):
    *_, frame, predicted, _ = logged
    np.testing.assert_array_equal(pyfunc.predict(make(frame)), predicted)


def test_integer_rows_are_taken_as_numbers(pyfunc, logged):
    *_, frame, _, _ = logged
    rows = np.rint(frame.to_numpy() * 4).astype(np.int64)  # digits-like integer pixels
    expected = pyfunc.predict(rows.astype(np.float64))
    np.testing.assert_array_equal(pyfunc.predict(rows), expected)
    np.testing.assert_array_equal(
        pyfunc.predict(pd.DataFrame(rows, columns=frame.columns)), expected
    )


def test_output_proba_gives_class_probabilities_named_by_label(logged, pyfunc):
    *_, frame, predicted, _ = logged
    proba = pyfunc.predict(frame, params={"output": "proba"})
    assert isinstance(proba, pd.DataFrame) and list(proba.columns) == ["left", "right"]
    pd.testing.assert_frame_equal(proba, logged[-1], check_exact=True)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # The labels are the most probable classes (ties to the first label, as predict does).
    np.testing.assert_array_equal(proba.columns[proba.to_numpy().argmax(axis=1)], predicted)
    np.testing.assert_array_equal(pyfunc.predict(frame, params={"output": "label"}), predicted)


def test_output_set_gives_each_querys_prediction_set_by_label(logged, pyfunc, tmp_path):
    *_, frame, _, proba = logged
    sets = pyfunc.predict(frame, params={"output": "set"})
    assert isinstance(sets, pd.DataFrame) and list(sets.columns) == ["set"]
    # The loop: every label whose vote reaches 1 - 0.7, the threshold the model file keeps.
    expected = [
        [label for label in proba.columns if 1 - row[label] <= 0.7] for _, row in proba.iterrows()
    ]
    assert sets["set"].tolist() == expected
    assert any(len(s) == 2 for s in expected) and any(len(s) == 1 for s in expected)
    # A model file from before prediction sets says so, naming what to re-run.
    old = tmp_path / "old.npz"
    save_model(old, load_model(logged[3] / "data" / "model.npz"))
    with pytest.raises(MlflowException, match="re-run `dvc repro train`"):
        _load_pyfunc(str(old)).predict(frame, params={"output": "set"})


BAD_INPUTS = {
    "too few features": (
        lambda X: X[:, :3],
        "knnlab model: expected rows of 64 features, shape (n_queries, 64); got 3 per row",
    ),
    "one flat row": (
        lambda X: X[0],
        "got an input of shape (64,); put a single row in a list: [[...]]",
    ),
    "not numbers": (
        lambda X: np.full((2, N_FEATURES), "x", dtype=object),
        "knnlab model: expected rows of 64 numbers; the input does not convert to numbers",
    ),
    "NaN": (
        lambda X: np.where(np.eye(2, N_FEATURES, dtype=bool), np.nan, X[:2]),
        "knnlab model: the input holds NaN or infinite values",
    ),
    "no rows": (lambda X: X[:0], "knnlab model: the input has no rows"),
    "misnamed columns": (
        lambda X: pd.DataFrame(X, columns=[f"px{i}" for i in range(N_FEATURES)]),
        "knnlab model: the input's columns lack the features 'pixel_0', 'pixel_1', "
        "'pixel_2', 'pixel_3', 'pixel_4', ... (64 in all); name all 64 training features",
    ),
}


@pytest.mark.parametrize("make, message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_a_bad_input_fails_with_one_line_saying_what_is_expected(logged, pyfunc, make, message):
    *_, frame, _, _ = logged
    with pytest.raises(MlflowException) as failed:
        pyfunc.predict(make(frame.to_numpy()))
    assert message in failed.value.message
    assert "\n" not in failed.value.message, failed.value.message


def test_an_unknown_param_is_dropped_by_mlflow_and_labels_come_back(logged, pyfunc):
    *_, frame, predicted, _ = logged
    np.testing.assert_array_equal(pyfunc.predict(frame, params={"outptu": "proba"}), predicted)


def test_a_model_file_without_feature_names_takes_columns_in_order(logged, tmp_path):
    from knnlab.pipeline.io.model_io import save_model
    from knnlab.tracking.flavour import _load_pyfunc

    *_, folder, frame, predicted, _ = logged
    save_model(tmp_path / "model.npz", load_model(folder / "data" / "model.npz"))  # no extra
    unnamed = _load_pyfunc(str(tmp_path / "model.npz"))
    assert unnamed.feature_names is None
    renamed = frame.set_axis([f"f{i}" for i in range(N_FEATURES)], axis=1)
    np.testing.assert_array_equal(unnamed.predict(renamed), predicted)


def test_an_unknown_output_names_the_allowed_values(logged, pyfunc):
    *_, frame, _, _ = logged
    with pytest.raises(MlflowException) as failed:
        pyfunc.predict(frame, params={"output": "probabilities"})
    assert failed.value.message == (
        "knnlab model: params output must be one of 'label', 'proba', 'set'; got 'probabilities'"
    )


# --- what MLflow's environment managers install ---------------------------------------------


# What the pipeline extra brings (with their own dependencies): none of it is a served
# model's. mlflow itself (the tracking server and UI) depends on matplotlib.
PIPELINE_ONLY = {"dvc", "matplotlib", "pyarrow", "pillow", "ruamel-yaml", "mlflow", "celery",
                 "flask", "alembic", "sqlalchemy", "docker", "gunicorn"}  # fmt: skip


def test_requirements_are_the_lean_wheel_and_mlflow_skinny_under_pinned_versions(logged):
    *_, folder, _, _, _ = logged
    [wheel] = (folder / "wheels").iterdir()
    requirements = (folder / "requirements.txt").read_text().splitlines()
    assert requirements == [
        f"mlflow-skinny=={importlib.metadata.version('mlflow-skinny')}",
        f"wheels/{wheel.name}",
        "-c constraints.txt",
    ]
    pins = dict(line.split("==") for line in (folder / "constraints.txt").read_text().split())
    assert pins["numpy"] == np.__version__ and pins["pandas"] == pd.__version__
    assert pins["numba"] == importlib.metadata.version("numba")
    assert "pytest" not in pins, "only what knnlab and mlflow need: the rest would be warned of"
    assert not PIPELINE_ONLY & set(pins), sorted(PIPELINE_ONLY & set(pins))
    requirements = [Requirement(r) for r in importlib.metadata.requires("knnlab")]
    core = {canonicalize_name(r.name) for r in requirements if r.marker is None}
    assert core <= set(pins), f"every core dependency pinned: {sorted(core - set(pins))}"
    assert "knnlab" not in pins and "mlflow-skinny" not in pins, pins


def test_the_core_dependencies_are_what_the_library_and_the_flavour_import(logged, tmp_path):
    """knnlab's core (pyproject's ``dependencies``) is enough for the search, the
    estimators, the metrics, the grid search and the logged model behind MLflow's scoring
    server: run with every pipeline-only package made unimportable."""
    *_, folder, frame, predicted, _ = logged
    rows = tmp_path / "rows.npy"
    np.save(rows, frame.to_numpy())
    probe = f"""
import numpy as np
from knnlab import metrics, model_selection
from knnlab.estimators import KNNClassifier
from knnlab.neighbors import PreparedSearch
from knnlab.tracking import flavour
from mlflow.pyfunc import scoring_server  # what mlflow models serve runs
X = np.load({str(rows)!r})
y = np.arange(len(X)) % 2
model = KNNClassifier(3).fit(X, y)
assert metrics.accuracy_score(y, model.predict(X)) >= 0
served = flavour._load_pyfunc({str(folder / "data" / "model.npz")!r})
print(" ".join(map(str, served.predict(X))))
print(" ".join(sorted({{m.split(".")[0] for m in sys.modules}} & set(HIDDEN))))
"""
    done = run_core_only(probe, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    labels, *rest = done.stdout.splitlines()
    assert labels.split() == list(predicted)
    assert rest == [""], f"pipeline-only modules imported: {rest}"


def test_the_wheel_holds_the_installed_knnlab_and_installs_on_its_own(logged, tmp_path):
    *_, folder, _, _, _ = logged
    [wheel] = (folder / "wheels").iterdir()
    assert wheel.name == models.knnlab_wheel(tmp_path).name, "the same code, the same wheel"
    assert wheel.read_bytes() == (tmp_path / wheel.name).read_bytes(), "built reproducibly"
    package = Path(models.__file__).parents[1]
    with zipfile.ZipFile(wheel) as archive:
        modules = {n: archive.read(n) for n in archive.namelist() if n.startswith("knnlab/")}
    installed = {
        f"knnlab/{p.relative_to(package).as_posix()}": p.read_bytes() for p in package.rglob("*.py")
    }
    assert modules == installed
    if importlib.util.find_spec("pip") is None:
        pytest.skip("no pip in this environment to install the wheel with")
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--disable-pip-version-check", "--target", str(target), str(wheel)],
        check=True,
    )  # fmt: skip
    probe = (
        "import importlib.metadata, knnlab.tracking.flavour as f; "
        "print(f.__file__); print(importlib.metadata.version('knnlab'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env={**os.environ, "PYTHONPATH": str(target)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    where, version = done.stdout.split()
    assert where.startswith(str(target)), f"imported {where}, not the installed wheel"
    assert wheel.name.startswith(f"knnlab-{version}-")


# --- real servers on 127.0.0.1 ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A scoring server started as a real process in its own process group."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path, log: Path):
        self.port = int(argv[argv.index("-p" if "-p" in argv else "--port") + 1])
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def wait_ready(self, timeout: float = 120) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.process.poll() is not None:
                pytest.fail(f"server exited with {self.process.returncode}:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ping", timeout=2):
                    return time.monotonic() - start
            except OSError:
                time.sleep(0.2)
        pytest.fail(f"server not ready after {timeout} s:\n{self.output()}")

    def post(self, body: dict) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/invocations",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                return reply.status, json.load(reply)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        """SIGTERM to the process group (MLflow's server runs uvicorn as a child), then
        SIGKILL if it has not gone in 10 s."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)


def _env(uri: str, path: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PATH")}
    return {**env, "PATH": path, "MLFLOW_TRACKING_URI": uri}


def _readme_argv(command: str, port: int, **ids: str) -> list[str]:
    """A documented command as argv: placeholders filled, the port replaced, the environment's
    programs by their absolute path (the doc runs them from the repository root), and
    a leading ``PATH=...`` assignment dropped (the caller sets PATH)."""
    assert command in SERVING_DOC, f"docs/tracking.md no longer shows {command!r}"
    for name, value in ids.items():
        command = command.replace(f"<{name}>", value)
    argv = [arg for arg in shlex.split(command) if not arg.startswith("PATH=")]
    argv[-1] = str(port)
    return [
        str(BIN / arg.removeprefix(".venv/bin/")) if i == 0 else arg for i, arg in enumerate(argv)
    ]


@pytest.fixture(scope="module")
def servers(logged, tmp_path_factory):
    """Both ways of serving in docs/tracking.md, started together: ``knnlab serve
    runs:/<run_id>/model`` with PATH holding only the system's directories, and ``mlflow
    models serve -m models:/<model_id> --env-manager local`` with the environment's bin first
    on PATH. Stopped whatever happens."""
    uri, run_id, model_id, *_ = logged
    cwd = tmp_path_factory.mktemp("serve-cwd")  # no params.yaml, no mlflow.db: the env says
    started = []
    try:
        knnlab = Server(
            _readme_argv(KNNLAB_SERVE, _free_port(), run_id=run_id),
            _env(uri, SYSTEM_PATH), cwd, cwd / "knnlab-serve.log",
        )  # fmt: skip
        started.append(knnlab)
        mlflow_cli = Server(
            _readme_argv(MLFLOW_SERVE, _free_port(), model_id=model_id),
            _env(uri, f"{BIN}:{SYSTEM_PATH}"), cwd, cwd / "mlflow-serve.log",
        )  # fmt: skip
        started.append(mlflow_cli)
        for server in started:
            server.wait_ready()
        yield knnlab, mlflow_cli
    finally:
        for server in started:
            server.stop()


def _bodies(frame: pd.DataFrame) -> dict[str, dict]:
    rows = frame.to_numpy().tolist()
    return {
        "inputs": {"inputs": rows},
        "instances": {"instances": rows},
        "dataframe_split with columns": {
            "dataframe_split": {"columns": list(frame.columns), "data": rows}
        },
        "dataframe_split without columns": {"dataframe_split": {"data": rows}},
        "dataframe_records": {"dataframe_records": frame.to_dict(orient="records")},
        "instances as records": {"instances": frame.to_dict(orient="records")},
        "inputs as columns": {"inputs": frame.to_dict(orient="list")},
    }


@pytest.mark.slow
def test_knnlab_serve_answers_every_request_form_without_the_environment_on_path(logged, servers):
    *_, frame, predicted, proba = logged
    knnlab, _ = servers
    for form, body in _bodies(frame).items():
        status, reply = knnlab.post(body)
        assert status == 200, (form, reply)
        assert reply["predictions"] == predicted.tolist(), form
    status, reply = knnlab.post(
        {"inputs": frame.to_numpy().tolist(), "params": {"output": "proba"}}
    )
    assert status == 200, reply
    assert reply["predictions"] == proba.to_dict(orient="records"), "exact floats, by label"
    status, reply = knnlab.post({"inputs": frame.to_numpy().tolist(), "params": {"output": "set"}})
    assert status == 200, reply
    sets = [[c for c in proba.columns if 1 - row[c] <= 0.7] for _, row in proba.iterrows()]
    assert reply["predictions"] == [{"set": s} for s in sets], "each query's prediction set"


def _readme_requests() -> list[dict]:
    """The request bodies docs/tracking.md sends with curl: its ROW in each printf template."""
    [row] = re.findall(r"^ROW='(.*)'$", SERVING_DOC, flags=re.MULTILINE)
    templates = re.findall(r"""^printf '(.*)' "\$ROW" \| curl""", SERVING_DOC, flags=re.MULTILINE)
    assert len(templates) == 3, templates
    return [json.loads(template.replace("%s", row)) for template in templates]


@pytest.mark.slow
def test_the_readme_requests_get_a_label_and_probabilities(logged, servers):
    knnlab, _ = servers
    label, proba, split = (knnlab.post(body) for body in _readme_requests())
    assert label[0] == 200 and label[1]["predictions"] in (["left"], ["right"]), label
    assert proba[0] == 200 and list(proba[1]["predictions"][0]) == ["left", "right"], proba
    assert split == label
    for endpoint in ("ping", "health", "version"):
        url = f"http://127.0.0.1:{knnlab.port}/{endpoint}"
        with urllib.request.urlopen(url, timeout=10) as reply:
            assert reply.status == 200, endpoint


@pytest.mark.slow
def test_a_bad_request_gets_400_and_the_reason_on_the_last_line(logged, servers):
    *_, frame, _, _ = logged
    knnlab, _ = servers
    status, reply = knnlab.post({"inputs": frame.to_numpy()[:2, :3].tolist()})
    assert status == 400, reply
    # MLflow's server puts its own line, with the data it received, first.
    assert reply["message"].splitlines()[-1] == (
        "Error: knnlab model: expected rows of 64 features, shape (n_queries, 64); got 3 per row"
    )
    status, reply = knnlab.post({"inputs": [[0] * N_FEATURES], "params": {"output": "probs"}})
    assert status == 400 and reply["message"].endswith(
        "knnlab model: params output must be one of 'label', 'proba', 'set'; got 'probs'"
    ), reply


@pytest.mark.slow
def test_mlflow_models_serve_serves_models_uri_with_the_environment_on_path(logged, servers):
    *_, frame, predicted, proba = logged
    _, mlflow_cli = servers
    rows = frame.to_numpy().tolist()
    status, reply = mlflow_cli.post({"inputs": rows})
    assert (status, reply["predictions"]) == (200, predicted.tolist()), reply
    status, reply = mlflow_cli.post(
        {"dataframe_split": {"data": rows}, "params": {"output": "proba"}}
    )
    assert (status, reply["predictions"]) == (200, proba.to_dict(orient="records")), reply


@pytest.mark.slow
def test_mlflow_local_env_manager_needs_the_environment_on_path(logged, tmp_path):
    """Why ``knnlab serve`` exists: MLflow 3.17 starts the server as ``uvicorn`` by name.
    If this fails, MLflow found it another way: simplify docs/tracking.md."""
    uri, run_id, *_ = logged
    path = f"{Path(shutil.which('bash')).parent}:{SYSTEM_PATH}"
    if shutil.which("uvicorn", path=path):
        pytest.skip("a uvicorn outside the environment is on the system PATH")
    done = subprocess.run(
        [str(BIN / "mlflow"), "models", "serve", "-m", f"runs:/{run_id}/model",
         "--env-manager", "local", "-p", str(_free_port())],
        env=_env(uri, path), cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert "uvicorn: not found" in done.stderr, done.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.skipif(
    not ENV_MANAGERS,
    reason="downloads about 60 packages from PyPI (50 s here): set KNNLAB_TEST_ENV_MANAGERS=1",
)
@pytest.mark.parametrize("env_manager", ["virtualenv", "uv"])
def test_env_manager_builds_the_model_environment_and_serves(logged, tmp_path, env_manager):
    """MLflow's own environment managers install the logged wheel and the pinned versions
    into a fresh environment (in ``tmp_path``, not ``~/.mlflow/envs``) and serve from it."""
    tool = {"virtualenv": "pyenv", "uv": "uv"}[env_manager]
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if Path(p) != BIN)
    if not shutil.which(tool, path=path):
        pytest.skip(f"{env_manager} needs {tool} on PATH")
    uri, run_id, *_, frame, predicted, _ = logged
    argv = _readme_argv(MLFLOW_SERVE_DEFAULT, _free_port(), run_id=run_id)
    if env_manager != "virtualenv":  # the default
        argv[-2:-2] = ["--env-manager", env_manager]
    env = {**_env(uri, path), "MLFLOW_ENV_ROOT": str(tmp_path / "envs")}
    server = Server(argv, env, tmp_path, tmp_path / "serve.log")
    try:
        took = server.wait_ready(timeout=1200)
        status, reply = server.post({"inputs": frame.to_numpy().tolist()})
        assert (status, reply["predictions"]) == (200, predicted.tolist()), reply
    finally:
        server.stop()
    [python] = (tmp_path / "envs").glob("*/bin/python")
    listing = "import importlib.metadata as m; print(*(d.name for d in m.distributions()))"
    names = subprocess.run(
        [str(python), "-c", listing], capture_output=True, text=True, check=True
    ).stdout.split()
    served = {canonicalize_name(name) for name in names}
    assert {"knnlab", "mlflow-skinny", "numba"} <= served, sorted(served)
    assert not PIPELINE_ONLY & served, f"pipeline-only packages served: {PIPELINE_ONLY & served}"
    print(f"{env_manager}: an environment of {len(served)} packages, a server in {took:.0f} s")


def test_the_checked_loader_takes_a_models_uri(logged):
    import mlflow

    uri, _, model_id, *_, frame, predicted, _ = logged
    mlflow.set_tracking_uri(uri)
    model = models.load_checked_model(f"models:/{model_id}")
    np.testing.assert_array_equal(model.predict(frame), predicted)


def test_knnlab_serve_refuses_a_tampered_model_before_serving(
    logged, tmp_path, monkeypatch, capsys
):
    import yaml

    from knnlab import cli

    uri, *_, folder, _, _, _ = logged
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    meta = yaml.safe_load((copy / "MLmodel").read_text())
    meta["flavors"]["python_function"]["loader_module"] = "mlflow.sklearn"
    (copy / "MLmodel").write_text(yaml.safe_dump(meta))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    with socket.socket() as taken:  # were the model served, binding would fail, not block
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        assert cli.main(["serve", str(copy), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert "has loader_module = 'mlflow.sklearn', expected 'knnlab.tracking.flavour'" in err


def test_knnlab_serve_uses_the_stages_store_when_the_environment_names_none(
    tmp_path, monkeypatch, capsys
):
    from knnlab import cli

    store = f"sqlite:///{tmp_path / 'params-store.db'}"
    (tmp_path / "params.yaml").write_text(f"mlflow:\n  tracking_uri: {store}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert cli.main(["serve", "runs:/0123456789abcdef0123456789abcdef/model"]) == 2
    assert f"in MLflow store {store}:" in capsys.readouterr().err


def test_knnlab_serve_names_a_run_that_is_not_in_the_store(logged, monkeypatch, capsys):
    from knnlab import cli

    uri, *_ = logged
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert cli.main(["serve", "runs:/0123456789abcdef0123456789abcdef/model"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("knnlab serve: error: runs:/0123456789abcdef0123456789abcdef/model in ")
    assert len(err.splitlines()) == 1, err


# --- what the served model refuses, before MLflow reads it ------------------------------------


def _raw_request(port: int, head: str, body=(), read_while_sending: bool = True):
    """Send ``head`` (request line and headers) and then each chunk of ``body`` over a raw
    socket, stopping as soon as the server answers or closes (a server that refuses a body
    does not read the rest of it); returns (status, JSON reply, whether the server said it
    closes the connection)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head.encode("latin-1") + b"\r\n")
        for chunk in body:
            if read_while_sending and select.select([sock], [], [], 0)[0]:
                break  # an answer (or a close) came before the body was all sent
            try:
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        reply = b""
        while b"\r\n\r\n" not in reply or len(reply) < _reply_length(reply):
            try:
                data = sock.recv(65536)
            except ConnectionResetError:  # the refused rest of the body reset it
                break
            if not data:
                break
            reply += data
    head_part, _, content = reply.partition(b"\r\n\r\n")
    status = int(head_part.split(b" ", 2)[1])
    closes = re.search(rb"(?im)^connection: *close\r?$", head_part) is not None
    return status, json.loads(content), closes


def _reply_length(reply: bytes) -> int:
    head, _, _ = reply.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length: *(\d+)", head)
    return len(head) + 4 + int(length.group(1)) if length else len(reply) + 1


def _post_head(length: int | None, content_type: str = "application/json") -> str:
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    return (
        f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"{framing}\r\n"
    )


def _chunked(data: bytes, size: int = 2**20):
    for start in range(0, len(data), size):
        piece = data[start : start + size]
        yield b"%x\r\n%s\r\n" % (len(piece), piece)
    yield b"0\r\n\r\n"


def _padded_request(frame: pd.DataFrame, size: int) -> bytes:
    """A valid request for the first row, padded with JSON whitespace to ``size`` bytes."""
    body = json.dumps({"inputs": frame.to_numpy()[:1].tolist()}).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


@pytest.mark.slow
def test_an_unknown_params_key_is_refused_naming_the_allowed_ones(logged, servers):
    *_, frame, _, _ = logged
    knnlab, _ = servers
    split = {"columns": list(frame.columns), "data": frame.to_numpy()[:2].tolist()}
    status, reply = knnlab.post({"dataframe_split": split, "params": {"ouput": "proba"}})
    assert (status, reply["message"]) == (
        400, "knnlab serve: unknown params 'ouput'; the model's params: 'output'"
    )  # fmt: skip
    status, reply = knnlab.post({"inputs": split["data"], "params": ["output", "proba"]})
    assert (status, reply["message"]) == (
        400,
        "knnlab serve: params must be a JSON object; got an array; the model's params: 'output'",
    )
    status, reply = knnlab.post({"inputs": split["data"], "params": {"output": "proba"}})
    assert status == 200 and list(reply["predictions"][0]) == ["left", "right"], reply


@pytest.mark.slow
def test_many_long_unknown_params_are_quoted_short(servers):
    knnlab, _ = servers
    params = {f"{'x' * 100}{i}": 1 for i in range(8)}
    status, reply = knnlab.post({"inputs": [[0.0] * N_FEATURES], "params": params})
    assert status == 400
    assert reply["message"] == (
        "knnlab serve: unknown params " + ", ".join([f"'{'x' * 40}'..."] * 5)
        + ", ... (8 in all); the model's params: 'output'"
    )  # fmt: skip


@pytest.mark.slow
def test_a_body_declared_over_the_limit_gets_413_before_it_is_read(logged, servers):
    """219 MB announced, 1 MiB sent: the server answers without reading it, closes the
    connection, and goes on answering others."""
    *_, frame, predicted, _ = logged
    knnlab, _ = servers
    status, reply, closed = _raw_request(
        knnlab.port, _post_head(219_000_000), [b"[" * 2**20], read_while_sending=False
    )
    assert (status, closed) == (413, True), reply
    assert reply["message"] == (
        f"knnlab serve: the request body is 219,000,000 bytes, more than the "
        f"{serving.MAX_BODY_BYTES:,} this server takes; send fewer rows per request, or start "
        "the server with a larger limit"
    )
    status, reply = knnlab.post({"inputs": frame.to_numpy().tolist()})
    assert (status, reply["predictions"]) == (200, predicted.tolist())


@pytest.mark.slow
def test_a_streamed_body_is_counted_and_refused_past_the_limit(logged, servers):
    *_, frame, _, _ = logged
    knnlab, _ = servers
    over = _padded_request(frame, serving.MAX_BODY_BYTES + 2**20)
    status, reply, closed = _raw_request(knnlab.port, _post_head(None), _chunked(over))
    assert (status, closed) == (413, True), reply
    assert reply["message"].startswith(
        f"knnlab serve: the request body is over {serving.MAX_BODY_BYTES:,} bytes, more than"
    ), reply


@pytest.mark.slow
def test_a_body_of_exactly_the_limit_is_served_and_one_byte_more_is_not(logged, servers):
    *_, frame, predicted, _ = logged
    knnlab, _ = servers
    for size, expected in ((serving.MAX_BODY_BYTES, 200), (serving.MAX_BODY_BYTES + 1, 413)):
        body = _padded_request(frame, size)
        assert len(body) == size
        status, reply, _ = _raw_request(knnlab.port, _post_head(size), [body])
        assert status == expected, (size, reply)
    status, reply, _ = _raw_request(
        knnlab.port, _post_head(None), _chunked(_padded_request(frame, serving.MAX_BODY_BYTES))
    )
    assert (status, reply["predictions"]) == (200, predicted[:1].tolist()), reply


@pytest.mark.slow
@pytest.mark.parametrize("depth", [serving.MAX_JSON_DEPTH + 1, 990, 100_000])
def test_json_nested_too_deep_gets_400_saying_so(servers, depth):
    """33 levels: more than any request form needs; 990: Python's parser copes, MLflow's
    handling after it did not (500); 100,000: Python's parser gives up (500)."""
    knnlab, _ = servers
    body = b'{"inputs": ' + b"[" * depth + b"1" + b"]" * depth + b"}"
    status, reply, _ = _raw_request(knnlab.port, _post_head(len(body)), [body])
    assert status == 400, reply
    assert reply["message"].startswith(
        f"knnlab serve: the request's JSON nests arrays and objects more than "
        f"{serving.MAX_JSON_DEPTH} deep; send rows as in the README"
    ), reply
    with urllib.request.urlopen(f"http://127.0.0.1:{knnlab.port}/ping", timeout=10) as ping:
        assert ping.status == 200


@pytest.mark.slow
def test_a_body_that_is_not_json_gets_400_without_quoting_it(servers):
    knnlab, _ = servers
    body = b'{"inputs": [[1, 2]], "note": "not-to-be-echoed'
    status, reply, _ = _raw_request(knnlab.port, _post_head(len(body)), [body])
    assert status == 400
    assert reply["message"].startswith("knnlab serve: the request body is not JSON: ")
    assert "not-to-be-echoed" not in reply["message"], reply
    assert "\n" not in reply["message"]


@pytest.mark.slow
def test_a_request_without_content_type_gets_415_naming_the_types(servers):
    knnlab, _ = servers
    body = json.dumps({"inputs": [[0.0] * N_FEATURES]})
    head = f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
    status, reply, _ = _raw_request(knnlab.port, head, [body.encode()])
    assert status == 415 and "send Content-Type: application/json" in reply["message"], reply


def _serve_in_a_process(uri: str, model_uri: str, port: int, log: Path, **options) -> Server:
    """``serving.serve`` with ``options`` (as ``knnlab serve`` calls it), in a process."""
    code = (
        "import sys; from knnlab.tracking import serving; "
        f"serving.serve({uri!r}, {model_uri!r}, '127.0.0.1', {port}, **{options!r})"
    )
    argv = [sys.executable, "-c", code, "--port", str(port)]  # --port: where Server looks
    return Server(argv, _env(uri, SYSTEM_PATH), log.parent, log)


@pytest.mark.slow
def test_the_body_limit_is_configurable(logged, tmp_path):
    uri, run_id, *_, frame, predicted, _ = logged
    server = _serve_in_a_process(
        uri, f"runs:/{run_id}/model", _free_port(), tmp_path / "serve.log", max_body_bytes=4096
    )
    try:
        server.wait_ready()
        small = _padded_request(frame, 4096)
        status, reply, _ = _raw_request(server.port, _post_head(len(small)), [small])
        assert (status, reply["predictions"]) == (200, predicted[:1].tolist()), reply
        status, reply, _ = _raw_request(server.port, _post_head(4097), [small + b" "])
        assert status == 413 and "more than the 4,096 this server takes" in reply["message"]
    finally:
        server.stop()
    assert "(request bodies up to 4,096 bytes)" in server.output()


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_knnlab_serve_stops_on_sigterm_or_ctrl_c_with_one_line(logged, tmp_path, signum):
    uri, run_id, *_ = logged
    argv = [str(BIN / "knnlab"), "serve", f"runs:/{run_id}/model", "--port", str(_free_port())]
    server = Server(argv, _env(uri, SYSTEM_PATH), tmp_path, tmp_path / "serve.log")
    try:
        server.wait_ready()
        server.process.send_signal(signum)  # to knnlab alone, as a supervisor or a shell does
        code = server.process.wait(60)
    finally:
        server.stop()
    output = server.output()
    assert code == 0, output
    assert output.rstrip().splitlines()[-1] == f"knnlab serve: stopped ({signum.name})"
    assert "Traceback" not in output, output


def test_serve_refuses_a_port_outside_1_to_65535_before_loading_anything():
    for port in (0, 65536, 99999, -1):
        with pytest.raises(ValueError) as refused:
            serving.serve("sqlite:///nowhere.db", "runs:/0123/model", "127.0.0.1", port)
        assert str(refused.value) == f"--port {port} is not a TCP port: expected 1 to 65535"
    assert not Path("nowhere.db").exists()


def test_serve_names_a_port_something_listens_on(logged):
    from knnlab.tracking.errors import TrackingError

    uri, run_id, *_ = logged
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(TrackingError, match=f"^cannot listen on 127.0.0.1:{port} "):
            serving.serve(uri, f"runs:/{run_id}/model", "127.0.0.1", port)


def test_served_connections_send_small_responses_at_once():
    """A response's headers and body go out in two writes; with Nagle's algorithm the
    body would wait for the client's delayed acknowledgement (about 40 ms per request on a
    kept-alive connection). The servers' listening socket sets TCP_NODELAY, and every
    connection it accepts has it."""
    from knnlab.tracking.server import bind

    listener = bind("127.0.0.1", 0)
    with listener:
        listener.listen()
        with socket.create_connection(listener.getsockname()) as client:
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert client.fileno() == -1
