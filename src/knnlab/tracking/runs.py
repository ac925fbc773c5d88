"""The stages' MLflow runs: one run per logging stage (nested runs for the grid), tagged
with the git commit and the process, closed FAILED when the stage fails, and records of them
kept in ``tracking/*.json`` so a later stage can add to a run.

``mlflow`` is imported inside functions: it takes seconds to import and the stages that do
not log should not pay for it. The store (URIs, secrets, the lock) is
:mod:`knnlab.tracking.store`; the model flavour is :mod:`knnlab.tracking.models`.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from knnlab.pipeline.io.params import MlflowParams
from knnlab.progress import Progress
from knnlab.tracking import registry
from knnlab.tracking.errors import TrackingError
from knnlab.tracking.models import (
    PYFUNC_LOADER,
    add_wheel,
    drop_artifact_location,
    load_logged_classifier,
    mlflow_dataset,
    serving_requirements,
    signature_and_example,
)
from knnlab.tracking.store import (
    FAILED_MARK_TIMEOUT,
    LOCK_HOLD,
    LOCK_POLL,
    StoreLock,
    check_store,
    experiment_id_for,
    lock_timeout,
    mlflow_client,
    redact_uri,
    refuse_credentials,
    resolve_tracking_uri,
    store_failure,
)

_BATCH = 900  # MLflow accepts at most 1000 params+metrics+tags in one log_batch call
CANDIDATES_SUFFIX = " candidates"  # the experiment of the tune runs' candidates
_JUDGE_ROUNDS = 8  # champions crowned by others while one model is judged, at most


@contextlib.contextmanager
def store_errors(tracking_uri: str) -> Iterator[None]:
    """Turn what MLflow, SQLAlchemy or the artifact store raise inside the block into one
    :class:`TrackingError` line naming the store and the likely cause (the original stays
    chained, for ``--debug``)."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except (MlflowException, SQLAlchemyError, OSError) as error:
        raise TrackingError(store_failure(tracking_uri, error)) from error


@dataclass(frozen=True)
class RunRecord:
    """Where a stage's run lives: the store, the experiment and the run."""

    tracking_uri: str
    experiment_id: str
    run_id: str


def logged_marker(stage: str, tag: str, value: str) -> dict[str, str]:
    """What ``tracking/<stage>_run.json`` holds: the tag of the run the stage logged, not
    the run's id. That file is a DVC output (cached, not committed): missing from a fresh
    clone, so the logging stages run there and fill its MLflow store; and the same bytes on
    every run and machine, so ``dvc.lock`` does not change when they do."""
    return {"stage": stage, "run_tag": tag, "run_tag_value": value}


def git_commit() -> str | None:
    """The commit the workspace is at, or None outside git."""
    return _git("rev-parse", "HEAD")


def _git(*args: str) -> str | None:
    """What ``git <args>`` prints, stripped, or None (outside git, or git failed)."""
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def source_tags(stage: str) -> dict[str, str]:
    """MLflow's own source tags, so the run page's Source field reads "knnlab <stage>"
    with the commit (and branch, and repository where it has a remote)."""
    tags = {"mlflow.source.type": "LOCAL", "mlflow.source.name": f"knnlab {stage}"}
    if commit := git_commit():
        tags["mlflow.source.git.commit"] = commit
    branch = _git("rev-parse", "--abbrev-ref", "HEAD")
    if branch and branch != "HEAD":  # "HEAD": detached, as DVC's experiments run
        tags["mlflow.source.git.branch"] = branch
    if remote := _git("config", "--get", "remote.origin.url"):
        tags["mlflow.source.git.repoURL"] = redact_uri(remote)
    return tags


def standard_tags(stage: str) -> dict[str, str]:
    """Tags every knnlab run carries: the DVC stage, the experiment name when DVC runs one,
    MLflow's source tags (commit, so the UI links it) and the owning process."""
    stage = os.environ.get("DVC_STAGE", stage)
    tags = {"knnlab.stage": stage, **source_tags(stage), **process_tags()}
    if exp_name := os.environ.get("DVC_EXP_NAME"):
        tags["knnlab.dvc_exp_name"] = exp_name
    return tags


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot, Linux), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # after the command name, from field 3 on
    return fields[19] if len(fields) > 19 else None  # field 22, starttime


def process_tags() -> dict[str, str]:
    """Which process owns a run: a later stage on the same host closes the runs of a
    process that has gone (killed) without closing them."""
    tags = {"knnlab.host": socket.gethostname(), "knnlab.pid": str(os.getpid())}
    if (start := _process_start(os.getpid())) is not None:
        tags["knnlab.pid_start"] = start
    return tags


def _process_gone(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it exists, under another user
    now = _process_start(pid)
    return start is not None and now is not None and now != start  # the PID was reused


def close_orphaned_runs(client, experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING runs whose process, on this host, no longer exists (a stage
    killed by SIGKILL or the OOM killer cannot close its own run). Returns their ids."""
    host = socket.gethostname().replace("'", "")
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"attributes.status = 'RUNNING' and tags.`knnlab.host` = '{host}'",
        max_results=1000,
    )
    closed = []
    for run in runs:
        pid = run.data.tags.get("knnlab.pid", "")
        if not pid.isdigit() or not _process_gone(int(pid), run.data.tags.get("knnlab.pid_start")):
            continue
        client.set_tag(
            run.info.run_id,
            "knnlab.ended",
            f"process {pid} ended without closing this run (killed); closed by a later stage",
        )
        client.set_terminated(run.info.run_id, "KILLED")
        closed.append(run.info.run_id)
    return closed


def _param_value(value: Any) -> str:
    return "inf" if isinstance(value, float) and math.isinf(value) else str(value)


def _finite_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    """MLflow stores NaN, but the UI charts choke on it; undefined metrics are skipped."""
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}


def _log_batch(client, run_id: str, params=None, metrics=None, tags=None) -> None:
    from mlflow.entities import Metric, Param, RunTag

    now = int(time.time() * 1000)
    entities = (
        [Param(k, _param_value(v)) for k, v in (params or {}).items()]
        + [Metric(k, v, now, 0) for k, v in _finite_metrics(metrics or {}).items()]
        + [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    )
    for start in range(0, len(entities), _BATCH):
        chunk = entities[start : start + _BATCH]
        client.log_batch(
            run_id,
            params=[e for e in chunk if isinstance(e, Param)],
            metrics=[e for e in chunk if isinstance(e, Metric)],
            tags=[e for e in chunk if isinstance(e, RunTag)],
            synchronous=True,
        )


class StageRun:
    """An open MLflow run of one stage; use through :func:`stage_run`. Each method that
    writes to the store holds the store lock for that write only."""

    def __init__(self, client, record: RunRecord, lock: StoreLock | None = None):
        self._client = client
        self.record = record
        self._lock = lock or StoreLock(record.tracking_uri, "", lock_timeout(MlflowParams()))

    def log(self, params=None, metrics=None, tags=None) -> None:
        with self._lock.held(), store_errors(self.record.tracking_uri):
            _log_batch(self._client, self.record.run_id, params, metrics, tags)

    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        # A file copy into the artifact store: no database write, so no lock (a large model
        # file would otherwise hold it for as long as the copy takes).
        with store_errors(self.record.tracking_uri):
            self._client.log_artifact(self.record.run_id, str(path), artifact_path)

    @contextlib.contextmanager
    def _fluent(self) -> Iterator[Any]:
        """This run as MLflow's active run, for the fluent-only APIs (models, inputs),
        without the hint MLflow prints at each schema it infers from integer columns (that
        they cannot hold missing values: true, and moot, knnlab refuses missing features).
        Resuming and ending the run writes to the store, so the lock is held throughout."""
        import mlflow

        mlflow.set_tracking_uri(self.record.tracking_uri)
        with self._lock.held(), store_errors(self.record.tracking_uri), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
            with mlflow.start_run(run_id=self.record.run_id) as active:
                yield active

    def log_dataset(self, frame, name: str, context: str, target: str) -> None:
        """Record a data split as a run input (name, digest, schema, row count in the UI).

        frame : DataFrame of features and the ``target`` column. Up to ``WIDE_COLUMNS``
            features the schema names every column; a wider frame is logged as two arrays
            (features of shape (n_rows, n_features), targets) with a two-tensor schema.
        """
        import mlflow

        with Progress(1, f"logging the dataset {name} to MLflow"), self._fluent():
            mlflow.log_input(mlflow_dataset(frame, name, target), context=context)

    def log_model(self, model_file: Path, input_example, predicted) -> None:
        """Log the model as an MLflow pyfunc: the knnlab .npz as its data, loaded by the
        installed module ``knnlab.tracking.flavour`` (no code, no pickle for it to run),
        with a signature (the labels as output, an ``output`` param for probabilities, no
        input schema: the flavour takes arrays and frames, with or without column names) and
        ``input_example`` (a feature DataFrame; one row as an array beyond ``WIDE_COLUMNS``
        features) with ``predicted`` (its labels). Loadable with ``mlflow.pyfunc.load_model``
        and, checked, with :func:`load_logged_model`; served by ``mlflow models serve`` in
        a fresh environment too: the requirements are the knnlab wheel logged with the model
        (``wheels/``) under constraints pinning every package installed here."""
        import tempfile

        import mlflow

        signature, example = signature_and_example(input_example, predicted)
        with (
            Progress(1, "logging the model to MLflow"),
            self._fluent(),
            tempfile.TemporaryDirectory(prefix="knnlab-serving-") as tmp,
        ):
            wheel, requirements = serving_requirements(Path(tmp))
            info = mlflow.pyfunc.log_model(
                name="model",
                loader_module=PYFUNC_LOADER,
                data_path=str(model_file),
                signature=signature,
                input_example=example,
                # Stated, not inferred: inference would run the model in a subprocess.
                pip_requirements=requirements,
            )
            drop_artifact_location(info.model_id)
            add_wheel(info.model_id, wheel)

    def register_model(
        self, name: str, test_split: str, accuracy: float, judge: Callable
    ) -> tuple[str, registry.Decision]:
        """Register this run's logged model as a new version of ``name``, and move the alias
        ``champion`` to it as ``judge(champion)`` decides; returns the version and the
        decision.

        judge : Champion or None (no champion yet) -> :class:`registry.Decision`; it runs
            without the store lock (it may load the champion and score it). If another
            process moved the alias meanwhile, the new champion is judged in turn.
        """
        uri = self.record.tracking_uri
        with self._lock.held(), store_errors(uri):
            version = registry.register(
                self._client, name, self.record.run_id, test_split, accuracy
            )
            champion = registry.current_champion(self._client, name)
        for _ in range(_JUDGE_ROUNDS):
            decision = judge(champion)
            with self._lock.held(), store_errors(uri):
                now = registry.current_champion(self._client, name)
                if now == champion:
                    registry.record(self._client, name, version, decision)
                    return version, decision
            champion = now
        decision = registry.Decision(
            False, f"not judged: the champion changed {_JUDGE_ROUNDS} times while it was"
        )
        with self._lock.held(), store_errors(uri):
            registry.record(self._client, name, version, decision)
        return version, decision

    def load_classifier(self, model_uri: str):
        """A logged knnlab model's classifier, checked (:func:`load_logged_classifier`)."""
        with store_errors(self.record.tracking_uri):
            return load_logged_classifier(self.record.tracking_uri, model_uri)

    def log_candidates(self, children: list[dict[str, Any]], params: dict) -> RunRecord:
        """The grid's candidates, one nested run each (:meth:`log_children`), in the sibling
        experiment ``<experiment> candidates``, under a parent run named like this one and
        given ``params``; returns that parent's record.

        MLflow's runs table pages by run, nested ones included: 54 candidates per tune run
        in the stage runs' experiment pushed the evaluate runs a user compares off its first
        page. There, this run stays one row; tags and descriptions link the two parents
        (``knnlab.candidates_run_id`` here, ``knnlab.tune_run_id`` there). The parent ends
        FINISHED, or FAILED (KILLED when interrupted) with the first candidate that fails.
        """
        uri = self.record.tracking_uri
        record = None
        status = "FAILED"
        # The parent is closed whatever stops the logging. An interrupt arriving while it
        # is created is held by the store lock's write guard and raised as the lock is let
        # go: inside this try, with the parent's record already kept (once left RUNNING).
        try:
            with self._lock.held(), store_errors(uri):
                this = self._client.get_run(self.record.run_id)
                experiment = self._client.get_experiment(self.record.experiment_id).name
                experiment_id = experiment_id_for(self._client, experiment + CANDIDATES_SUFFIX, uri)
                close_orphaned_runs(self._client, experiment_id)
                record = self._open_candidates(this, experiment, experiment_id, children, params)
            StageRun(self._client, record, self._lock).log_children(children)
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            if record is not None:
                with self._lock.held(), store_errors(uri):
                    self._client.set_terminated(record.run_id, status)
        return record

    def _open_candidates(self, this, experiment: str, experiment_id: str, children, params):
        """Create the candidates' parent run in ``experiment_id`` and link it with this run
        both ways (tags and descriptions); under the store lock. Returns its record."""
        uri = self.record.tracking_uri
        name = experiment + CANDIDATES_SUFFIX
        kept = ("knnlab.stage", "knnlab.dvc_exp_name", "mlflow.source.")
        tags = {k: v for k, v in this.data.tags.items() if k.startswith(kept)}
        back = f"#/experiments/{self.record.experiment_id}/runs/{self.record.run_id}"
        parent = self._client.create_run(
            experiment_id,
            start_time=this.info.start_time,
            run_name=this.info.run_name,
            tags={
                **tags,
                **process_tags(),
                "knnlab.tune_run_id": self.record.run_id,
                "mlflow.note.content": f"The {len(children)} candidates of the "
                f"[{this.info.run_name}]({back}) run in experiment {experiment!r}, "
                "one nested run each.",
            },
        )
        record = RunRecord(uri, experiment_id, parent.info.run_id)
        # The candidates experiment's runs, filtered to this parent's children.
        children_only = urllib.parse.quote(f"tags.`mlflow.parentRunId` = '{record.run_id}'")
        there = (
            f"#/experiments/{experiment_id}/runs?workflowType=machine_learning"
            f"&searchFilter={children_only}"
        )
        _log_batch(self._client, record.run_id, params)
        _log_batch(
            self._client,
            self.record.run_id,
            tags={
                "knnlab.candidates_run_id": record.run_id,
                "knnlab.candidates_experiment_id": experiment_id,
                "mlflow.note.content": f"{len(children)} candidates, one run each, in "
                f"experiment {name!r}: [open them]({there}).",
            },
        )
        return record

    def log_children(self, children: list[dict[str, Any]]) -> list[str]:
        """One nested, FINISHED run per child: ``{"name", "params", "metrics"}`` and optional
        ``"tags"``. Returns their run ids, in order.

        A child costs three store transactions (MLflow's minimum through its client: create
        with the tags, one batch of params and metrics, terminate), tens of milliseconds on
        SQLite; a large grid takes minutes. So the store lock is let go between children once
        held for ``LOCK_HOLD`` seconds, and the stages of other processes interleave.
        """
        ids: list[str] = []
        tags = {"mlflow.parentRunId": self.record.run_id, **process_tags()}
        while len(ids) < len(children):
            if ids and self._lock.others_waiting():
                time.sleep(4 * LOCK_POLL)  # a waiter tries every LOCK_POLL: let it in
            with self._lock.held(), store_errors(self.record.tracking_uri):
                start = time.monotonic()
                for child in children[len(ids) :]:
                    ids.append(self._log_child(child, tags))
                    if time.monotonic() - start >= LOCK_HOLD:
                        break
        return ids

    def _log_child(self, child: dict[str, Any], tags: dict[str, str]) -> str:
        run = self._client.create_run(
            self.record.experiment_id,
            run_name=child["name"],
            tags={**tags, **{k: str(v) for k, v in (child.get("tags") or {}).items()}},
        )
        try:
            _log_batch(self._client, run.info.run_id, child["params"], child["metrics"])
        except BaseException as error:
            # Not left RUNNING under an ended parent (the lock is still held here).
            from mlflow.exceptions import MlflowException
            from sqlalchemy.exc import SQLAlchemyError

            status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
            with contextlib.suppress(MlflowException, SQLAlchemyError, OSError):
                self._client.set_terminated(run.info.run_id, status)
            raise
        self._client.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id


_warned: set[str] = set()


def _warn_untracked(stage: str, error: TrackingError) -> None:
    """One warning per store and process, however many times a stage asks."""
    if str(error) not in _warned:
        _warned.add(str(error))
        print(f"knnlab {stage}: warning: {error}; not tracking this run", file=sys.stderr)


def preflight(config: MlflowParams, stage: str) -> bool:
    """Check the store before a stage spends time computing: raise :class:`TrackingError`
    when it is unusable and required, else warn once. Returns whether it is usable.
    Credentials in the URI and a bad ``KNNLAB_LOCK_TIMEOUT`` are refused whatever
    ``mlflow.required`` says."""
    tracking_uri = resolve_tracking_uri(config)
    lock_timeout(config)
    try:
        check_store(tracking_uri, config.experiment)
    except TrackingError as error:
        if config.required:
            raise
        _warn_untracked(stage, error)
        return False
    return True


class UntrackedRun:
    """Stands in for a run when the store is unavailable and ``mlflow.required: false``."""

    def __init__(self, tracking_uri: str):
        self.record = RunRecord(tracking_uri, "", "")

    def __getattr__(self, name: str):
        if name.startswith("log"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


def _open_run(
    config: MlflowParams, stage: str, run_name: str, tracking_uri: str, lock, start_ms: int | None
):
    check_store(tracking_uri, config.experiment)
    with store_errors(tracking_uri):
        client = mlflow_client(tracking_uri)
        experiment_id = experiment_id_for(client, config.experiment, tracking_uri)
        close_orphaned_runs(client, experiment_id)
        run = client.create_run(
            experiment_id, start_time=start_ms, run_name=run_name, tags=standard_tags(stage)
        )
    return client, StageRun(client, RunRecord(tracking_uri, experiment_id, run.info.run_id), lock)


@contextlib.contextmanager
def stage_run(
    config: MlflowParams, stage: str, run_name: str, start_ms: int | None = None
) -> Iterator[StageRun | UntrackedRun]:
    """Open a run for ``stage``; it ends FINISHED, or FAILED if the block raises. The run
    starts at ``start_ms`` (ms since the epoch; default now): a stage opens its run once its
    work is done, and the run should span the work.

    An unusable store raises :class:`TrackingError` naming it, or, with
    ``mlflow.required: false``, warns once and yields a :class:`UntrackedRun` that logs nothing.

    The store lock is held around each write, not for the block: opening the run (with
    MLflow's first use of a store, which creates its tables, and the closing of orphaned
    runs), each log call, each second's worth of nested runs, and the end.
    """
    tracking_uri = resolve_tracking_uri(config)
    lock = StoreLock(tracking_uri, stage, lock_timeout(config))
    import mlflow  # noqa: F401 - seconds to import: before the lock, not under it

    opened = None
    try:
        with lock.held():
            opened = _open_run(config, stage, run_name, tracking_uri, lock, start_ms)
    except TrackingError as error:
        if config.required:
            raise
        _warn_untracked(stage, error)
        yield UntrackedRun(tracking_uri)
        return
    except BaseException as stopped:
        # An interrupt arriving while the run was created is held by the lock's write
        # guard and raised as the lock is let go: the run exists by then; close it.
        if opened is not None:
            status = "KILLED" if isinstance(stopped, KeyboardInterrupt) else "FAILED"
            _mark_ended(opened[0], opened[1].record.run_id, lock, stage, status)
        raise
    client, handle = opened
    try:
        yield handle
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (the command line raises it as one)
        _mark_ended(client, handle.record.run_id, lock, stage, "KILLED")
        raise
    except BaseException:
        _mark_ended(client, handle.record.run_id, lock, stage, "FAILED")
        raise
    with lock.held(), store_errors(tracking_uri):
        client.set_terminated(handle.record.run_id, "FINISHED")


def _mark_ended(client, run_id: str, lock: StoreLock, stage: str, status: str) -> None:
    """End a run FAILED (or KILLED, when interrupted), waiting only briefly for the lock:
    the stage is ending already, and a run left RUNNING is closed (KILLED) by the next stage
    once this process is gone."""
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    try:
        with lock.held(min(lock.timeout, FAILED_MARK_TIMEOUT)):
            client.set_terminated(run_id, status)
    except (TrackingError, MlflowException, SQLAlchemyError, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        print(
            f"knnlab {stage}: warning: run {run_id} could not be marked {status} ({reason}); "
            "the next logging stage will close it",
            file=sys.stderr,
        )


def _record_lock(record: RunRecord, config: MlflowParams | None) -> StoreLock:
    refuse_credentials(record.tracking_uri)  # a run record edited by hand, or older
    config = config or MlflowParams()
    return StoreLock(record.tracking_uri, "", lock_timeout(config))


def mark_outputs_failed(
    record: RunRecord, error: BaseException, config: MlflowParams | None = None
) -> None:
    """Turn a FINISHED run FAILED because its stage could not put its outputs in place
    (a stage closes its run first, then moves its outputs in: a kill in between leaves a
    finished run and the previous outputs, never new outputs beside an unfinished run)."""
    if not record.run_id:
        return
    from mlflow.exceptions import MlflowException

    try:
        with _record_lock(record, config).held(FAILED_MARK_TIMEOUT):
            client = mlflow_client(record.tracking_uri)
            client.set_tag(record.run_id, "knnlab.ended", f"outputs not written: {error}")
            client.set_terminated(record.run_id, "FAILED")
    except (TrackingError, MlflowException, OSError) as mark_error:
        print(
            f"knnlab: warning: run {record.run_id} could not be marked FAILED ({mark_error})",
            file=sys.stderr,
        )


def log_artifacts_to(
    record: RunRecord,
    files: list[Path],
    artifact_path: str | None,
    config: MlflowParams | None = None,
) -> None:
    """Attach files to an existing run (the plot stage adds figures to the evaluate run);
    nothing when the run was not tracked (``mlflow.required: false``). ``config`` gives the
    lock timeout (default: ``KNNLAB_LOCK_TIMEOUT``, else mlflow.lock_timeout's default)."""
    if not record.run_id:
        return
    with _record_lock(record, config).held(), store_errors(record.tracking_uri):
        client = mlflow_client(record.tracking_uri)
        for file in files:
            client.log_artifact(record.run_id, str(file), artifact_path)


def log_table(
    record: RunRecord, table, artifact_file: str, config: MlflowParams | None = None
) -> None:
    """A DataFrame as an MLflow table artifact (shown as a table in the run's UI)."""
    if not record.run_id:
        return
    with _record_lock(record, config).held(), store_errors(record.tracking_uri):
        mlflow_client(record.tracking_uri).log_table(record.run_id, table, artifact_file)


def find_tagged_run(
    config: MlflowParams, stage: str, producer: str, tag: str, value: str
) -> RunRecord | None:
    """The newest FINISHED run of stage ``producer`` tagged ``tag = value``, in any
    experiment of the configured store, which ``stage`` adds to (plot finds the evaluate
    run of the outputs it draws this way: run ids are not DVC outputs).

    With no such run, or an unusable store, raises :class:`TrackingError` naming the store
    and how to log the run again, or, with ``mlflow.required: false``, warns and returns None
    (the caller then logs nothing).
    """
    if not preflight(config, stage):
        return None
    found = search_tagged_run(config, stage, producer, tag, value)
    if found:
        return found
    error = TrackingError(
        f"no finished {producer} run tagged {tag} = {value[:16]}… in MLflow store "
        f"{redact_uri(resolve_tracking_uri(config))}: the run that logged these outputs is not "
        "in this store (a new or another store?); `knnlab relog` logs the current outputs to "
        f"it without recomputing, `dvc repro --force --downstream {producer}` recomputes them"
    )
    if config.required:
        raise error
    _warn_untracked(stage, error)
    return None


def search_tagged_run(
    config: MlflowParams, stage: str, producer: str, tag: str, value: str
) -> RunRecord | None:
    """The newest FINISHED run of stage ``producer`` tagged ``tag = value`` in the
    configured store (a usable one: :func:`preflight` first), or None."""
    from mlflow.entities import ViewType

    tracking_uri = resolve_tracking_uri(config)
    with StoreLock(tracking_uri, stage, lock_timeout(config)).held(), store_errors(tracking_uri):
        client = mlflow_client(tracking_uri)
        experiments = [
            e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)
        ]
        found = experiments and client.search_runs(
            experiments,
            filter_string=(
                f"attributes.status = 'FINISHED' and tags.`knnlab.stage` = '{producer}' "
                f"and tags.`{tag}` = '{value}'"
            ),
            run_view_type=ViewType.ACTIVE_ONLY,
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
    if not found:
        return None
    return RunRecord(tracking_uri, found[0].info.experiment_id, found[0].info.run_id)
