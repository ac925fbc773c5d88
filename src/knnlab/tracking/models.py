"""The knnlab model in MLflow: logged as a pyfunc whose loader is the installed
:mod:`knnlab.tracking.flavour` (no code, no pickle for that loader to run), checked before
it is loaded back or served, with its signature, the datasets it was trained and tested on,
and what MLflow's environment managers need to serve it elsewhere: the installed knnlab as a
wheel, and pip constraints pinning what it needs to the versions installed here."""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from pathlib import Path


def load_checked_model(model_uri: str):
    """The pyfunc model at ``model_uri`` (``runs:/<run_id>/model``, ``models:/<model_id>``,
    a folder), loaded only if it is knnlab's own, from the tracking URI MLflow is set to.

    Anyone who can write to the artifact store can edit ``MLmodel``, e.g. to name a pickled
    ``python_model`` or add ``code`` that MLflow would run. So the model folder is
    downloaded to a temporary directory, its ``MLmodel`` checked there
    (:func:`check_logged_model`) and the model loaded from that same copy: nothing can change
    between the check and the load. Raises :class:`knnlab.pipeline.io.model_io.ModelFileError`
    naming what is unexpected, or the model file's own error (e.g. its SHA-256 check).
    """
    import tempfile

    import mlflow

    with tempfile.TemporaryDirectory(prefix="knnlab-model-") as tmp:
        local = mlflow.artifacts.download_artifacts(model_uri, dst_path=tmp)
        check_logged_model(Path(local))
        return mlflow.pyfunc.load_model(local)


def load_logged_model(tracking_uri: str, run_id: str):
    """The pyfunc model an evaluate run logged (``runs:/<run_id>/model``), loaded only if
    it is knnlab's own (:func:`load_checked_model`)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    return load_checked_model(f"runs:/{run_id}/model")


def load_logged_classifier(tracking_uri: str, model_uri: str):
    """The fitted :class:`knnlab.estimators.KNNClassifier` of a logged model
    (``runs:/<run_id>/model``, ``models:/knnlab-digits@champion``…), read from its ``.npz``
    only once the folder passed :func:`check_logged_model` (MLflow's pyfunc wrapper does
    not hand out the model it wraps)."""
    import tempfile

    import mlflow
    import yaml

    from knnlab.pipeline.io.model_io import load_model

    mlflow.set_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory(prefix="knnlab-model-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=tmp))
        check_logged_model(local)
        meta = yaml.safe_load((local / "MLmodel").read_text(encoding="utf-8"))
        return load_model(local / meta["flavors"]["python_function"]["data"])


# What log_model writes, and all that check_logged_model accepts. The pyfunc flavour names
# the installed loader module and a .npz inside the folder; "code" must be empty; any other
# key (python_model, cloudpickle_version, artifacts, model_code_path, model_config, ...)
# would make MLflow load something else.
PYFUNC_LOADER = "knnlab.tracking.flavour"
_PYFUNC_KEYS = {"loader_module", "data", "code", "env", "python_version", "streamable"}
_MLMODEL_MAX_BYTES = 16 * 2**20
WIDE_COLUMNS = 1000  # wider data: array datasets and a one-row array input example


def check_logged_model(folder: Path) -> None:
    """Refuse a logged model folder unless its ``MLmodel`` (read with ``yaml.safe_load``)
    has exactly one flavour, ``python_function``, loaded by knnlab's own installed module
    from a ``data/<name>.npz`` inside ``folder``, with no code and no pickled object."""
    import yaml

    from knnlab.pipeline.io.model_io import ModelFileError

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
    """The model signature and input example.

    The signature declares the labels as output (``predicted``, of shape (n_rows,)) and the
    ``output`` param (``"label"``, or ``"proba"`` for class probabilities), and no input
    schema: :class:`knnlab.tracking.flavour.KnnlabPyfunc` checks the input itself, so
    arrays, lists and DataFrames with or without column names are all accepted (MLflow's
    schemas take named columns or unnamed arrays, not both). The example (``input_example``, a
    feature DataFrame) names the features up to ``WIDE_COLUMNS`` of them; beyond, it is one
    row as an array.
    """
    from mlflow.models import infer_signature

    from knnlab.tracking.flavour import OUTPUT_PARAM, OUTPUTS

    signature = infer_signature(None, predicted, params={OUTPUT_PARAM: OUTPUTS[0]})
    if input_example.shape[1] <= WIDE_COLUMNS:
        return signature, input_example
    return signature, input_example.to_numpy(dtype="float64")[:1]


# --- what MLflow's environment managers install to serve the model ---------------------------

WHEELS_DIR = "wheels"  # in the model folder, as MLflow's own wheeled models keep them
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can say: same code, same wheel bytes


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def knnlab_wheel(directory: Path) -> Path:
    """Write the installed knnlab as a wheel in ``directory`` and return its path: its
    modules (``*.py``, as the running process imports them, an editable install's working
    tree included) and its installed metadata, pure Python (``py3-none-any``).

    The version gets a local label from the content, ``0.1.0+sha<sha256 prefix>``: MLflow names
    the environments it creates by the requirement strings, so a changed knnlab must change
    the wheel's name, or a model would be served by an environment built for older code.
    Built by hand rather than by pip or setuptools: no network, no build directory in the
    source tree, milliseconds.
    """
    import importlib.metadata

    import knnlab

    dist = importlib.metadata.distribution("knnlab")
    package = Path(knnlab.__file__).parent
    modules = {
        f"knnlab/{path.relative_to(package).as_posix()}": path.read_bytes()
        for path in sorted(package.rglob("*.py"))
    }
    metadata = dist.read_text("METADATA") or ""
    content = hashlib.sha256(metadata.encode())
    for name, data in modules.items():
        content.update(f"{name}\0{len(data)}\0".encode() + data)
    label = f"sha{content.hexdigest()[:12]}"  # letters first: never a number pip would trim
    version = f"{dist.version}{'.' if '+' in dist.version else '+'}{label}"
    info = f"knnlab-{version}.dist-info"
    metadata = re.sub(r"(?m)^Version: .*$", f"Version: {version}", metadata, count=1)
    members = {
        **modules,
        f"{info}/METADATA": metadata.encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: knnlab\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n",
    }
    if entry_points := dist.read_text("entry_points.txt"):
        members[f"{info}/entry_points.txt"] = entry_points.encode()
    record = [f"{name},{_record_hash(data)},{len(data)}" for name, data in members.items()]
    members[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,", ""]).encode()
    wheel = directory / f"knnlab-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            member = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            member.external_attr = 0o644 << 16
            archive.writestr(member, data, zipfile.ZIP_DEFLATED)
    return wheel


# What a served model needs beside the lean knnlab (its core dependencies, not the pipeline
# extra): MLflow's scoring server, which mlflow-skinny holds without the tracking server,
# the UI or matplotlib. Named here, MLflow adds no ``mlflow==<version>`` of its own.
SERVING_MLFLOW = "mlflow-skinny"


def installed_versions(roots: tuple[str, ...] = ("knnlab", SERVING_MLFLOW)) -> list[str]:
    """``name==version`` of the installed distributions ``roots`` need, themselves and
    their requirements all the way down (markers evaluated here, no extras of the roots:
    knnlab's pipeline extra is not a served model's), sorted by name, the roots excluded:
    pip constraints that rebuild this environment's versions wherever the model is served.
    Only what gets installed is pinned: MLflow's serving environment reads the constraints
    as requirements and warns of every pinned package it lacks."""
    import importlib.metadata

    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    installed: dict[str, importlib.metadata.Distribution] = {}
    for dist in importlib.metadata.distributions():
        name = canonicalize_name(dist.metadata.get("Name") or "")
        installed.setdefault(name, dist)  # the first found is the one imported
    seen: set[tuple[str, str]] = set()
    todo = [(canonicalize_name(root), "") for root in roots]
    while todo:
        name, extra = todo.pop()
        if (name, extra) in seen or name not in installed:
            continue
        seen.add((name, extra))
        for line in installed[name].requires or []:
            try:
                requirement = Requirement(line)
            except InvalidRequirement:
                continue
            marker = requirement.marker
            if marker is None or marker.evaluate({"extra": extra}):
                needed = canonicalize_name(requirement.name)
                todo += [(needed, e) for e in ("", *sorted(requirement.extras))]
    names = {name for name, _ in seen} - {canonicalize_name(root) for root in roots}
    return [f"{name}=={installed[name].version}" for name in sorted(names)]


def serving_requirements(directory: Path) -> tuple[Path, list[str]]:
    """The knnlab wheel and a constraints file, written in ``directory``, and the pip
    requirements to log with them: MLflow's scoring server (:data:`SERVING_MLFLOW` at the
    version installed here), the wheel (by its path in the model folder, where
    :func:`add_wheel` puts it) and the constraints (MLflow copies the file into the model
    as ``constraints.txt``). knnlab's core dependencies come with the wheel's metadata, at
    the versions installed here; nothing of the pipeline extra (DVC, matplotlib, MLflow's
    server) is installed where the model is served."""
    import importlib.metadata

    wheel = knnlab_wheel(directory)
    constraints = directory / "constraints.txt"
    constraints.write_text("\n".join(installed_versions()) + "\n", encoding="utf-8")
    mlflow = f"{SERVING_MLFLOW}=={importlib.metadata.version(SERVING_MLFLOW)}"
    return wheel, [mlflow, f"{WHEELS_DIR}/{wheel.name}", f"-c {constraints}"]


def add_wheel(model_id: str, wheel: Path) -> None:
    """Put ``wheel`` in the logged model's ``wheels/`` folder, where its requirements
    name it. knnlab's loader never reads it; MLflow's environment managers (``mlflow models
    serve`` without ``--env-manager local``) install it into the environment they build."""
    import mlflow

    mlflow.MlflowClient().log_model_artifact(model_id, str(wheel), WHEELS_DIR)
