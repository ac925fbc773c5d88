"""The knnlab model in MLflow: logged as a pyfunc whose loader is the installed
:mod:`knnlab.tracking.flavour` (no code, no pickle in the artifacts), checked before it is
loaded back, with its signature and the datasets it was trained and tested on."""

from __future__ import annotations

import re
from pathlib import Path


def load_logged_model(tracking_uri: str, run_id: str):
    """The pyfunc model an evaluate run logged (``runs:/<run_id>/model``), loaded only if
    it is knnlab's own.

    Anyone who can write to the artifact store can edit ``MLmodel``, e.g. to name a pickled
    ``python_model`` or add ``code`` that MLflow would run. So the model folder is
    downloaded to a temporary directory, its ``MLmodel`` checked there
    (:func:`check_logged_model`) and the model loaded from that same copy: nothing can change
    between the check and the load. Raises :class:`knnlab.pipeline.model_io.ModelFileError` naming
    what is unexpected, or the model file's own error (e.g. its SHA-256 check).
    """
    import tempfile

    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="knnlab-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model", dst_path=tmp)
        check_logged_model(Path(local))
        return mlflow.pyfunc.load_model(local)


# What log_model writes, and all that check_logged_model accepts. The pyfunc flavour names
# the installed loader module and a .npz inside the folder; "code" must be empty; any other
# key (python_model, cloudpickle_version, artifacts, model_code_path, model_config, ...)
# would make MLflow load something else.
PYFUNC_LOADER = "knnlab.tracking.flavour"
_PYFUNC_KEYS = {"loader_module", "data", "code", "env", "python_version", "streamable"}
_MLMODEL_MAX_BYTES = 16 * 2**20
WIDE_COLUMNS = 1000  # wider data: tensor signature and array datasets (see log_dataset)


def check_logged_model(folder: Path) -> None:
    """Refuse a logged model folder unless its ``MLmodel`` (read with ``yaml.safe_load``)
    has exactly one flavour, ``python_function``, loaded by knnlab's own installed module
    from a ``data/<name>.npz`` inside ``folder``, with no code and no pickled object."""
    import yaml

    from knnlab.pipeline.model_io import ModelFileError

    def refuse(problem: str) -> ModelFileError:
        return ModelFileError(
            f"logged model {folder.name}/MLmodel {problem}; it is not a model knnlab logged "
            "(the artifact store may have been tampered with), so it is not loaded"
        )

    mlmodel = folder / "MLmodel"
    if mlmodel.is_symlink() or not mlmodel.is_file():
        raise refuse("is missing")
    if mlmodel.stat().st_size > _MLMODEL_MAX_BYTES:
        raise refuse(f"is {mlmodel.stat().st_size:,} bytes, more than {_MLMODEL_MAX_BYTES:,}")
    try:
        meta = yaml.safe_load(mlmodel.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise refuse(f"is not valid YAML ({type(error).__name__})") from None
    flavors = meta.get("flavors") if isinstance(meta, dict) else None
    if not isinstance(flavors, dict) or set(flavors) != {"python_function"}:
        found = sorted(flavors, key=str) if isinstance(flavors, dict) else flavors
        raise refuse(f"has the flavours {found!r}, expected only 'python_function'")
    conf = flavors["python_function"]
    if not isinstance(conf, dict):
        raise refuse(f"has a python_function flavour of {conf!r}, expected a mapping")
    unexpected = sorted(set(conf) - _PYFUNC_KEYS, key=str)
    if unexpected:
        raise refuse(
            f"has the python_function keys {unexpected} (code or pickled objects to load); "
            f"knnlab logs only {sorted(_PYFUNC_KEYS)}"
        )
    if conf.get("code") is not None:
        raise refuse(f"has python_function code = {conf['code']!r}; knnlab logs no code")
    if conf.get("loader_module") != PYFUNC_LOADER:
        raise refuse(
            f"has loader_module = {conf.get('loader_module')!r}, expected {PYFUNC_LOADER!r}"
        )
    data = conf.get("data")
    if not (
        isinstance(data, str)
        and re.fullmatch(r"data/[A-Za-z0-9_][A-Za-z0-9._-]*\.npz", data)
        and not (folder / data).is_symlink()
        and (folder / data).is_file()
    ):
        raise refuse(f"has data = {data!r}, expected a data/<name>.npz file in the folder")
    example = meta.get("saved_input_example_info")
    if example is not None and not (
        isinstance(example, dict)
        and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*", str(example.get("artifact_path")))
    ):
        raise refuse(f"has saved_input_example_info = {example!r}, expected a file name")


def drop_artifact_location(model_id: str) -> None:
    """Rewrite a logged model's ``MLmodel`` without ``artifact_path``: MLflow 3 writes
    there the model's artifact location, for a local store an absolute path of the machine
    that logged it. MLflow reads the key as optional (it omits it when unset)."""
    import tempfile

    import mlflow
    from mlflow.models import Model

    client = mlflow.MlflowClient()
    location = client.get_logged_model(model_id).artifact_location.rstrip("/")
    with tempfile.TemporaryDirectory(prefix="knnlab-mlmodel-") as tmp:
        local = mlflow.artifacts.download_artifacts(f"{location}/MLmodel", dst_path=tmp)
        meta = Model.load(local)
        meta.artifact_path = None
        meta.save(local)
        client.log_model_artifact(model_id, local)


def mlflow_dataset(frame, name: str, target: str):
    """An MLflow dataset of ``frame``: with a column schema up to ``WIDE_COLUMNS``
    features, else as arrays. MLflow keeps at most 1 MiB of schema per dataset input
    (about 17,000 columns), and infers a column schema one column at a time (minutes for
    50,000); a two-tensor schema is a few hundred bytes."""
    import mlflow

    if frame.shape[1] - 1 <= WIDE_COLUMNS:
        return mlflow.data.from_pandas(frame, name=name, targets=target)
    features = frame.drop(columns=[target]).to_numpy(dtype="float64")
    targets = frame[target].to_numpy()
    if targets.dtype == object:
        targets = targets.astype(str)  # text labels: a string tensor, not objects
    return mlflow.data.from_numpy(features, targets=targets, name=name)


def signature_and_example(input_example, predicted):
    """The model signature and input example: named columns up to ``WIDE_COLUMNS``
    features; beyond, one float64 tensor of shape (-1, n_features) and a one-row array
    example (a 50,000-column schema would be checked column by column at every predict)."""
    from mlflow.models import infer_signature

    if input_example.shape[1] <= WIDE_COLUMNS:
        return infer_signature(input_example, predicted), input_example
    features = input_example.to_numpy(dtype="float64")[:1]
    return infer_signature(features, predicted[:1]), features
