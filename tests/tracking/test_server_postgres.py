"""The team server for real (issue 16): ``knnlab server`` starts a real PostgreSQL and a real
``mlflow server`` with proxied artifacts on free loopback ports, the DVC pipeline logs to it
over HTTP, and everything it logged is read back through the server, and from PostgreSQL
itself. Then SIGTERM stops both, and a second start on the same folder finds every run.

PostgreSQL must be installed (Debian's ``postgresql``): ``make test`` installs it first when
it runs as root with apt-get (``make test-deps``); elsewhere these tests are skipped, saying
so. The fast tests at the end need no PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from knnlab import cli
from knnlab.tracking import models, registry, server
from knnlab.tracking.errors import TrackingError
from knnlab.tracking.store import mlflow_client

from ..support import mlflow_store
from ..support.project import SMALL_GRID, make_project, run, stages_run

POSTGRES = server.find_postgres()
NO_POSTGRES = (
    "PostgreSQL is not installed: `make test-deps` installs it (as root, with apt-get), or "
    "`sudo apt-get install postgresql`"
)
needs_postgres = pytest.mark.skipif(POSTGRES is None, reason=NO_POSTGRES)
STAGES = ["params", "fetch", "split", "train", "exact", "audit", "tune", "evaluate", "plot"]


def _processes_using(folder: Path) -> list[int]:
    """Processes whose command line or environment names ``folder``: PostgreSQL
    (``-D DIR/postgres``), MLflow's server and its uvicorn workers (the artifacts folder)."""
    found = []
    needle = str(folder).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            text = (entry / "cmdline").read_bytes() + (entry / "environ").read_bytes()
            if needle in text and (entry / "stat").read_text().split()[2] != "Z":
                found.append(int(entry.name))
    return found


def _port_open(port: int) -> bool:
    import socket

    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


class TeamServer:
    """``knnlab server`` as a real process, its output in a file."""

    def __init__(self, data: Path, port: int, pg_port: int | None = None):
        self.data, self.port = data, port
        self.url = f"http://127.0.0.1:{port}"
        self.log = data.parent / f"server-{time.monotonic_ns()}.log"
        argv = [sys.executable, "-m", "knnlab", "server", "--data", str(data),
                "--port", str(port), "--workers", "1"]  # fmt: skip
        if pg_port is not None:
            argv += ["--pg-port", str(pg_port)]
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        self.started = time.monotonic()
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120) -> float:
        while time.monotonic() - self.started < timeout:
            if self.process.poll() is not None:
                pytest.fail(f"knnlab server exited with {self.process.returncode}:\n"
                            f"{self.output()[-4000:]}")  # fmt: skip
            if "knnlab server: ready in" in self.output():
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as reply:
                    assert reply.status == 200
                return time.monotonic() - self.started
            time.sleep(0.2)
        pytest.fail(f"knnlab server not ready after {timeout} s:\n{self.output()[-4000:]}")

    def pg_port(self) -> int:
        return int(re.search(r"on 127\.0\.0\.1:(\d+) \(cluster", self.output()).group(1))

    def terminate(self, signum: int = signal.SIGTERM, timeout: float = 60) -> tuple[int, float]:
        """``signum`` to ``knnlab server`` alone (not its group): its exit code and seconds."""
        start = time.monotonic()
        self.process.send_signal(signum)
        code = self.process.wait(timeout)
        return code, time.monotonic() - start

    def kill_leftovers(self) -> None:
        """Last resort, after a failure: nothing of this test may outlive it."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        cluster = server.Cluster(POSTGRES, server.Layout(self.data))
        if cluster.running():
            with contextlib.suppress(TrackingError):
                cluster.stop()
        for pid in _processes_using(self.data):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """A server on a fresh folder and the pipeline run against it: yields a dict with the
    server, its folder, the project and the runs it logged, seen through the server."""
    if POSTGRES is None:
        pytest.skip(NO_POSTGRES)
    # Not under pytest's folders: as root, PostgreSQL runs as the postgres user, which must
    # be able to enter every parent of its data folder (pytest's are root's alone).
    base = Path(tempfile.mkdtemp(prefix="knnlab-team-server-"))
    base.chmod(0o711)
    data = base / "data"
    state = {"server": TeamServer(data, server.free_port(), server.free_port())}
    try:
        state["start_seconds"] = state["server"].wait_ready()
        uri = state["server"].url
        root = make_project(tmp_path_factory.mktemp("project"), data={"dataset": "iris"},
                            tune=SMALL_GRID)  # fmt: skip
        start = time.monotonic()
        output = run(["dvc", "repro"], root, env={"MLFLOW_TRACKING_URI": uri})
        state.update(
            data=data, uri=uri, root=root, output=output,
            repro_seconds=time.monotonic() - start,
            runs=mlflow_store.run_summary(uri, "knnlab"),
        )  # fmt: skip
        print(f"\nknnlab server ready in {state['start_seconds']:.1f} s; dvc repro against it "
              f"{state['repro_seconds']:.1f} s; {len(state['runs'])} runs")  # fmt: skip
        yield state
    finally:
        try:
            if state["server"].process.poll() is None:
                code, seconds = state["server"].terminate(signal.SIGINT)  # as Ctrl-C
                print(f"\nknnlab server stopped by SIGINT in {seconds:.1f} s")
                assert code == 0, state["server"].output()[-4000:]
            assert _processes_using(data) == [], "PostgreSQL or MLflow outlived the server"
        finally:
            state["server"].kill_leftovers()
            shutil.rmtree(base, ignore_errors=True)


def _by_stage(runs: list[dict], stage: str) -> list[dict]:
    return [r for r in runs if r["tags"].get("knnlab.stage") == stage]


@pytest.mark.slow
def test_the_pipeline_logs_every_run_and_nested_run_to_the_server(team):
    assert stages_run(team["output"]) == STAGES
    runs = team["runs"]
    [tune], [evaluate] = _by_stage(runs, "tune"), _by_stage(runs, "evaluate")
    _, children = mlflow_store.candidates_of(team["uri"], tune)
    assert len(children) == 3 * 2, "one nested run per grid point (k in 1, 3, 5; p in 1, 2)"
    assert len(runs) == 1 + 1, [r["name"] for r in runs]
    assert {r["status"] for r in runs + children} == {"FINISHED"}
    assert all("mean_test_accuracy" in c["metrics"] for c in children)
    for key in ("dataset", "n_neighbors", "p", "weights", "algorithm", "tuned_n_neighbors"):
        assert key in evaluate["params"], f"evaluate run lacks param {key}"
    assert evaluate["params"]["dataset"] == "iris"
    for key in ("test/accuracy", "test/accuracy_ci_low", "tuned/f1_macro", "baseline/accuracy"):
        assert key in evaluate["metrics"], f"evaluate run lacks metric {key}"
    inputs = mlflow_store.run_inputs(team["uri"], evaluate["run_id"])
    assert sorted((name, context) for name, _, context in inputs) == [
        ("iris-test", "evaluation"),
        ("iris-train", "training"),
    ]
    root = team["root"]
    assert not (root / "mlflow.db").exists() and not (root / "mlruns").exists(), (
        "nothing is logged into the project when MLFLOW_TRACKING_URI names a server"
    )


@pytest.mark.slow
def test_figures_reports_and_model_land_in_the_server_artifact_folder(team):
    uri, root, artifacts = team["uri"], team["root"], team["data"] / "artifacts"
    [evaluate], [tune] = _by_stage(team["runs"], "evaluate"), _by_stage(team["runs"], "tune")
    assert evaluate["artifact_uri"].startswith("mlflow-artifacts:/"), "proxied artifacts"
    listed = set(mlflow_store.list_artifacts(uri, evaluate["run_id"]))
    assert {"figures", "report.md", "metrics.json", "confusion_matrix.json"} <= listed
    figures = set(mlflow_store.list_artifacts(uri, evaluate["run_id"], "figures"))
    assert figures == {f"figures/{p.name}" for p in (root / "reports/figures").iterdir()}
    assert "tune/search_speed.png" in mlflow_store.list_artifacts(uri, tune["run_id"], "tune")
    on_disk = {p.relative_to(artifacts).as_posix() for p in artifacts.rglob("*") if p.is_file()}
    for name in ("report.md", "metrics.json", "figures/confusion_matrix.png"):
        assert any(p.endswith(f"/{evaluate['run_id']}/artifacts/{name}") for p in on_disk), name
    model = re.compile(r"^\d+/models/m-[0-9a-f]+/artifacts/(MLmodel|data/[^/]+\.npz)$")
    assert len([p for p in on_disk if model.match(p)]) == 2, "the model is in DIR/artifacts"
    report = next(p for p in on_disk if p.endswith(f"{evaluate['run_id']}/artifacts/report.md"))
    assert (artifacts / report).read_bytes() == (root / "reports/report.md").read_bytes()


@pytest.mark.slow
def test_the_model_loads_back_through_the_server_and_predicts_as_evaluate_did(team):
    [evaluate] = _by_stage(team["runs"], "evaluate")
    model = models.load_logged_model(team["uri"], evaluate["run_id"])
    test = pd.read_parquet(team["root"] / "data/split/test.parquet")
    predicted = pd.read_csv(team["root"] / "reports/plots/predictions.csv")["predicted"]
    np.testing.assert_array_equal(model.predict(test.drop(columns=["label"])), predicted)


@pytest.mark.slow
def test_the_model_is_registered_and_the_champion_loads_by_alias(team):
    [evaluate] = _by_stage(team["runs"], "evaluate")
    client = mlflow_client(team["uri"])
    name = registry.registered_name("iris")
    champion = client.get_model_version_by_alias(name, registry.CHAMPION)
    assert champion.run_id == evaluate["run_id"], "the first version is the champion"
    assert champion.tags[registry.ROLE_TAG] == "champion"
    assert "first version" in champion.tags[registry.VERDICT_TAG]
    loaded = models.load_logged_classifier(team["uri"], f"models:/{name}@champion")
    test = pd.read_parquet(team["root"] / "data/split/test.parquet")
    predicted = pd.read_csv(team["root"] / "reports/plots/predictions.csv")["predicted"]
    np.testing.assert_array_equal(
        loaded.predict(test.drop(columns=["label"]).to_numpy()), predicted
    )


def _connect(team, user: str = server.DB_USER, **options):
    psycopg2 = pytest.importorskip("psycopg2")
    return contextlib.closing(
        psycopg2.connect(host="127.0.0.1", port=team["server"].pg_port(), user=user,
                         dbname=server.DB_NAME, connect_timeout=10, **options)
    )  # fmt: skip


@pytest.mark.slow
def test_postgresql_holds_the_runs_listens_on_loopback_only_and_wants_a_password(team):
    pgpass = team["data"] / "pgpass"
    with _connect(team, passfile=str(pgpass)) as db, db.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs")
        (tune,) = _by_stage(team["runs"], "tune")
        _, candidates = mlflow_store.candidates_of(team["uri"], tune)
        # the stage runs, and the candidates with their parent in their own experiment
        assert cursor.fetchone()[0] == len(team["runs"]) + 1 + len(candidates)
        cursor.execute("SELECT count(*) FROM input_tags")
        assert cursor.fetchone()[0] >= 2, "dataset inputs are rows in PostgreSQL too"
        cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        assert cursor.fetchone()[0] is False, "MLflow's role is no superuser"
    with (
        _connect(team, user=server.PG_SUPERUSER, passfile=str(pgpass)) as db,
        db.cursor() as cursor,
    ):
        cursor.execute("SHOW listen_addresses")
        assert cursor.fetchone()[0] == "127.0.0.1"
        cursor.execute("SHOW unix_socket_directories")
        assert cursor.fetchone()[0] == "", "no unix socket"
    import psycopg2

    wrong = pytest.raises(psycopg2.OperationalError, match="password authentication failed")
    with wrong, _connect(team, password="not-the-password", passfile=os.devnull):
        pass
    assert stat.S_IMODE(pgpass.stat().st_mode) == 0o600
    passwords = server.read_pgpass(pgpass).values()
    shown = team["server"].output() + (team["data"] / "logs/postgres.log").read_text()
    assert not [p for p in passwords if p in shown], "a password was printed or logged"
    if os.geteuid() == 0:
        assert (team["data"] / "postgres").owner() == "postgres", "PostgreSQL refuses root"


@pytest.mark.slow
def test_the_printed_commands_point_the_pipeline_and_back_up_the_database(team, tmp_path):
    output = team["server"].output()
    assert f"MLFLOW_TRACKING_URI={team['uri']} dvc repro" in output
    [backup] = re.findall(r"back up: +(.+)", output)
    subprocess.run(backup, shell=True, cwd=tmp_path, check=True, timeout=60)
    listing = subprocess.run(
        [str(POSTGRES / "pg_restore"), "--list", "mlflow.dump"],
        cwd=tmp_path, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert re.search(r"TABLE DATA public runs ", listing), listing[:2000]


@pytest.mark.slow
def test_sigterm_stops_both_and_a_restart_on_the_same_folder_finds_every_run(team):
    first = team["server"]
    pg_port = first.pg_port()
    code, seconds = first.terminate()
    assert code == 0, first.output()[-4000:]
    assert "knnlab server: stopping" in first.output()
    assert _processes_using(team["data"]) == [], "PostgreSQL or MLflow outlived the server"
    assert not _port_open(first.port) and not _port_open(pg_port)
    with (team["data"] / "postgres/postgresql.conf").open("a") as conf:
        conf.write("listen_addresses = '*'\n")  # the command line wins: still loopback only
    again = team["server"] = TeamServer(team["data"], first.port)  # --pg-port: any free one
    team["restart_seconds"] = again.wait_ready()
    print(f"\nstopped by SIGTERM in {seconds:.1f} s; restarted in {team['restart_seconds']:.1f} s")
    assert "creating a PostgreSQL cluster" not in again.output()
    commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in _processes_using(again.data)]
    assert len(commands) >= 2 and not [c for c in commands if b"huey" in c], (
        "MLflow's job runner is off"
    )
    with _connect(team, passfile=str(team["data"] / "pgpass")) as db, db.cursor() as cursor:
        cursor.execute("SHOW listen_addresses")
        assert cursor.fetchone()[0] == "127.0.0.1"
    runs = mlflow_store.run_summary(again.url, "knnlab")
    assert sorted(r["run_id"] for r in runs) == sorted(r["run_id"] for r in team["runs"])
    [evaluate] = _by_stage(runs, "evaluate")
    assert "report.md" in mlflow_store.list_artifacts(again.url, evaluate["run_id"])


# --- fast: no PostgreSQL needed -------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_loopback_addresses_get_no_warning(host):
    assert server.host_warning(host) is None


def test_any_other_address_is_warned_about_before_anything_starts(monkeypatch, tmp_path, capsys):
    def not_here(say):
        raise TrackingError("PostgreSQL not found (stopped here by the test)")

    monkeypatch.setattr(server, "ensure_postgres", not_here)
    code = cli.main(["server", "--data", str(tmp_path / "d"), "--host", "0.0.0.0"])
    err = capsys.readouterr().err
    assert code == 2
    assert "WARNING: listening on 0.0.0.0" in err and "no authentication" in err, err
    assert not (tmp_path / "d").exists(), "nothing is created before PostgreSQL is found"


def test_without_postgresql_and_root_the_error_says_how_to_install(monkeypatch):
    monkeypatch.setattr(server, "find_postgres", lambda: None)
    monkeypatch.setattr(server, "can_install", lambda: False)
    with pytest.raises(TrackingError, match=r"sudo apt-get install postgresql"):
        server.ensure_postgres()


def test_as_root_with_apt_get_a_missing_postgresql_is_installed_saying_so(tmp_path, monkeypatch):
    """apt-get is a stand-in here, which records its arguments and "installs" the binaries
    where Debian's package puts them (a real install: ``make test-deps``)."""
    debian, tools, calls = tmp_path / "lib", tmp_path / "bin", tmp_path / "calls"
    tools.mkdir()
    bindir = debian / "16" / "bin"
    (tools / "apt-get").write_text(
        f'#!/bin/sh\necho "$*" >> {calls}\n'
        f'if [ "$1" = install ]; then mkdir -p {bindir} && '
        f"touch {bindir}/initdb {bindir}/pg_ctl {bindir}/postgres && chmod +x {bindir}/*; fi\n"
    )
    (tools / "apt-get").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:/usr/bin:/bin")
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "initdb" else name)
    monkeypatch.setattr(server, "DEBIAN_POSTGRES", debian)
    monkeypatch.setattr(server, "can_install", lambda: True)
    said = []
    assert server.ensure_postgres(said.append) == bindir
    assert said == ["knnlab server: PostgreSQL not found; installing Debian's postgresql with "
                    "apt-get (as root)"]  # fmt: skip
    assert calls.read_text().splitlines() == ["update -q", "install -y -q postgresql"]


def test_debian_postgresql_is_found_newest_version_first(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "")
    for version in ("9.6", "13", "15"):
        folder = tmp_path / version / "bin"
        folder.mkdir(parents=True)
        for name in ("initdb", "pg_ctl", "postgres"):
            (folder / name).touch(mode=0o755)
    assert server.find_postgres(tmp_path) == tmp_path / "15" / "bin"
    assert server.find_postgres(tmp_path / "none") is None


@needs_postgres
def test_check_names_the_postgresql_found(capsys):
    assert cli.main(["server", "--check"]) == 0
    out = capsys.readouterr().out
    assert server.postgres_version(POSTGRES) in out and str(POSTGRES) in out, out
    assert "psycopg2 importable" in out


def test_a_port_in_use_is_refused_naming_it():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(TrackingError, match=f"cannot listen on 127.0.0.1:{port} .*--port"):
            server.check_port_free("127.0.0.1", port)
    server.check_port_free("127.0.0.1", port)  # free again


def test_data_is_required(capsys):
    assert cli.main(["server"]) == 2
    assert "--data DIR is required" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() != 0 or POSTGRES is None, reason="as root, with PostgreSQL")
def test_as_root_a_folder_the_postgres_user_cannot_enter_is_refused_saying_why(tmp_path):
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    with pytest.raises(TrackingError, match=r"cannot be entered by other users.*--data"):
        server.Cluster(POSTGRES, server.Layout(closed / "data")).init()


class _AuthProxy:
    """A reverse proxy in front of the server that wants HTTP Basic credentials on every
    path but ``open_paths``, as an nginx ``auth_basic`` in front of a team server does."""

    def __init__(self, upstream: str, user: str, password: str, open_paths=()):
        import base64
        import http.server
        import threading

        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def _refuse(self):
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="mlflow"')
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _forward(self):
                if self.path not in open_paths and self.headers.get("Authorization") != expected:
                    return self._refuse()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                skip = ("host", "authorization", "connection", "content-length")
                headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
                request = urllib.request.Request(
                    upstream + self.path, data=body, headers=headers, method=self.command
                )
                try:
                    reply = urllib.request.urlopen(request, timeout=60)
                except urllib.error.HTTPError as error:
                    reply = error
                with reply:
                    data = reply.read()
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                            self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _forward

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def proxy_credentials(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)

    def give():
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "s3cr3t-proxy-password")

    return give


@pytest.mark.slow
def test_behind_an_auth_proxy_credentials_come_from_mlflow_environment_variables(
    team, proxy_credentials
):
    """MLflow's client sends MLFLOW_TRACKING_USERNAME/PASSWORD to the proxy (runs, artifact
    listings); without them the proxy refuses. The stages' fail-fast check passes when the
    proxy lets GET /health through."""
    from mlflow.exceptions import MlflowException

    from knnlab.tracking.store import check_store

    proxy = _AuthProxy(team["server"].url, "alice", "s3cr3t-proxy-password", ("/health",))
    try:
        with pytest.raises(MlflowException, match="401"):
            mlflow_store.run_summary(proxy.url, "knnlab")
        proxy_credentials()
        runs = mlflow_store.run_summary(proxy.url, "knnlab")
        assert len(runs) == len(team["runs"])
        [evaluate] = _by_stage(runs, "evaluate")
        assert "report.md" in mlflow_store.list_artifacts(proxy.url, evaluate["run_id"])
        check_store(proxy.url)
    finally:
        proxy.close()


@pytest.mark.slow
def test_the_stages_health_check_sends_the_credentials_to_a_proxy_guarding_health(
    team, proxy_credentials
):
    from knnlab.tracking.store import check_store

    proxy = _AuthProxy(team["server"].url, "alice", "s3cr3t-proxy-password")
    try:
        with pytest.raises(TrackingError, match=r"refused the credentials \(HTTP 401\)"):
            check_store(proxy.url)  # none set yet: one line saying which to set
        proxy_credentials()
        check_store(proxy.url)
    finally:
        proxy.close()


# --- one server per folder, and a server that goes when its database goes ------------------


@pytest.fixture
def own_folder():
    """A fresh data folder PostgreSQL's user can enter, and the servers started on it (each
    test appends its own), all stopped whatever happens."""
    if POSTGRES is None:
        pytest.skip(NO_POSTGRES)
    base = Path(tempfile.mkdtemp(prefix="knnlab-server-lock-"))
    base.chmod(0o711)
    started: list[TeamServer] = []
    try:
        yield base / "data", started
    finally:
        for team_server in started:
            team_server.kill_leftovers()
        shutil.rmtree(base, ignore_errors=True)


def _api_answers(url: str) -> bool:
    """Whether the server answers an API call that needs its database."""
    request = urllib.request.Request(
        f"{url}/api/2.0/mlflow/experiments/search",
        data=b'{"max_results": 1}',
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        return reply.status == 200


@pytest.mark.slow
def test_a_second_server_on_the_same_folder_refuses_naming_the_first_ones_pid(own_folder):
    data, started = own_folder
    first = TeamServer(data, server.free_port())
    started.append(first)
    first.wait_ready()
    second = TeamServer(data, server.free_port())
    started.append(second)
    assert second.process.wait(60) == 2
    assert second.output().splitlines() == [
        f"knnlab server: error: {data} is in use by another knnlab server (pid "
        f"{first.process.pid}): stop that one first (Ctrl-C, or SIGTERM), or choose another "
        "--data folder"
    ]
    assert first.process.poll() is None and _api_answers(first.url), "the first one runs on"
    code, _ = first.terminate()
    assert code == 0, first.output()[-4000:]


@pytest.mark.slow
def test_a_crashed_server_does_not_block_the_next_start(own_folder):
    """SIGKILL leaves the lock file, its PostgreSQL and its MLflow server behind: the lock
    itself goes with the process, and the next start stops that PostgreSQL."""
    data, started = own_folder
    crashed = TeamServer(data, server.free_port())
    started.append(crashed)
    crashed.wait_ready()
    orphan = server.Cluster(POSTGRES, server.Layout(data)).pid()
    crashed.process.kill()  # knnlab server alone, not its group
    crashed.process.wait(10)
    assert (data / "server.lock").read_text() == f"{crashed.process.pid}\n"
    again = TeamServer(data, server.free_port())
    started.append(again)
    again.wait_ready()
    assert (
        f"stopping the PostgreSQL of an earlier knnlab server on {data / 'postgres'} "
        f"(pid {orphan})" in again.output()
    )
    assert _api_answers(again.url)
    assert (data / "server.lock").read_text() == f"{again.process.pid}\n"
    code, _ = again.terminate()
    assert code == 0, again.output()[-4000:]


@pytest.mark.slow
def test_the_server_stops_and_says_so_when_postgresql_stops_under_it(own_folder):
    data, started = own_folder
    running = TeamServer(data, server.free_port())
    started.append(running)
    running.wait_ready()
    cluster = server.Cluster(POSTGRES, server.Layout(data))
    postmaster = cluster.pid()
    cluster.stop()  # pg_ctl stop, as an administrator (or a second server) would
    assert running.process.wait(60) == 2
    last = running.output().rstrip().splitlines()[-1]
    assert last == (
        f"knnlab server: error: PostgreSQL (pid {postmaster}) stopped under the server, so "
        f"the MLflow server was stopped too; see its log {data / 'logs/postgres.log'}, then "
        "start knnlab server again"
    )
    assert not _port_open(running.port), "/health no longer answers"
    assert _processes_using(data) == [], "the MLflow server outlived its database"
    again = TeamServer(data, running.port)
    started.append(again)
    again.wait_ready()
    assert _api_answers(again.url)
    code, _ = again.terminate()
    assert code == 0, again.output()[-4000:]


def test_the_lock_refuses_a_second_holder_naming_the_first_and_goes_with_it(tmp_path):
    layout = server.Layout(tmp_path)
    held = server.lock_data(layout)
    try:
        with pytest.raises(TrackingError) as refused:
            server.lock_data(layout)  # another open file: refused even in this process
        assert str(refused.value) == (
            f"{tmp_path} is in use by another knnlab server (pid {os.getpid()}): stop that one "
            "first (Ctrl-C, or SIGTERM), or choose another --data folder"
        )
    finally:
        os.close(held)
    os.close(server.lock_data(layout))


def test_the_lock_of_a_killed_process_is_free(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, pathlib; from knnlab.tracking import server; "
         "server.lock_data(server.Layout(pathlib.Path(sys.argv[1]))); print('locked', "
         "flush=True); sys.stdin.read()", str(tmp_path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(TrackingError, match=rf"\(pid {holder.pid}\)"):
            server.lock_data(server.Layout(tmp_path))
    finally:
        holder.kill()
        holder.wait(10)
        holder.stdin.close()
        holder.stdout.close()
    os.close(server.lock_data(server.Layout(tmp_path)))


@pytest.mark.parametrize(
    "port, pg_port, message",
    [
        (99999, 0, "--port 99999 is not a TCP port: expected 1 to 65535"),
        (0, 0, "--port 0 is not a TCP port: expected 1 to 65535"),
        (5000, 70000, "--pg-port 70000 is not a TCP port: expected 0 (a free port) or 1 to 65535"),
        (5000, -1, "--pg-port -1 is not a TCP port: expected 0 (a free port) or 1 to 65535"),
    ],
)
def test_a_port_outside_the_tcp_range_is_refused_before_anything_starts(
    tmp_path, port, pg_port, message
):
    with pytest.raises(ValueError) as refused:
        server.serve(tmp_path / "data", "127.0.0.1", port, pg_port, 1)
    assert str(refused.value) == message
    assert not (tmp_path / "data").exists()
