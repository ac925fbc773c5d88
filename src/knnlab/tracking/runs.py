"""Everything knnlab says to MLflow. No other module imports ``mlflow``.

Where runs go: ``MLFLOW_TRACKING_URI`` from the environment if set, else
``mlflow.tracking_uri`` from params.yaml, else ``sqlite:///<repository root>/mlflow.db``
(MLflow 3's own default file, pinned to the main repository so runs from DVC's temporary
experiment workspaces land in the same store) with artifacts in ``<root>/mlruns`` beside it,
which is what ``mlflow ui`` started at the repository root shows.

``mlflow`` is imported inside functions: it takes seconds to import and the stages that do
not log should not pay for it.

Secrets: a tracking URI with a credential in it (user-info, or a query parameter that looks
like a secret) is refused before MLflow sees it, and every URI this module prints or stores
goes through :func:`redact_uri`.

Concurrency: writes to a SQLite store are serialised across processes by a lock file beside
it, held around each write (never for a whole stage, and at most about a second at a time
while nested runs are logged), with a message on stderr while waiting and a bounded wait.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import re
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from knnlab.pipeline import paths
from knnlab.pipeline.params import MlflowParams, ParamsError
from knnlab.tracking.errors import TrackingError

_BATCH = 900  # MLflow accepts at most 1000 params+metrics+tags in one log_batch call


@dataclass(frozen=True)
class RunRecord:
    """Where a stage's run lives, kept in ``tracking/<stage>_run.json``."""

    tracking_uri: str
    experiment_id: str
    run_id: str

    @classmethod
    def from_dict(cls, data: Any, source: str | Path = "<record>") -> RunRecord:
        """A record as a stage wrote it: exactly these three text fields. A URI with
        credentials (a record edited by hand) is refused when the record is used."""
        names = ("tracking_uri", "experiment_id", "run_id")
        if not isinstance(data, dict) or sorted(data) != sorted(names):
            got = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise TrackingError(
                f"{source}: a run record has the fields {', '.join(names)}, got {got}; "
                "re-run the stage that wrote it (`dvc repro --force <stage>`)"
            )
        wrong = [n for n in names if not isinstance(data[n], str)]
        if wrong:
            raise TrackingError(f"{source}: run record field {wrong[0]} is not text")
        return cls(**data)

    def to_dict(self) -> dict[str, str]:
        """What the stages write to ``tracking/*.json`` (DVC caches it and may push it)."""
        return {
            "tracking_uri": redact_uri(self.tracking_uri),
            "experiment_id": self.experiment_id,
            "run_id": self.run_id,
        }


# --- credentials in URIs ----------------------------------------------------------------
# Refused (TrackingError, whatever mlflow.required says), never silently cleaned: a URI that
# worked only because of its secret would fail later in a way that hides why. Refused are
#   - user-info: ``scheme://user:password@host`` and a lone ``scheme://token@host``, for
#     servers and databases alike (``postgresql://user:pass@host/db``);
#   - a query or fragment parameter whose name looks like a secret: anything containing
#     token, pass, pwd, secret, key, sig, cred, auth, session, cookie, bearer or jwt, case and
#     ``-``/``_``/``.`` ignored (so ``access_token``, ``password``, ``api_key``, ``sig`` and
#     ``signature`` of Azure SAS, ``X-Amz-Credential``, ``X-Amz-Signature``,
#     ``X-Amz-Security-Token``); it errs on refusing (``sslkey`` and ``passfile`` are file
#     paths, but their environment variables PGSSLKEY and PGPASSFILE do the same job);
#   - a parameter name or value that looks like an opaque token: 32 or more letters, digits
#     and ``_-+=.~``, with both letters and digits (``?t=ghp_...``, a JWT).
# Every other parameter is kept and works: SQLite's ``?timeout=20``, ``?mode=rwc``,
# ``?cache=shared``, PostgreSQL's ``?sslmode=require``.
# Redacted (redact_uri): every URI this module prints or stores. The same test decides both,
# so a URI that is accepted comes out of redact_uri unchanged.
_SECRET_NAME = re.compile(r"token|pass|pwd|secret|key|sig|cred|auth|session|cookie|bearer|jwt")
_TOKEN_LIKE = re.compile(r"(?=.*[0-9])(?=.*[A-Za-z])[A-Za-z0-9_\-+=.~]{32,}")
_HIDDEN = "***"


def _uri_parts(uri: str) -> tuple[str, str | None, str, str | None, str | None]:
    """``uri`` split by plain string operations as (scheme with ``://``, user-info, host and
    path, query, fragment), None for a part that is absent: joined back with ``@``, ``?`` and
    ``#`` they give ``uri`` exactly. The user-info is everything before the last ``@`` ahead
    of the path, so a password with an unescaped ``?`` or ``#`` in it still counts."""
    head, sep, rest = uri.partition("://")
    head, rest = (head + sep, rest) if sep else ("", uri)
    userinfo = None
    authority = rest.split("/", 1)[0]
    if sep and "@" in authority:
        userinfo = authority.rpartition("@")[0]
        rest = rest[len(userinfo) + 1 :]
    rest, hash_, fragment = rest.partition("#")
    rest, mark, query = rest.partition("?")
    return head, userinfo, rest, query if mark else None, fragment if hash_ else None


def _secret_pairs(text: str) -> list[str]:
    """The parameters of a query (or fragment) ``text`` that look like secrets, described
    without their values."""
    found = []
    for item in re.split(r"[&;]", text):
        name, _, value = (unquote_plus(x) for x in item.partition("="))
        if _TOKEN_LIKE.fullmatch(name):
            found.append("a parameter named like a token")
        elif _SECRET_NAME.search(re.sub(r"[^a-z0-9]", "", name.lower())):
            found.append(f"parameter {name!r}")
        elif _TOKEN_LIKE.fullmatch(value):
            found.append(f"parameter {name!r}, whose value looks like a token")
    return found


def _secrets_in(uri: str) -> list[str]:
    """What in ``uri`` looks like a credential, described without it (empty: nothing)."""
    _, userinfo, _, query, fragment = _uri_parts(uri)
    found = ["user-info before '@'"] if userinfo is not None else []
    found += [f"{what} in the query" for what in _secret_pairs(query or "")]
    found += [f"{what} in the fragment" for what in _secret_pairs(fragment or "")]
    return found


def _redact_pairs(text: str) -> str:
    pieces = re.split(r"([&;])", text)  # the separators land at the odd positions
    for i in range(0, len(pieces), 2):
        if _secret_pairs(pieces[i]):
            name, eq, _ = pieces[i].partition("=")
            token_named = _TOKEN_LIKE.fullmatch(unquote_plus(name))
            pieces[i] = _HIDDEN if token_named else name + eq + _HIDDEN
    return "".join(pieces)


def redact_uri(uri: str) -> str:
    """``uri`` with what :func:`refuse_credentials` refuses replaced by ``***`` (the whole
    user-info; a parameter's value, or the parameter if its name is token-like); any other
    URI unchanged. The one function through which this module prints or stores a URI."""
    if not _secrets_in(uri):
        return uri
    head, userinfo, rest, query, fragment = _uri_parts(uri)
    return (
        head
        + (f"{_HIDDEN}@" if userinfo is not None else "")
        + rest
        + (f"?{_redact_pairs(query)}" if query is not None else "")
        + (f"#{_redact_pairs(fragment)}" if fragment is not None else "")
    )


def refuse_credentials(uri: str) -> None:
    """Raise :class:`TrackingError` when ``uri`` carries a credential (see the rules above),
    naming what and where to put it instead, without printing it."""
    found = _secrets_in(uri)
    if not found:
        return
    database = re.match(r"(postgres|postgresql|mysql|mssql|oracle)[+:]", uri) is not None
    where = (
        "give the password to the database driver through its own environment variable or "
        "password file instead (for PostgreSQL: PGPASSWORD or ~/.pgpass; for MySQL: an option "
        "file)"
        if database
        else "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or "
        "MLFLOW_TRACKING_TOKEN) in the environment instead"
    )
    raise TrackingError(
        f"tracking URI {redact_uri(uri)} has credentials in it ({', '.join(found)}): remove "
        f"them and {where}, so they never reach params, logs, run records or reports"
    )


def default_tracking_uri() -> str:
    return "sqlite:///" + (paths.repository_root() / paths.MLFLOW_DB_NAME).as_posix()


def resolve_tracking_uri(config: MlflowParams) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or config.tracking_uri or default_tracking_uri()
    refuse_credentials(uri)
    return uri


def _sqlite_target(uri: str) -> tuple[str, bool]:
    """What sqlite3.connect needs for an MLflow ``sqlite:///`` URI: (database, is_uri)."""
    path, _, query = uri.removeprefix("sqlite:///").partition("?")
    if not query:
        return path, False
    options = "&".join(o for o in query.split("&") if not o.startswith("uri="))
    return f"file:{path}?{options}", True


def check_store(uri: str, timeout: float = 8.0) -> None:
    """Fail fast, naming the URI, when the store cannot take writes: a server that does not
    answer its health check, or a SQLite file that is read-only or cannot be created."""
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as reply:
                reply.read(64)
        except (OSError, ValueError) as error:  # URLError and timeouts are OSErrors
            raise TrackingError(
                f"MLflow tracking server {redact_uri(uri)} cannot be reached ({error}); start it, "
                "fix mlflow.tracking_uri / MLFLOW_TRACKING_URI, or set mlflow.required: false"
            ) from None
    elif uri.startswith("sqlite:///"):
        database, is_uri = _sqlite_target(uri)
        try:
            with contextlib.closing(sqlite3.connect(database, uri=is_uri, timeout=timeout)) as db:
                # A real (rolled back) write: opening and locking succeed on read-only files.
                db.execute("BEGIN IMMEDIATE")
                version = db.execute("PRAGMA user_version").fetchone()[0]
                db.execute(f"PRAGMA user_version = {int(version)}")
                db.rollback()
        except sqlite3.Error as error:
            raise TrackingError(
                f"MLflow store {redact_uri(uri)} cannot be written ({error}); check the file "
                "and folder permissions, or set mlflow.required: false"
            ) from None


# --- the store lock -------------------------------------------------------------------------
LOCK_TIMEOUT_ENV = "KNNLAB_LOCK_TIMEOUT"  # overrides mlflow.lock_timeout, as for the URI
_LOCK_NOTICE_AFTER = 2.0  # seconds of waiting before a waiter says so on stderr
_LOCK_POLL = 0.05  # seconds between attempts of a waiter
_LOCK_HOLD = 1.0  # log_children lets the lock go between children after holding it this long
_FAILED_MARK_TIMEOUT = 10.0  # marking a run FAILED waits at most this long for the lock
_held: dict[Path, int] = {}  # lock files this process holds, and how deeply (re-entrant)


def lock_timeout(config: MlflowParams) -> float:
    """Seconds a writer waits for the store lock before giving up: ``KNNLAB_LOCK_TIMEOUT``
    from the environment if set, else ``mlflow.lock_timeout``."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV, "").strip()
    if not raw:
        return config.lock_timeout
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ParamsError(
            f"{LOCK_TIMEOUT_ENV}={raw!r} is not allowed; expected a positive, finite number of "
            "seconds (it overrides mlflow.lock_timeout in params.yaml); unset it to use that"
        )
    return value


class StoreLock:
    """Serialise writers of one SQLite store across processes (parallel DVC experiments):
    SQLite allows one writer at a time, and MLflow's first use creates tables, which two
    processes must not do at once. Other stores handle concurrency themselves.

    An ``fcntl.flock`` on ``<database>.lock``, taken without blocking in a polling loop so a
    waiter can say on stderr, after ``_LOCK_NOTICE_AFTER`` seconds, what it waits for and
    who holds it (the holder writes its pid, host, stage and start into the lock file), and
    give up after ``timeout`` seconds with a :class:`TrackingError`. A waiter also holds a
    shared lock on ``<database>.lock.waiting``, so a holder that lets go between batches can
    tell that someone is waiting and step aside. Re-entrant within a process.
    """

    def __init__(self, uri: str, stage: str, timeout: float):
        self.path: Path | None = None
        if uri.startswith("sqlite:///"):
            database, _ = _sqlite_target(uri)
            self.path = Path(database.removeprefix("file:").split("?")[0] + ".lock")
        self.stage = stage or os.environ.get("DVC_STAGE") or "knnlab"
        self.timeout = timeout

    @property
    def _waiting_path(self) -> Path:
        return self.path.with_name(self.path.name + ".waiting")

    def holder(self) -> str:
        """Who holds the lock, as its holder wrote it (empty when not written yet)."""
        try:
            return self.path.read_text(encoding="utf-8").strip()
        except OSError:
            return ""

    @contextlib.contextmanager
    def held(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the lock for the ``with`` block, waiting at most ``timeout`` seconds (default:
        this lock's) for it."""
        if self.path is None or _held.get(self.path, 0) > 0:
            if self.path is not None:
                _held[self.path] += 1
            try:
                yield
            finally:
                if self.path is not None:
                    _held[self.path] -= 1
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a+", encoding="utf-8") as lock:
            self._acquire(lock, self.timeout if timeout is None else timeout)
            _held[self.path] = 1
            try:
                lock.truncate(0)
                lock.write(
                    f"pid {os.getpid()} on {socket.gethostname()}, stage {self.stage}, since "
                    f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n"
                )
                lock.flush()
                yield
            finally:
                _held[self.path] = 0
                lock.truncate(0)  # no stale holder for the next waiter to name
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _acquire(self, lock, timeout: float) -> None:
        start = time.monotonic()
        notice_after = min(_LOCK_NOTICE_AFTER, timeout / 2)
        announced = False
        marker = None
        with contextlib.ExitStack() as waiting:
            while True:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pass
                if marker is None:  # the first failed attempt: let the holder know
                    marker = waiting.enter_context(self._waiting_path.open("a"))
                    fcntl.flock(marker, fcntl.LOCK_SH)  # blocks only while a holder checks
                waited = time.monotonic() - start
                holder = self.holder() or "another process (not named yet)"
                if waited >= timeout:
                    raise TrackingError(
                        f"gave up after {timeout:g} s waiting for the MLflow store lock "
                        f"{self.path}, held by {holder}: if that process is stuck, stop it; "
                        f"if it is busy, raise mlflow.lock_timeout in params.yaml or set "
                        f"{LOCK_TIMEOUT_ENV} (seconds)"
                    )
                if not announced and waited >= notice_after:
                    announced = True
                    print(
                        f"knnlab {self.stage}: waiting for the MLflow store lock {self.path}, "
                        f"held by {holder}; giving up after {timeout:g} s "
                        f"(mlflow.lock_timeout, or {LOCK_TIMEOUT_ENV})",
                        file=sys.stderr,
                        flush=True,
                    )
                time.sleep(min(_LOCK_POLL, max(timeout - waited, 0.001)))
        if announced:
            print(
                f"knnlab {self.stage}: got the MLflow store lock after "
                f"{time.monotonic() - start:.1f} s",
                file=sys.stderr,
                flush=True,
            )

    def others_waiting(self) -> bool:
        """Whether another process is waiting for this lock (asked by its holder)."""
        if self.path is None:
            return False
        try:
            with self._waiting_path.open("a") as marker:
                try:
                    fcntl.flock(marker, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    return True
                fcntl.flock(marker, fcntl.LOCK_UN)
        except OSError:
            return False
        return False


def _artifact_location(tracking_uri: str, experiment: str) -> str | None:
    """Pin artifacts beside a local SQLite store, in ``mlruns/<experiment>/``, whatever the
    working directory (MLflow would resolve its default against it); let MLflow decide for
    any other store."""
    if tracking_uri.startswith("sqlite:///"):
        db_path = Path(_sqlite_target(tracking_uri)[0].removeprefix("file:").split("?")[0])
        folder = re.sub(r"[^A-Za-z0-9._-]+", "_", experiment).strip("._") or "experiment"
        return (db_path.parent / paths.MLFLOW_ARTIFACTS_NAME / folder).resolve().as_uri()
    return None


def _client(tracking_uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=tracking_uri)


def _experiment_id(client, name: str, tracking_uri: str) -> str:
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(
            name, artifact_location=_artifact_location(tracking_uri, name)
        )
    except MlflowException:
        # Another process created it between our lookup and our create.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def git_commit() -> str | None:
    """The commit the workspace is at, or None outside git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def standard_tags(stage: str) -> dict[str, str]:
    """Tags every knnlab run carries: the DVC stage, the experiment name when DVC runs one,
    the git commit (MLflow's own tag name, so the UI links it) and the owning process."""
    tags = {"knnlab.stage": os.environ.get("DVC_STAGE", stage), **process_tags()}
    if commit := git_commit():
        tags["mlflow.source.git.commit"] = commit
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


class Run:
    """An open MLflow run of one stage; use through :func:`stage_run`. Each method that
    writes to the store holds the store lock for that write only."""

    def __init__(self, client, record: RunRecord, lock: StoreLock | None = None):
        self._client = client
        self.record = record
        self._lock = lock or StoreLock(record.tracking_uri, "", lock_timeout(MlflowParams()))

    def log(self, params=None, metrics=None, tags=None) -> None:
        with self._lock.held():
            _log_batch(self._client, self.record.run_id, params, metrics, tags)

    def log_artifact(self, path: Path | str, artifact_path: str | None = None) -> None:
        # A file copy into the artifact store: no database write, so no lock (a large model
        # file would otherwise hold it for as long as the copy takes).
        self._client.log_artifact(self.record.run_id, str(path), artifact_path)

    @contextlib.contextmanager
    def _fluent(self) -> Iterator[Any]:
        """This run as MLflow's active run, for the fluent-only APIs (models, inputs),
        without the hint MLflow prints at each schema it infers from integer columns (that
        they cannot hold missing values: true, and moot, knnlab refuses missing features).
        Resuming and ending the run writes to the store, so the lock is held throughout."""
        import mlflow

        mlflow.set_tracking_uri(self.record.tracking_uri)
        with self._lock.held(), warnings.catch_warnings():
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

        with self._fluent():
            mlflow.log_input(_dataset(frame, name, target), context=context)

    def log_model(self, model_file: Path, input_example, predicted) -> None:
        """Log the model as an MLflow pyfunc: the knnlab .npz as its data, loaded by the
        installed module ``knnlab.tracking.flavour`` (no code, no pickle in the artifacts),
        with a signature inferred from ``input_example`` (a feature DataFrame) and
        ``predicted`` (its labels); loadable with ``mlflow.pyfunc.load_model`` and, checked,
        with :func:`load_logged_model`. Beyond ``WIDE_COLUMNS`` features the signature is
        one tensor of shape (-1, n_features) (a DataFrame with those columns still works)."""
        import mlflow

        signature, example = _signature_and_example(input_example, predicted)
        with self._fluent():
            info = mlflow.pyfunc.log_model(
                name="model",
                loader_module=PYFUNC_LOADER,
                data_path=str(model_file),
                signature=signature,
                input_example=example,
                # Stated, not inferred: inference would run the model in a subprocess.
                pip_requirements=["knnlab", "numpy", "pandas", "scikit-learn", "numba"],
            )
            _drop_artifact_location(info.model_id)

    def log_children(self, children: list[dict[str, Any]]) -> list[str]:
        """One nested, FINISHED run per child: ``{"name", "params", "metrics"}`` and optional
        ``"tags"``. Returns their run ids, in order.

        A child costs three store transactions (MLflow's minimum through its client: create
        with the tags, one batch of params and metrics, terminate), tens of milliseconds on
        SQLite; a large grid takes minutes. So the store lock is let go between children once
        held for ``_LOCK_HOLD`` seconds, and the stages of other processes interleave.
        """
        ids: list[str] = []
        tags = {"mlflow.parentRunId": self.record.run_id, **process_tags()}
        while len(ids) < len(children):
            if ids and self._lock.others_waiting():
                time.sleep(4 * _LOCK_POLL)  # a waiter tries every _LOCK_POLL: let it in
            with self._lock.held():
                start = time.monotonic()
                for child in children[len(ids) :]:
                    ids.append(self._log_child(child, tags))
                    if time.monotonic() - start >= _LOCK_HOLD:
                        break
        return ids

    def _log_child(self, child: dict[str, Any], tags: dict[str, str]) -> str:
        run = self._client.create_run(
            self.record.experiment_id,
            run_name=child["name"],
            tags={**tags, **{k: str(v) for k, v in (child.get("tags") or {}).items()}},
        )
        _log_batch(self._client, run.info.run_id, child["params"], child["metrics"])
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
        check_store(tracking_uri)
    except TrackingError as error:
        if config.required:
            raise
        _warn_untracked(stage, error)
        return False
    return True


class NullRun:
    """Stands in for a run when the store is unavailable and ``mlflow.required: false``."""

    def __init__(self, tracking_uri: str):
        self.record = RunRecord(tracking_uri, "", "")

    def __getattr__(self, name: str):
        if name.startswith("log"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


def _open_run(config: MlflowParams, stage: str, run_name: str, tracking_uri: str, lock):
    # Bounded retries and timeouts, so an unreachable server fails in seconds (the user's
    # own settings win).
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    from mlflow.exceptions import MlflowException
    from sqlalchemy.exc import SQLAlchemyError

    check_store(tracking_uri)
    try:
        client = _client(tracking_uri)
        experiment_id = _experiment_id(client, config.experiment, tracking_uri)
        close_orphaned_runs(client, experiment_id)
        run = client.create_run(experiment_id, run_name=run_name, tags=standard_tags(stage))
    except (MlflowException, SQLAlchemyError, OSError) as error:
        raise TrackingError(f"MLflow store {redact_uri(tracking_uri)}: {error}") from None
    return client, Run(client, RunRecord(tracking_uri, experiment_id, run.info.run_id), lock)


@contextlib.contextmanager
def stage_run(config: MlflowParams, stage: str, run_name: str) -> Iterator[Run | NullRun]:
    """Open a run for ``stage``; it ends FINISHED, or FAILED if the block raises.

    An unusable store raises :class:`TrackingError` naming it, or, with
    ``mlflow.required: false``, warns once and yields a :class:`NullRun` that logs nothing.

    The store lock is held around each write, not for the block: opening the run (with
    MLflow's first use of a store, which creates its tables, and the closing of orphaned
    runs), each log call, each second's worth of nested runs, and the end.
    """
    tracking_uri = resolve_tracking_uri(config)
    lock = StoreLock(tracking_uri, stage, lock_timeout(config))
    import mlflow  # noqa: F401 - seconds to import: before the lock, not under it

    try:
        with lock.held():
            client, handle = _open_run(config, stage, run_name, tracking_uri, lock)
    except TrackingError as error:
        if config.required:
            raise
        _warn_untracked(stage, error)
        yield NullRun(tracking_uri)
        return
    try:
        yield handle
    except BaseException:
        _mark_failed(client, handle.record.run_id, lock, stage)
        raise
    with lock.held():
        client.set_terminated(handle.record.run_id, "FINISHED")


def _mark_failed(client, run_id: str, lock: StoreLock, stage: str) -> None:
    """End a run FAILED, waiting only briefly for the lock: the stage is failing already,
    and a run left RUNNING is closed (KILLED) by the next stage once this process is gone."""
    try:
        with lock.held(min(lock.timeout, _FAILED_MARK_TIMEOUT)):
            client.set_terminated(run_id, "FAILED")
    except TrackingError as error:
        print(
            f"knnlab {stage}: warning: run {run_id} could not be marked FAILED ({error}); "
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
        with _record_lock(record, config).held(_FAILED_MARK_TIMEOUT):
            client = _client(record.tracking_uri)
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
    with _record_lock(record, config).held():
        client = _client(record.tracking_uri)
        for file in files:
            client.log_artifact(record.run_id, str(file), artifact_path)


def log_table(
    record: RunRecord, table, artifact_file: str, config: MlflowParams | None = None
) -> None:
    """A DataFrame as an MLflow table artifact (shown as a table in the run's UI)."""
    if not record.run_id:
        return
    with _record_lock(record, config).held():
        _client(record.tracking_uri).log_table(record.run_id, table, artifact_file)


def run_summary(tracking_uri: str, experiment: str) -> list[dict[str, Any]]:
    """Every run of ``experiment`` as plain dicts (used by tests and ``knnlab runs``)."""
    client = _client(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], max_results=50000)
    return [
        {
            "run_id": r.info.run_id,
            "name": r.info.run_name,
            "status": r.info.status,
            "params": dict(r.data.params),
            "metrics": dict(r.data.metrics),
            "tags": dict(r.data.tags),
            "artifact_uri": r.info.artifact_uri,
        }
        for r in runs
    ]


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


def _drop_artifact_location(model_id: str) -> None:
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


def _dataset(frame, name: str, target: str):
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


def _signature_and_example(input_example, predicted):
    """The model signature and input example: named columns up to ``WIDE_COLUMNS``
    features; beyond, one float64 tensor of shape (-1, n_features) and a one-row array
    example (a 50,000-column schema would be checked column by column at every predict)."""
    from mlflow.models import infer_signature

    if input_example.shape[1] <= WIDE_COLUMNS:
        return infer_signature(input_example, predicted), input_example
    features = input_example.to_numpy(dtype="float64")[:1]
    return infer_signature(features, predicted[:1]), features


def run_inputs(tracking_uri: str, run_id: str) -> list[tuple[str, str, str]]:
    """(name, digest, context) of each dataset a run logged as input."""
    run = _client(tracking_uri).get_run(run_id)
    return [
        (
            i.dataset.name,
            i.dataset.digest,
            next((t.value for t in i.tags if t.key == "mlflow.data.context"), ""),
        )
        for i in run.inputs.dataset_inputs
    ]


def list_artifacts(tracking_uri: str, run_id: str, path: str | None = None) -> list[str]:
    return [a.path for a in _client(tracking_uri).list_artifacts(run_id, path)]
