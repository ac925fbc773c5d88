"""``knnlab server``: a shared MLflow tracking server on PostgreSQL, with proxied artifacts.

Everything lives in one folder of the user's choice, ``DIR``::

    DIR/postgres/      the PostgreSQL cluster (created by ``initdb`` on first use, then reused)
    DIR/artifacts/     every run's artifacts, uploaded and downloaded through the server
    DIR/pgpass         the database passwords, mode 0600, in libpq's password-file format
    DIR/logs/          postgres.log (the database server's log)
    DIR/server.lock    locked while a server runs on DIR, holding its process id

PostgreSQL is Debian's (``/usr/lib/postgresql/<version>/bin``), or any ``initdb`` on
``PATH``; when it is missing and this runs as root with ``apt-get``, it is installed
(``apt-get install postgresql``), otherwise the error says how. ``initdb`` and ``postgres``
refuse to run as root: as root they run as the ``postgres`` system user that Debian's package
creates (``runuser -u postgres``), which then owns ``DIR/postgres``.

The cluster listens on 127.0.0.1 only, with no unix socket, and takes passwords only
(scram-sha-256): the superuser ``postgres`` and the role ``mlflow``, owner of the database
``mlflow`` that MLflow's server uses, each with a random password generated on first use and
kept in ``DIR/pgpass``. No password is ever printed or put in a URI: MLflow's server reads it
through ``PGPASSFILE``.

The MLflow server (``python -m mlflow server`` of this environment, so nothing needs
activating) listens on 127.0.0.1 by default; any other address is refused unless asked for
with ``--host`` explicitly, and then comes with a warning: it has no authentication.
SIGINT (Ctrl-C) or SIGTERM stops the MLflow server, then PostgreSQL (``pg_ctl stop -m fast``).

One server at a time runs on ``DIR``: a second start refuses, naming the first one's process
id. The lock is the kernel's (``flock`` on ``DIR/server.lock``), so it goes with the process
that held it: a server that crashed or was killed never blocks the next start, which stops
the PostgreSQL it left behind. While it runs, the server watches its PostgreSQL: when that
stops (``pg_ctl stop``, a crash, the machine's OOM killer), the MLflow server is stopped too
and ``knnlab server`` exits with one line, exit code 2, so ``/health`` no longer answers and a
supervisor (systemd's ``Restart=on-failure``) starts both again. MLflow's own ``/health``
answers 200 without asking the database, while every API call fails with 500.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from knnlab.tracking.errors import TrackingError

DEBIAN_POSTGRES = Path("/usr/lib/postgresql")
PG_SYSTEM_USER = "postgres"  # the system user Debian's postgresql package creates
PG_SUPERUSER = "postgres"  # the cluster's superuser role
DB_NAME = DB_USER = "mlflow"
LOOPBACK = "127.0.0.1"
INSTALL_HINT = (
    "install Debian's PostgreSQL: `sudo apt-get install postgresql` (any version; on other "
    "systems, put its initdb, pg_ctl and postgres on PATH)"
)
START_TIMEOUT = 120.0  # seconds for PostgreSQL, then for MLflow's /health, to come up
STOP_TIMEOUT = 20.0  # seconds the MLflow server gets to stop before it is killed
WATCH_INTERVAL = 1.0  # seconds between two looks at PostgreSQL while the server runs
PORTS = range(1, 65536)


@dataclass(frozen=True)
class Layout:
    """Where the server keeps everything, inside ``root`` (``--data``)."""

    root: Path

    @property
    def pgdata(self) -> Path:
        return self.root / "postgres"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def pgpass(self) -> Path:
        return self.root / "pgpass"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def lock(self) -> Path:
        return self.root / "server.lock"


# --- finding or installing PostgreSQL ----------------------------------------------------------
def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", path.parent.parent.name)) or (0,)


def find_postgres(debian_root: Path | None = None) -> Path | None:
    """The folder holding ``initdb``, ``pg_ctl`` and ``postgres``: the newest Debian version
    under ``debian_root`` (default: ``/usr/lib/postgresql``), else the one ``initdb`` on
    ``PATH`` is in; None when neither."""
    root = DEBIAN_POSTGRES if debian_root is None else debian_root
    found = sorted(root.glob("*/bin/initdb"), key=_version_key)
    candidates = [p.parent for p in reversed(found)]
    if on_path := shutil.which("initdb"):
        candidates.append(Path(on_path).resolve().parent)
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def can_install() -> bool:
    """Whether :func:`ensure_postgres` may install PostgreSQL itself: root, with apt-get."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def ensure_postgres(say=print) -> Path:
    """:func:`find_postgres`, installing Debian's ``postgresql`` with apt-get first when it
    is missing and this process is root (saying so through ``say``); without root or
    apt-get, a :class:`TrackingError` saying how to install it."""
    if (found := find_postgres()) is not None:
        return found
    if not can_install():
        raise TrackingError(f"PostgreSQL not found (no {DEBIAN_POSTGRES}/*/bin/initdb, no initdb "
                            f"on PATH): {INSTALL_HINT}")  # fmt: skip
    say(
        "knnlab server: PostgreSQL not found; installing Debian's postgresql with apt-get (as root)"
    )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "postgresql"]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise TrackingError(
                f"`{' '.join(cmd)}` failed ({done.returncode}): {done.stderr.strip()[-800:]}"
            )
    if (found := find_postgres()) is None:
        raise TrackingError(f"apt-get installed postgresql but no initdb was found under "
                            f"{DEBIAN_POSTGRES}: {INSTALL_HINT}")  # fmt: skip
    return found


def postgres_version(bindir: Path) -> str:
    done = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True, text=True)
    return done.stdout.strip() or f"PostgreSQL in {bindir}"


# --- addresses and ports ------------------------------------------------------------------------
def host_warning(host: str) -> str | None:
    """The warning to print for ``--host``: None on a loopback address, else a sentence
    saying the server answers anyone who can reach it, without authentication."""
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).is_loopback:
            return None
    if host == "localhost":
        return None
    return (
        f"knnlab server: WARNING: listening on {host}: anyone who can reach this address can "
        "read, change and delete every run and artifact; the server has no authentication. "
        "Put it behind an authenticating reverse proxy, or use --host 127.0.0.1 (the default)"
    )


def check_port(port: int, option: str = "--port", free_ok: bool = False) -> None:
    """A ValueError naming ``option`` when ``port`` is no TCP port (1 to 65535; 0 too when
    ``free_ok``: a free port picked at start)."""
    if port in PORTS or (free_ok and port == 0):
        return
    allowed = "0 (a free port) or 1 to 65535" if free_ok else "1 to 65535"
    raise ValueError(f"{option} {port} is not a TCP port: expected {allowed}")


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port``, as servers bind (``SO_REUSEADDR``); a
    :class:`TrackingError` naming the port when something already listens on it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: a server writes a response's headers and body
    # separately, and with Nagle's algorithm the body waits for the client's delayed
    # acknowledgement, about 40 ms, on every request of a kept-alive connection.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise TrackingError(
            f"cannot listen on {host}:{port} ({error.strerror}): another server (an "
            "earlier knnlab server?) uses it; stop it, or choose another --port"
        ) from None
    return sock


def check_port_free(host: str, port: int) -> None:
    """A :class:`TrackingError` naming the port when something already listens on it (an
    earlier server, whose /health would otherwise pass for this one's)."""
    bind(host, port).close()


def free_port(host: str = LOOPBACK) -> int:
    """A port nothing listens on now (the kernel's pick for port 0)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --- the PostgreSQL cluster ---------------------------------------------------------------------
def _as_root() -> bool:
    return os.geteuid() == 0


def _pg_command(cmd: list[str]) -> list[str]:
    """``cmd`` as the postgres system user when this is root (PostgreSQL refuses root)."""
    return ["runuser", "-u", PG_SYSTEM_USER, "--", *cmd] if _as_root() else cmd


def _chown_to_postgres(path: Path) -> None:
    if _as_root():
        shutil.chown(path, PG_SYSTEM_USER, PG_SYSTEM_USER)


def _run(cmd: list[str], what: str, log: Path | None = None) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()[-1500:]
        if log is not None and log.is_file():
            detail += "\n" + log.read_text(errors="replace")[-1500:]
        raise TrackingError(f"{what} failed (exit code {done.returncode}): {detail}")
    return done.stdout


def read_pgpass(path: Path) -> dict[str, str]:
    """The passwords in ``path`` (libpq's format), by role."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            _host, _port, _db, user, password = line.split(":", 4)
            found[user] = password
    return found


class Cluster:
    """The PostgreSQL cluster in ``layout.pgdata``, run with the binaries in ``bindir``."""

    def __init__(self, bindir: Path, layout: Layout):
        self.bindir = bindir
        self.layout = layout
        self.log = layout.logs / "postgres.log"

    def _bin(self, name: str) -> str:
        return str(self.bindir / name)

    def initialised(self) -> bool:
        return (self.layout.pgdata / "PG_VERSION").is_file()

    def init(self) -> None:
        """A new cluster in ``DIR/postgres``: superuser ``postgres`` with a random password,
        TCP on 127.0.0.1 with passwords only, no unix socket; both passwords in
        ``DIR/pgpass`` (0600)."""
        pgdata = self.layout.pgdata
        if pgdata.exists() and any(pgdata.iterdir()):
            raise TrackingError(
                f"{pgdata} is not empty and holds no PostgreSQL cluster (no PG_VERSION): move "
                "it away, or choose another --data folder"
            )
        if _as_root():
            _check_system_user()
        pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
        _chown_to_postgres(pgdata)
        if _as_root():
            _check_reachable(pgdata)
        passwords = {PG_SUPERUSER: secrets.token_urlsafe(24), DB_USER: secrets.token_urlsafe(24)}
        _write_private(
            self.layout.pgpass,
            "# knnlab server: the database passwords (libpq's password file, PGPASSFILE)\n"
            f"{LOOPBACK}:*:*:{PG_SUPERUSER}:{passwords[PG_SUPERUSER]}\n"
            f"{LOOPBACK}:*:{DB_NAME}:{DB_USER}:{passwords[DB_USER]}\n",
        )
        pwfile = self.layout.root / ".initdb-password"
        try:
            _write_private(pwfile, passwords[PG_SUPERUSER] + "\n")
            _chown_to_postgres(pwfile)
            _run(
                _pg_command([self._bin("initdb"), "-D", str(pgdata), "-U", PG_SUPERUSER,
                             f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8",
                             "--locale=C", "--no-instructions"]),
                f"initdb of {pgdata}",
            )  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)
        hba = pgdata / "pg_hba.conf"
        hba.write_text(
            "# knnlab server: TCP on 127.0.0.1 only, scram-sha-256 passwords; no unix socket\n"
            "# TYPE  DATABASE  USER  ADDRESS       METHOD\n"
            f"host    all       all   {LOOPBACK}/32  scram-sha-256\n",
            encoding="utf-8",
        )
        _chown_to_postgres(hba)

    def running(self) -> bool:
        """Whether a postmaster runs on this cluster (``pg_ctl status``: 0 running)."""
        cmd = _pg_command([self._bin("pg_ctl"), "status", "-D", str(self.layout.pgdata)])
        return subprocess.run(cmd, capture_output=True).returncode == 0

    def start(self, port: int) -> None:
        """Start the postmaster on 127.0.0.1:``port`` and wait until it takes connections.
        The address and the absence of a socket are given on its command line, which wins
        over any edit of postgresql.conf."""
        options = f"-c listen_addresses={LOOPBACK} -c unix_socket_directories='' -p {int(port)}"
        self.layout.logs.mkdir(parents=True, exist_ok=True)
        _chown_to_postgres(self.layout.logs)
        _run(
            _pg_command([self._bin("pg_ctl"), "start", "-D", str(self.layout.pgdata), "-w",
                         "-t", str(int(START_TIMEOUT)), "-l", str(self.log), "-o", options]),
            f"starting PostgreSQL on {LOOPBACK}:{port} (its log: {self.log})",
            self.log,
        )  # fmt: skip

    def stop(self) -> None:
        """``pg_ctl stop -m fast``: roll back open transactions, close, wait for it."""
        _run(
            _pg_command([self._bin("pg_ctl"), "stop", "-D", str(self.layout.pgdata), "-m", "fast",
                         "-w", "-t", str(int(START_TIMEOUT))]),
            "stopping PostgreSQL",
            self.log,
        )  # fmt: skip

    def pid(self) -> int | None:
        """The postmaster's process id, from ``postmaster.pid`` (None when stopped)."""
        try:
            return int((self.layout.pgdata / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def still_running(self, pid: int) -> bool:
        """Whether the postmaster ``pid`` still runs this cluster: ``postmaster.pid`` still
        names it (``pg_ctl stop`` removes the file) and the process lives. Read from files
        rather than by ``pg_ctl status``, which would start a process every second."""
        return self.pid() == pid and _alive(pid)

    def ensure_database(self, port: int) -> None:
        """The role and database ``mlflow`` (owner: that role), created when missing."""
        psycopg2 = _psycopg2()
        passwords = read_pgpass(self.layout.pgpass)
        with contextlib.closing(
            psycopg2.connect(host=LOOPBACK, port=port, user=PG_SUPERUSER, dbname="postgres",
                             passfile=str(self.layout.pgpass), connect_timeout=10)
        ) as db:  # fmt: skip
            db.autocommit = True  # CREATE DATABASE cannot run in a transaction
            with db.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (DB_USER,))
                if cursor.fetchone() is None:
                    cursor.execute(
                        f"CREATE ROLE {DB_USER} LOGIN PASSWORD %s", (passwords[DB_USER],)
                    )
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,))
                if cursor.fetchone() is None:
                    cursor.execute(f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}")


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is no zombie (a crashed postmaster stays one when
    the container's first process reaps nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    with contextlib.suppress(OSError, IndexError):  # no /proc: trust kill
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    return True


def lock_data(layout: Layout) -> int:
    """Take ``DIR/server.lock`` for this process and write its id there; the open file
    descriptor, whose closing (or the process's end) releases the lock. A
    :class:`TrackingError` naming ``DIR`` and the holder's process id when another server
    holds it."""
    fd = os.open(layout.lock, os.O_RDWR | os.O_CREAT, 0o644)  # close-on-exec: not inherited
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", errors="replace").strip()
        os.close(fd)
        pid = holder if holder.isdigit() else "unknown"
        raise TrackingError(
            f"{layout.root} is in use by another knnlab server (pid {pid}): stop that one "
            "first (Ctrl-C, or SIGTERM), or choose another --data folder"
        ) from None
    except OSError:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def _psycopg2():
    try:
        import psycopg2
    except ImportError:
        raise TrackingError(
            "the server needs psycopg2 (MLflow's PostgreSQL driver): install knnlab's team "
            "extra, `pip install -e '.[team]'` (or `pip install psycopg2-binary`)"
        ) from None
    return psycopg2


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable by its owner only, from the first byte."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def _check_system_user() -> None:
    import pwd

    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        raise TrackingError(
            f"running as root, PostgreSQL must run as the system user {PG_SYSTEM_USER!r}, "
            f"which does not exist: {INSTALL_HINT} (its package creates the user), or run "
            "knnlab server as a normal user"
        ) from None


def _check_reachable(pgdata: Path) -> None:
    """As root: the postgres user must be able to reach and write ``pgdata``; a parent
    folder only root may enter (``/root``, pytest's folders) stops it."""
    done = subprocess.run(_pg_command(["test", "-w", str(pgdata), "-a", "-x", str(pgdata)]))
    if done.returncode != 0:
        closed = [
            str(p) for p in reversed(pgdata.parents) if p.exists() and not p.stat().st_mode & 0o001
        ]
        raise TrackingError(
            f"the {PG_SYSTEM_USER} user (PostgreSQL refuses to run as root) cannot reach "
            f"{pgdata}: {', '.join(closed) or 'a parent folder'} cannot be entered by other "
            "users; choose a --data folder elsewhere (e.g. /srv/mlflow), or run knnlab server "
            "as a normal user"
        )


# --- the MLflow server --------------------------------------------------------------------------
def backend_store_uri(pg_port: int) -> str:
    """MLflow's store: the database ``mlflow`` as the role ``mlflow``, no password (it comes
    from ``PGPASSFILE``)."""
    return f"postgresql+psycopg2://{DB_USER}@{LOOPBACK}:{int(pg_port)}/{DB_NAME}"


def mlflow_command(layout: Layout, host: str, port: int, pg_port: int, workers: int) -> list[str]:
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend_store_uri(pg_port),
        "--serve-artifacts", "--artifacts-destination", layout.artifacts.resolve().as_uri(),
        "--host", host, "--port", str(int(port)), "--workers", str(int(workers)),
    ]  # fmt: skip


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = START_TIMEOUT) -> float:
    """Seconds until ``url``/health answers; a :class:`TrackingError` if ``process`` ends
    first or ``timeout`` passes."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if process.poll() is not None:
            raise TrackingError(f"the MLflow server exited with code {process.returncode} "
                                "before answering (its messages are above)")  # fmt: skip
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                reply.read(64)
                return time.monotonic() - start
        except OSError:
            time.sleep(0.2)
    raise TrackingError(f"the MLflow server did not answer {url}/health in {timeout:g} s")


def _stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM to the MLflow server's process group (uvicorn and its workers), SIGKILL to
    what is left after STOP_TIMEOUT seconds."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(STOP_TIMEOUT)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # workers orphaned by a crashed parent


class _Stop(Exception):
    """SIGTERM, handled like Ctrl-C."""


def _raise_stop(signum, frame):
    raise _Stop


def banner(layout: Layout, url: str, pg_port: int, bindir: Path) -> str:
    pg_dump = shlex.quote(str(bindir / "pg_dump"))
    passfile = shlex.quote(str(layout.pgpass))
    backup = (
        f"PGPASSFILE={passfile} {pg_dump} -h {LOOPBACK} -p {pg_port} -U {DB_USER} -Fc "
        f"-f mlflow.dump {DB_NAME}"
    )
    return "\n".join([
        f"knnlab server: MLflow tracking server at {url}",
        f"  runs:      PostgreSQL database {DB_NAME!r} on {LOOPBACK}:{pg_port} "
        f"(cluster {layout.pgdata}, passwords in {layout.pgpass})",
        f"  artifacts: {layout.artifacts} (proxied: clients upload and download through the "
        "server)",
        f"  pipeline:  MLFLOW_TRACKING_URI={url} dvc repro",
        f"  back up:   {backup}",
        "  stop:      Ctrl-C (or SIGTERM)",
    ])  # fmt: skip


def serve(data: Path, host: str, port: int, pg_port: int, workers: int) -> int:
    """Run PostgreSQL and the MLflow server on ``data`` in the foreground until Ctrl-C or
    SIGTERM (exit code 0). A :class:`TrackingError` when another server runs on ``data``,
    or when the MLflow server or PostgreSQL ends by itself (both are stopped either way).
    ``pg_port`` 0 picks a free port."""
    check_port(port)
    check_port(pg_port, "--pg-port", free_ok=True)
    layout = Layout(data.expanduser().resolve())
    if warning := host_warning(host):
        print(warning, file=sys.stderr, flush=True)
    bindir = ensure_postgres(lambda line: print(line, flush=True))
    layout.root.mkdir(parents=True, exist_ok=True)
    lock = lock_data(layout)
    try:
        return _serve_locked(layout, bindir, host, port, pg_port, workers)
    finally:
        os.close(lock)


def _serve_locked(
    layout: Layout, bindir: Path, host: str, port: int, pg_port: int, workers: int
) -> int:
    layout.artifacts.mkdir(exist_ok=True)
    cluster = Cluster(bindir, layout)
    if not cluster.initialised():
        print(f"knnlab server: creating a PostgreSQL cluster in {layout.pgdata} "
              f"({postgres_version(bindir)})", flush=True)  # fmt: skip
        cluster.init()
    elif not layout.pgpass.is_file():
        raise TrackingError(f"{layout.pgpass} is missing: it holds the passwords of the cluster "
                            f"in {layout.pgdata}; restore it from a backup")  # fmt: skip
    if cluster.running():
        print(f"knnlab server: stopping the PostgreSQL of an earlier knnlab server on "
              f"{layout.pgdata} (pid {cluster.pid()})", flush=True)  # fmt: skip
        cluster.stop()
    check_port_free(host, port)
    pg_port = pg_port or free_port()
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    # Ctrl-C even when started with SIGINT ignored (a background job of a script inherits that)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    mlflow = None
    try:
        cluster.start(pg_port)
        cluster.ensure_database(pg_port)
        env = {**os.environ, "PGPASSFILE": str(layout.pgpass)}
        env.pop("PGPASSWORD", None)
        env.pop("MLFLOW_TRACKING_URI", None)
        # MLflow's job runner (a huey consumer for GenAI scoring and trace archival) serves
        # nothing knnlab logs; off unless the environment asks for it.
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        mlflow = subprocess.Popen(
            mlflow_command(layout, host, port, pg_port, workers),
            env=env, cwd=layout.root, stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        seconds = wait_healthy(url if host not in ("0.0.0.0", "::") else
                               f"http://{LOOPBACK}:{port}", mlflow)  # fmt: skip
        print(banner(layout, url, pg_port, bindir), flush=True)
        print(f"knnlab server: ready in {seconds:.1f} s", flush=True)
        _watch(mlflow, cluster)
    except (KeyboardInterrupt, _Stop):
        print("knnlab server: stopping", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut this short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if mlflow is not None:
                _stop_process_group(mlflow)
            if cluster.running():
                cluster.stop()
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _watch(mlflow: subprocess.Popen, cluster: Cluster) -> NoReturn:
    """Wait while both the MLflow server and PostgreSQL run; a :class:`TrackingError` saying
    which one ended. MLflow's /health does not ask the database, so without this a server
    whose PostgreSQL stopped would pass every health check and fail every request."""
    postmaster = cluster.pid()
    while True:
        try:
            code = mlflow.wait(WATCH_INTERVAL)
        except subprocess.TimeoutExpired:
            if postmaster is None or not cluster.still_running(postmaster):
                raise TrackingError(
                    f"PostgreSQL (pid {postmaster}) stopped under the server, so the MLflow "
                    f"server was stopped too; see its log {cluster.log}, then start knnlab "
                    "server again"
                ) from None
        else:
            raise TrackingError(
                f"the MLflow server ended by itself (exit code {code}; its messages are "
                "above), so PostgreSQL was stopped too; start knnlab server again"
            )


def check(say=print) -> None:
    """``knnlab server --check``: find (or, as root with apt-get, install) PostgreSQL and
    check MLflow's driver for it is importable; say what was found."""
    bindir = ensure_postgres(say)
    _psycopg2()
    say(f"knnlab server: {postgres_version(bindir)} in {bindir}; psycopg2 importable")
