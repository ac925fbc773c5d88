"""The MLflow store: where runs go, which URIs are refused or redacted, whether the store
answers, and the lock that serialises writes to a SQLite store across processes.

Where runs go: ``MLFLOW_TRACKING_URI`` from the environment if set, else
``mlflow.tracking_uri`` from params.yaml, else ``sqlite:///<repository root>/mlflow.db``
(MLflow 3's own default file, pinned to the main repository so runs from DVC's temporary
experiment workspaces land in the same store) with artifacts in ``<root>/mlruns`` beside it,
which is what ``mlflow ui`` started at the repository root shows.

Secrets: a tracking URI with a credential in it (user-info, or a query parameter that looks
like a secret) is refused before MLflow sees it, and every URI knnlab prints or stores goes
through :func:`redact_uri`.

Concurrency: writes to a SQLite store are serialised across processes by a lock file beside
it, held around each write (never for a whole stage, and at most about a second at a time
while nested runs are logged), with a message on stderr while waiting and a bounded wait.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import math
import os
import re
import signal
import socket
import sqlite3
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from knnlab.pipeline.io import paths
from knnlab.pipeline.io.params import MAX_WAIT_SECONDS, MlflowParams, ParamsError
from knnlab.tracking.errors import TrackingError

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


def _auth_header() -> dict[str, str]:
    """What MLflow's own client sends: Basic auth from MLFLOW_TRACKING_USERNAME and
    MLFLOW_TRACKING_PASSWORD, else a bearer MLFLOW_TRACKING_TOKEN, else nothing."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return {"Authorization": f"Basic {token}"}
    if token := os.environ.get("MLFLOW_TRACKING_TOKEN"):
        return {"Authorization": f"Bearer {token}"}
    return {}


def check_store(uri: str, experiment: str | None = None, timeout: float = 8.0) -> None:
    """Fail fast, naming the URI, when the store cannot take writes: a server that does not
    answer its health check, or a SQLite file that is read-only, damaged or cannot be
    created; and, given its name, when ``experiment`` exists but is deleted (MLflow would
    refuse the stage's run only once the stage has computed everything)."""
    if uri.startswith(("http://", "https://")):
        request = urllib.request.Request(uri.rstrip("/") + "/health", headers=_auth_header())
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                reply.read(64)
        except urllib.error.HTTPError as error:
            if error.code in (401, 403):
                raise TrackingError(
                    f"MLflow tracking server {redact_uri(uri)} refused the credentials "
                    f"(HTTP {error.code}); set MLFLOW_TRACKING_USERNAME and "
                    "MLFLOW_TRACKING_PASSWORD, or MLFLOW_TRACKING_TOKEN"
                ) from None
            raise TrackingError(
                f"MLflow tracking server {redact_uri(uri)} answers its health check with HTTP "
                f"{error.code}; is it an MLflow server?"
            ) from None
        except (OSError, ValueError) as error:  # URLError and timeouts are OSErrors
            raise TrackingError(
                f"MLflow tracking server {redact_uri(uri)} cannot be reached ({error}); start it, "
                "fix mlflow.tracking_uri / MLFLOW_TRACKING_URI, or set mlflow.required: false"
            ) from None
        if experiment is not None:
            state = _server_experiment_state(uri, experiment, timeout)
            _check_experiment_active(uri, experiment, state)
    elif uri.startswith("sqlite:///"):
        database, is_uri = _sqlite_target(uri)
        try:
            with contextlib.closing(sqlite3.connect(database, uri=is_uri, timeout=timeout)) as db:
                # A real (rolled back) write: opening and locking succeed on read-only files.
                db.execute("BEGIN IMMEDIATE")
                version = db.execute("PRAGMA user_version").fetchone()[0]
                db.execute(f"PRAGMA user_version = {int(version)}")
                db.rollback()
                state = _sqlite_experiment_state(db, experiment) if experiment else None
        except sqlite3.Error as error:
            raise TrackingError(store_failure(uri, error)) from None
        _check_experiment_active(uri, experiment, state)


# MLflow's own words for an experiment in the trash, and how a user gets it back.
_DELETED = "deleted"


def _sqlite_experiment_state(db, experiment: str) -> tuple[str, str] | None:
    """(id, lifecycle stage) of ``experiment`` in an MLflow SQLite store; None when the
    store has no such experiment yet (or no tables: MLflow creates them on first use)."""
    has_table = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'experiments'"
    ).fetchone()
    if not has_table:
        return None
    row = db.execute(
        "SELECT experiment_id, lifecycle_stage FROM experiments WHERE name = ?", (experiment,)
    ).fetchone()
    return (str(row[0]), str(row[1])) if row else None


def _server_experiment_state(uri: str, experiment: str, timeout: float) -> tuple[str, str] | None:
    """(id, lifecycle stage) of ``experiment`` on an MLflow server (its REST API), None when
    it does not exist or the server does not say."""
    import json
    from urllib.parse import quote

    url = (
        uri.rstrip("/")
        + "/api/2.0/mlflow/experiments/get-by-name?experiment_name="
        + quote(experiment, safe="")
    )
    request = urllib.request.Request(url, headers=_auth_header())
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            found = json.loads(reply.read(1 << 20)).get("experiment") or {}
    except (OSError, ValueError):  # 404 for a missing experiment; the stage finds out later
        return None
    if "experiment_id" not in found:
        return None
    return str(found["experiment_id"]), str(found.get("lifecycle_stage", "active"))


def _check_experiment_active(uri: str, name: str | None, state: tuple[str, str] | None) -> None:
    if state is not None and state[1] == _DELETED:
        experiment_id = state[0]
        raise TrackingError(
            f"MLflow experiment {name!r} (id {experiment_id}) in store {redact_uri(uri)} is "
            "deleted (in MLflow's trash): restore it with `mlflow experiments restore "
            f"--experiment-id {experiment_id}`, or set mlflow.experiment to another name"
        )


def _root_cause(error: BaseException) -> BaseException:
    """The innermost error: MLflow wraps SQLAlchemy's, which wraps the driver's (``orig``)."""
    seen = {id(error)}
    while True:
        inner = getattr(error, "orig", None) or error.__cause__
        if not isinstance(inner, BaseException) or id(inner) in seen:
            return error
        seen.add(id(inner))
        error = inner


def _first_line(error: BaseException) -> str:
    """The driver's own message, without SQLAlchemy's statement, parameters and link."""
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _space_problem(database: Path) -> tuple[str, str] | None:
    """(why, what to do) when writing a file next to ``database`` fails for lack of room: a
    file size limit (``ulimit -f``) or a full disk."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY:
        return (
            f"this process may write files of at most {soft:,} bytes (ulimit -f)",
            "raise the limit (ulimit -f unlimited)",
        )
    try:
        stat = os.statvfs(database.parent if database.parent.exists() else Path("."))
    except OSError:
        return None
    free = stat.f_bavail * stat.f_frsize
    if free < 64 * 2**20:
        return f"the disk holding it has {free:,} bytes free", "free some space"
    return None


def store_failure(uri: str, error: BaseException) -> str:
    """One line on why the MLflow store at ``uri`` failed, naming the likely cause and the
    fix; SQLAlchemy's statements and tracebacks stay out of it (``--debug`` shows them)."""
    error = _root_cause(error)
    detail = _first_line(error)
    lowered = detail.lower()
    where = f"MLflow store {redact_uri(uri)}"
    database = None
    if uri.startswith("sqlite:///"):
        database = Path(_sqlite_target(uri)[0].removeprefix("file:").split("?")[0])
    if (
        isinstance(error, OSError)
        and error.filename
        and error.errno
        not in (
            errno.ENOSPC,
            errno.EFBIG,
        )
    ):
        # A file of the artifact store (mlruns/ beside a SQLite store), not the database.
        return (
            f"the artifact store of {where} cannot write {error.filename} ({error.strerror}); "
            "check that folder's permissions"
        )
    if "not a database" in lowered or "malformed" in lowered:
        return (
            f"{where} is damaged or is not an MLflow SQLite store ({detail}); move the file "
            "away (a new store is created on the next run) or restore it from a backup"
        )
    errno_value = getattr(error, "errno", None)
    if (
        "disk i/o error" in lowered
        or "disk is full" in lowered
        or "file too large" in lowered
        or errno_value in (errno.ENOSPC, errno.EFBIG)
    ):
        cause, fix = (_space_problem(database) if database else None) or (
            "",
            "free some space or raise the file size limit",
        )
        cause = f": {cause}" if cause else ""
        return f"{where} cannot be written ({detail}){cause}; {fix}, then re-run the stage"
    if "locked" in lowered:
        return (
            f"{where} is locked by another process ({detail}); wait for it to finish, or "
            "raise mlflow.lock_timeout"
        )
    if "unable to open" in lowered and database is not None and not database.parent.is_dir():
        return (
            f"{where} cannot be created: the folder {database.parent} does not exist; create "
            "it, or fix mlflow.tracking_uri / MLFLOW_TRACKING_URI"
        )
    if "readonly" in lowered or "permission" in lowered or "unable to open" in lowered:
        return (
            f"{where} cannot be written ({detail}); check the file and folder permissions, "
            "or set mlflow.required: false"
        )
    return f"{where}: {detail}"


# --- the store lock -------------------------------------------------------------------------
LOCK_TIMEOUT_ENV = "KNNLAB_LOCK_TIMEOUT"  # overrides mlflow.lock_timeout, as for the URI
_LOCK_NOTICE_AFTER = 2.0  # seconds of waiting before a waiter says so on stderr
LOCK_POLL = 0.05  # seconds between attempts of a waiter
LOCK_HOLD = 1.0  # log_children lets the lock go between children after holding it this long
FAILED_MARK_TIMEOUT = 10.0  # marking a run FAILED waits at most this long for the lock
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
    if not (math.isfinite(value) and 0 < value <= MAX_WAIT_SECONDS):
        raise ParamsError(
            f"{LOCK_TIMEOUT_ENV}={raw[:40]!r} is not allowed; expected a positive number of "
            f"seconds, at most {MAX_WAIT_SECONDS:.0f} (it overrides mlflow.lock_timeout in "
            "params.yaml); unset it to use that"
        )
    return value


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM back for the block, a write to the store, and act on
    them when it ends. Interrupted inside a database transaction, MLflow's SQLAlchemy session
    leaves it open, and the open transaction keeps the SQLite file locked against this
    process's own attempt to mark the run KILLED. The writes are short (the lock is let go
    every second while nested runs are logged), so the interrupt still lands promptly."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signals are delivered to the main thread only
        return
    received: list[tuple[int, Any]] = []
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        previous[signum] = signal.signal(signum, lambda *got: received.append(got))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        if received:
            signum, frame = received[0]
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)  # raises KeyboardInterrupt (or the CLI's Terminated)
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)  # what the signal would have done


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
                with interrupts_deferred():
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
                with interrupts_deferred():
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
                time.sleep(min(LOCK_POLL, max(timeout - waited, 0.001)))
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


def mlflow_client(tracking_uri: str):
    """MLflow's client of ``tracking_uri``, with bounded retries and timeouts, so that an
    unreachable server fails in seconds, not minutes (the user's own settings win)."""
    import mlflow

    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")

    return mlflow.MlflowClient(tracking_uri=tracking_uri)


# MLflow 3 opens an experiment on the GenAI views (traces, token usage) unless it is tagged
# as model development; knnlab's experiments hold training runs.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_DEVELOPMENT = "custom_model_development"


def experiment_id_for(client, name: str, tracking_uri: str) -> str:
    """The id of experiment ``name``, created if missing; created or found, it is tagged as
    model development (an experiment from before the tag, or made by hand, gets it too,
    unless someone set a kind of their own)."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        try:
            return client.create_experiment(
                name,
                artifact_location=_artifact_location(tracking_uri, name),
                tags={EXPERIMENT_KIND_TAG: MODEL_DEVELOPMENT},
            )
        except MlflowException:
            # Another process created it between our lookup and our create.
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                raise
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, MODEL_DEVELOPMENT)
    return experiment.experiment_id
