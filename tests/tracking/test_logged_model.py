"""The model an evaluate run logs to MLflow: loaded through the installed knnlab, never
through code or pickles from the artifact store, and refused when its ``MLmodel`` was
rewritten (real files tampered with in a real SQLite store); wide data logs too."""

from __future__ import annotations

import contextlib
import pickle
import shutil
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd
import pytest
import yaml

from knnlab import KNNClassifier
from knnlab.pipeline.io.model_io import ModelFileError, save_model
from knnlab.pipeline.io.params import MlflowParams
from knnlab.tracking import models, runs

from ..conftest import REPO_ROOT
from ..support import mlflow_store


def _fit_and_log(root: Path, n_features: int, seed: int):
    """Fit a model on random rows, save it under ``root`` with its feature names (as the
    train stage does) and log it as evaluate does, to a store in ``root``. Returns (uri, run
    id, feature frame, the model's predictions)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(30, n_features))
    y = np.array(["left", "right"])[rng.integers(0, 2, 30)]
    frame = pd.DataFrame(X, columns=[f"pixel_{i}" for i in range(n_features)])
    model = KNNClassifier(3).fit(X, y)
    # A prediction-set threshold as train keeps it: a class is in a set from a vote of 0.3.
    extra = {"feature_columns": list(frame.columns), "coverage": 0.9, "conformal_threshold": 0.7}
    save_model(root / "model.npz", model, extra=extra)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        with runs.stage_run(MlflowParams(experiment="logged"), "evaluate", "e") as run:
            run.log_dataset(frame.assign(label=y), "random-train", "training", "label")
            run.log_model(root / "model.npz", frame.head(5), model.predict(X[:5]))
    return uri, run.record.run_id, frame, model.predict(X)


def _model_folder(uri: str, run_id: str) -> Path:
    """The logged model's folder inside the artifact store (what an attacker would edit)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    [output] = client.get_run(run_id).outputs.model_outputs
    location = client.get_logged_model(output.model_id).artifact_location
    assert location.startswith("file://"), location
    return Path(unquote(urlsplit(location).path))


@pytest.fixture(scope="module")
def logged_once(tmp_path_factory):
    """One logged model, and a pristine copy of its folder."""
    root = tmp_path_factory.mktemp("logged")
    uri, run_id, frame, predicted = _fit_and_log(root, n_features=4, seed=0)
    folder = _model_folder(uri, run_id)
    pristine = root / "pristine"
    shutil.copytree(folder, pristine)
    return uri, run_id, folder, pristine, frame, predicted


@pytest.fixture
def logged(logged_once):
    """The logged model as logged: each test tampers with its own fresh copy."""
    uri, run_id, folder, pristine, frame, predicted = logged_once
    shutil.rmtree(folder)
    shutil.copytree(pristine, folder)
    return uri, run_id, folder, frame, predicted


def _wheel_name() -> str:
    """The name of the wheel of the installed knnlab, as log_model names it."""
    with tempfile.TemporaryDirectory() as tmp:
        return models.knnlab_wheel(Path(tmp)).name


def _plain_mlflow_load(uri: str, run_id: str):
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow.pyfunc.load_model(f"runs:/{run_id}/model")


class _Touch:
    """A pickle that, when loaded, creates ``path``: what a malicious pickle would run."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_logged_model_is_data_for_an_installed_loader(logged):
    uri, run_id, folder, frame, predicted = logged
    np.testing.assert_array_equal(models.load_logged_model(uri, run_id).predict(frame), predicted)
    np.testing.assert_array_equal(_plain_mlflow_load(uri, run_id).predict(frame), predicted)
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert "data/model.npz" in files and "MLmodel" in files, files
    assert not [f for f in files if f.endswith((".py", ".pkl", ".pickle"))], files
    # The one archive of code: for MLflow's environment managers, never read by the loader.
    assert [f for f in files if f.startswith("wheels/")] == [f"wheels/{_wheel_name()}"], files
    meta = yaml.safe_load((folder / "MLmodel").read_text())
    assert meta["flavors"]["python_function"]["loader_module"] == "knnlab.tracking.flavour"
    assert meta["flavors"]["python_function"]["data"] == "data/model.npz"
    local = [str(folder.parents[4]), str(REPO_ROOT), str(Path.cwd()), "file:/"]
    for name in files:
        if name.endswith((".npz", ".whl")):
            continue
        text = (folder / name).read_text()
        assert not [p for p in local if p in text], f"{name} holds a local path:\n{text}"


def test_code_and_pickles_added_to_the_folder_never_run(logged, tmp_path):
    uri, run_id, folder, frame, predicted = logged
    marker = tmp_path / "pwned"
    payload = f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
    for name in ("_mlflow_pyfunc.py", "python_model.py", "code/knnlab/_mlflow_pyfunc.py"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(payload)
    (folder / "knnlab").mkdir()
    (folder / "knnlab" / "__init__.py").write_text(payload)
    for name in ("python_model.pkl", "data/model.pkl"):
        (folder / name).write_bytes(pickle.dumps(_Touch(marker)))
    np.testing.assert_array_equal(models.load_logged_model(uri, run_id).predict(frame), predicted)
    np.testing.assert_array_equal(_plain_mlflow_load(uri, run_id).predict(frame), predicted)
    assert not marker.exists(), "code from the artifact store ran"


def _models_from_code(conf, folder, marker):
    (folder / "evil.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\n")
    conf.update(loader_module="mlflow.pyfunc.model", model_code_path="evil.py")
    del conf["data"]  # MLflow looks for the code file in the data path


def _pickled_python_model(conf, folder, marker):
    (folder / "python_model.pkl").write_bytes(pickle.dumps(_Touch(marker)))
    conf.update(
        loader_module="mlflow.pyfunc.model",
        python_model="python_model.pkl",
        cloudpickle_version="3.1.1",
    )


def _code_paths(conf, folder, marker):
    (folder / "code" / "knnlab").mkdir(parents=True)
    (folder / "code" / "knnlab" / "__init__.py").write_text(f"open({str(marker)!r}, 'w')\n")
    conf["code"] = "code"


TAMPERED = {
    "models from code": (_models_from_code, "python_function keys ['model_code_path']"),
    "pickled python_model": (
        _pickled_python_model,
        "python_function keys ['cloudpickle_version', 'python_model']",
    ),
    "code paths": (_code_paths, "has python_function code = 'code'; knnlab logs no code"),
    "other loader": (
        lambda conf, folder, marker: conf.update(loader_module="mlflow.sklearn"),
        "has loader_module = 'mlflow.sklearn', expected 'knnlab.tracking.flavour'",
    ),
    "data outside": (
        lambda conf, folder, marker: conf.update(data="../../../../model.npz"),
        "has data = '../../../../model.npz', expected a data/<name>.npz",
    ),
    "model config": (
        lambda conf, folder, marker: conf.update(model_config={"x": 1}),
        "python_function keys ['model_config']",
    ),
}


@pytest.mark.parametrize("tamper", TAMPERED.values(), ids=TAMPERED.keys())
def test_rewritten_mlmodel_is_refused_and_nothing_runs(logged, tmp_path, tamper):
    uri, run_id, folder, _, _ = logged
    rewrite, message = tamper
    marker = tmp_path / "pwned"
    meta = yaml.safe_load((folder / "MLmodel").read_text())
    rewrite(meta["flavors"]["python_function"], folder, marker)
    (folder / "MLmodel").write_text(yaml.safe_dump(meta))
    with pytest.raises(ModelFileError, match="is not a model knnlab logged") as refused:
        models.load_logged_model(uri, run_id)
    assert message in str(refused.value)
    assert not marker.exists(), "code from the artifact store ran"


def test_the_models_from_code_rewrite_is_live_for_plain_mlflow(logged, tmp_path):
    """What the refusal prevents: MLflow itself runs the rewritten model's code."""
    uri, run_id, folder, _, _ = logged
    marker = tmp_path / "pwned"
    meta = yaml.safe_load((folder / "MLmodel").read_text())
    _models_from_code(meta["flavors"]["python_function"], folder, marker)
    (folder / "MLmodel").write_text(yaml.safe_dump(meta))
    with contextlib.suppress(Exception):  # evil.py sets no model: MLflow fails after running it
        _plain_mlflow_load(uri, run_id)
    assert marker.exists()


@pytest.mark.parametrize(
    ("rewrite", "message"),
    [
        (lambda meta: meta["flavors"].update(sklearn={"pickled_model": "model.pkl"}), "flavours"),
        (lambda meta: meta.pop("flavors"), "has the flavours None"),
        (lambda meta: meta.update(saved_input_example_info={"artifact_path": "/x"}), "file name"),
    ],
    ids=["extra pickle flavour", "no flavours", "example outside"],
)
def test_other_mlmodel_changes_are_refused(logged, rewrite, message):
    uri, run_id, folder, _, _ = logged
    meta = yaml.safe_load((folder / "MLmodel").read_text())
    rewrite(meta)
    (folder / "MLmodel").write_text(yaml.safe_dump(meta))
    with pytest.raises(ModelFileError, match=message):
        models.load_logged_model(uri, run_id)


def test_mlmodel_is_read_with_safe_yaml(logged, tmp_path):
    uri, run_id, folder, _, _ = logged
    marker = tmp_path / "pwned"
    (folder / "MLmodel").write_text(
        f"flavors: !!python/object/apply:pathlib.Path.touch [!!python/object/apply:pathlib."
        f"PosixPath [{str(marker)!r}]]\n"
    )
    with pytest.raises(ModelFileError, match="is not valid YAML"):
        models.load_logged_model(uri, run_id)
    assert not marker.exists()


def test_tampered_npz_fails_its_checksum(logged):
    uri, run_id, folder, _, _ = logged
    npz = folder / "data" / "model.npz"
    with np.load(npz, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["X"] = arrays["X"] + 0.5
    np.savez(npz, **arrays)
    with pytest.raises(ModelFileError, match="fails its SHA-256 check"):
        models.load_logged_model(uri, run_id)
    with pytest.raises(ModelFileError, match="fails its SHA-256 check"):
        _plain_mlflow_load(uri, run_id)


def test_50000_feature_columns_log_and_load(tmp_path):
    """Beyond MLflow's 1 MiB dataset schema: array datasets and a one-row array example
    (the signature has no input schema at any width: the flavour checks the input)."""
    uri, run_id, frame, predicted = _fit_and_log(tmp_path, n_features=50_000, seed=1)
    [(name, digest, context)] = mlflow_store.run_inputs(uri, run_id)
    assert (name, context) == ("random-train", "training") and digest
    model = models.load_logged_model(uri, run_id)
    np.testing.assert_array_equal(model.predict(frame), predicted)
    np.testing.assert_array_equal(model.predict(frame.to_numpy()), predicted)
    folder = _model_folder(uri, run_id)
    meta = yaml.safe_load((folder / "MLmodel").read_text())
    assert meta["signature"]["inputs"] is None, meta["signature"]
    assert meta["saved_input_example_info"]["type"] == "ndarray", meta["saved_input_example_info"]
    assert (folder / "input_example.json").stat().st_size < 2_000_000, "one row, not five"
