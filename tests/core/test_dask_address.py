"""Connecting to a Dask scheduler: what answers at the address. Real servers on 127.0.0.1
(an HTTP server, a port that accepts and never speaks, servers that send other bytes, a
Dask scheduler), a real `knnlab tune`, and a child Python without Dask's distributed
package. Each fault is one line naming the address, with any credential masked."""

from __future__ import annotations

import contextlib
import http.server
import json
import logging
import logging.handlers
import os
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import threading

import dask
import numpy as np
import pytest

from knnlab import distributed
from knnlab.search import kneighbors

from ..conftest import REPO_ROOT
from ..support.blocked_imports import without_package

distributed_lib = pytest.importorskip("distributed")

FIX = "check the address (a scheduler listens on port 8786 by default"


@contextlib.contextmanager
def http_server():
    """An HTTP server (as MLflow's port or Dask's dashboard would be); yields its address."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def silent_server():
    """A port that accepts connections and never reads or writes: the kernel completes each
    connection into the listen backlog, and nobody answers."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"


@contextlib.contextmanager
def sending_server(greeting: bytes):
    """A server that sends ``greeting`` to every connection and then keeps it open, silent."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):  # the listener closed: the test is over
            while True:
                connection, _ = listener.accept()
                held.append(connection)
                connection.sendall(greeting)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        thread.join()
        for connection in held:
            connection.close()


def assert_one_line(message: str, *fragments: str) -> None:
    assert "\n" not in message, f"one line expected: {message!r}"
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from {message!r}"


# --- what answers at the address ----------------------------------------------------------


def test_an_http_server_is_named_as_not_a_scheduler():
    with http_server() as address, pytest.raises(distributed.NotASchedulerError) as caught:
        distributed.connect(address, timeout=0.5)
    assert_one_line(
        str(caught.value),
        f"something answered at {address} but it is not a Dask scheduler (it spoke HTTP)",
        FIX,
    )


def test_a_port_that_accepts_and_never_answers_fails_after_the_timeout():
    with silent_server() as address, pytest.raises(distributed.NotASchedulerError) as caught:
        distributed.connect(address, timeout=0.5)
    assert_one_line(
        str(caught.value),
        f"something answered at {address} but did not complete Dask's handshake within 0.5 s",
        "sent nothing",
        FIX,
    )


@pytest.mark.parametrize(
    ("greeting", "what"),
    [
        (b"hello, I am not Dask\r\n", "it sent 22 bytes that are not Dask's greeting"),
        # 8 bytes Dask would read as a message of 18 exabytes: distributed allocates for it
        (b"\xff" * 16, "it sent 16 bytes that are not Dask's greeting"),
        # a plausible length (100 bytes), then silence: cut off at the deadline
        (struct.pack("Q", 100) + b"\x01", "it sent 9 bytes that are not Dask's greeting"),
        # the right length, frames that do not add up to it
        (struct.pack("QQQ", 24, 1, 99) + b"\x00" * 8, "it sent 32 bytes"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", "it spoke SSH"),
    ],
    ids=["text", "huge-length", "cut-off", "bad-frames", "ssh"],
)
def test_a_server_sending_other_bytes_is_named_without_quoting_them(greeting, what):
    with sending_server(greeting) as address, pytest.raises(distributed.NotASchedulerError) as e:
        distributed.connect(address, timeout=0.5)
    message = str(e.value)
    assert_one_line(message, f"something answered at {address} but it is not a Dask scheduler")
    assert f"({what}" in message, f"{what!r} missing from {message!r}"
    assert "hello" not in message and "OpenSSH" not in message, f"quotes the peer: {message!r}"


def test_a_closed_port_cannot_be_reached():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        address = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    with pytest.raises(distributed.SchedulerUnreachableError) as caught:
        distributed.connect(address, timeout=0.5)
    assert not isinstance(caught.value, distributed.NotASchedulerError)
    assert_one_line(str(caught.value), f"Dask scheduler {address} cannot be reached (")


def test_a_tls_address_without_certificates_says_what_to_configure():
    unset = {f"distributed.comm.tls.{key}": None for key in ("ca-file", "client.cert")}
    with dask.config.set(unset), pytest.raises(ValueError) as caught:
        distributed.connect("tls://127.0.0.1:1", timeout=0.3)
    assert_one_line(
        str(caught.value),
        "Dask scheduler tls://127.0.0.1:1 is a tls:// address",
        "distributed.comm.tls.ca-file",
        "distributed.comm.tls.client.cert",
    )


def test_failed_connections_leave_no_thread_behind():
    before = threading.active_count()
    with silent_server() as silent, sending_server(b"\xff" * 16) as garbage:
        during = threading.active_count()  # the sending server's own thread
        for address in (silent, garbage, "tcp://127.0.0.1:1"):
            with pytest.raises(distributed.SchedulerUnreachableError):
                distributed.connect(address, timeout=0.3)
        assert threading.active_count() == during, "a connect left a thread (event loop?)"
    assert threading.active_count() == before


def test_a_dask_scheduler_passes_the_check_and_logs_no_broken_handshake(rng):
    # The check's own connection completes the handshake: the scheduler logs no broken one.
    tcp_log = logging.getLogger("distributed.comm.tcp")
    records = logging.handlers.BufferingHandler(capacity=10_000)
    level = tcp_log.level
    tcp_log.addHandler(records)
    tcp_log.setLevel(logging.DEBUG)
    try:
        with distributed_lib.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=False,
            protocol="tcp",
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address=None,
            silence_logs=False,
        ) as cluster:
            address = cluster.scheduler_address
            client = distributed.connect(address)
            try:
                described = distributed.describe(client)
            finally:
                client.close()
            X = rng.normal(size=(40, 3))
            found = kneighbors(X, None, 3, scheduler=address)
    finally:
        tcp_log.removeHandler(records)
        tcp_log.setLevel(level)
    assert described.startswith(f"Dask scheduler {address}: 1 workers"), described
    np.testing.assert_array_equal(found[1], kneighbors(X, None, 3)[1])
    broken = [r.getMessage() for r in records.buffer if "before handshake" in r.getMessage()]
    assert not broken, broken


# --- credentials in the address -----------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        ("tcp://alice:s3cret@127.0.0.1:8786", "tcp://***@127.0.0.1:8786"),
        ("tcp://s3cret@127.0.0.1:8786", "tcp://***@127.0.0.1:8786"),
        ("tls://alice:p@ss/w#rd?s3cret@host:8786", "tls://***@host:8786"),
        ("tcp://127.0.0.1:8786?token=s3cret", "tcp://127.0.0.1:8786?***"),
        ("tcp://127.0.0.1:8786#s3cret", "tcp://127.0.0.1:8786#***"),
        ("alice:s3cret@127.0.0.1:8786", "***@127.0.0.1:8786"),
        ("tcp://127.0.0.1:8786", "tcp://127.0.0.1:8786"),
        ("tcp://[::1]:8786", "tcp://[::1]:8786"),
    ],
)
def test_masked_address_hides_user_info_query_and_fragment(address, shown):
    assert distributed.masked_address(address) == shown


@pytest.mark.parametrize(
    "address",
    ["tcp://alice:s3cret@127.0.0.1:1", "tls://s3cret@127.0.0.1:1", "tcp://127.0.0.1:1?t=s3cret"],
)
def test_an_address_with_a_credential_is_refused_without_printing_it(address, rng):
    for attempt in (
        lambda: distributed.connect(address, timeout=0.3),
        lambda: kneighbors(rng.normal(size=(10, 2)), None, 2, scheduler=address),
    ):
        with pytest.raises(ValueError) as caught:
            attempt()
        assert_one_line(
            str(caught.value), distributed.masked_address(address), "scheme://host:port"
        )
        assert "s3cret" not in str(caught.value), f"prints the secret: {caught.value}"


def test_an_address_that_is_not_host_and_port_is_refused_by_name():
    with pytest.raises(ValueError) as caught:
        distributed.connect("tcp://127.0.0.1", timeout=0.3)
    assert_one_line(str(caught.value), "Dask scheduler address tcp://127.0.0.1 is not tcp://host")


# --- without Dask's distributed package ----------------------------------------------------

# A child Python in which distributed is not installed, as far as imports can tell: the path
# finder skips it, so importlib.util.find_spec("distributed") is None and the import fails.
_WITHOUT_DISTRIBUTED = without_package("distributed")


def _run_without_distributed(code: str, cwd=REPO_ROOT, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_DISTRIBUTED + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
        timeout=300,
    )


def test_without_distributed_a_scheduler_says_to_install_the_team_extra():
    done = _run_without_distributed(
        """
        import importlib.util, json
        from knnlab import distributed
        try:
            import distributed as lib
            blocked = False
        except ImportError:
            blocked = importlib.util.find_spec("distributed") is None
        try:
            distributed.connect("tcp://alice:s3cret@127.0.0.1:8786")
        except ImportError as error:
            found = [type(error).__name__, isinstance(error, ValueError), str(error)]
        print(json.dumps({"blocked": blocked, "found": found}))
        """
    )
    assert done.returncode == 0, f"the child failed: {done.stderr[-2000:]}"
    result = json.loads(done.stdout)
    assert result["blocked"], "the child must not be able to import or find distributed"
    kind, is_value_error, message = result["found"]
    assert kind == "DaskMissingError" and is_value_error, result["found"]
    assert_one_line(
        message,
        "Dask scheduler tcp://***@127.0.0.1:8786",
        "distributed package",
        "is not installed",
        "pip install 'knnlab[team]'",
        "unset compute.scheduler and DASK_SCHEDULER_ADDRESS",
    )
    assert "s3cret" not in message, message


# --- through `knnlab tune` -----------------------------------------------------------------


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project with a split (digits), for tune to fail on before it writes anything."""
    root = tmp_path_factory.mktemp("project")
    shutil.copy(REPO_ROOT / "params.yaml", root / "params.yaml")
    env = {k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"}
    for stage in ("fetch", "split"):
        subprocess.run([sys.executable, "-m", "knnlab", stage], cwd=root, env=env, check=True)
    return root


def _tune(project, address: str) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "knnlab", "tune"],
        cwd=project,
        env={**os.environ, "DASK_SCHEDULER_ADDRESS": address},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert not (project / "reports").exists(), "tune wrote outputs before failing"
    return done


@pytest.mark.slow
@pytest.mark.parametrize("server", ["http", "silent", "garbage"])
def test_tune_against_a_port_that_is_no_scheduler_fails_in_one_line(project, server):
    servers = {
        "http": (http_server, "it is not a Dask scheduler (it spoke HTTP)"),
        "silent": (silent_server, "did not complete Dask's handshake within"),
        "garbage": (
            lambda: sending_server(b"garbage\r\n"),
            "it is not a Dask scheduler (it sent 9 bytes",
        ),
    }
    start, what = servers[server]
    with start() as address:
        done = _tune(project, address)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith(f"knnlab tune: error: something answered at {address} but ")
    assert_one_line(done.stderr.rstrip("\n"), what, FIX)


@pytest.mark.slow
def test_tune_without_distributed_says_to_install_the_team_extra(project):
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _WITHOUT_DISTRIBUTED
            + "import sys; from knnlab.cli import main; sys.exit(main(['tune']))",
        ],
        cwd=project,
        env={**os.environ, "DASK_SCHEDULER_ADDRESS": "tcp://127.0.0.1:8786"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith("knnlab tune: error: Dask scheduler tcp://127.0.0.1:8786 "), (
        done.stderr
    )
    assert_one_line(done.stderr.rstrip("\n"), "pip install 'knnlab[team]'")
    assert not (project / "reports").exists(), "tune wrote outputs before failing"


@pytest.mark.slow
def test_tune_with_a_credential_in_the_address_never_prints_it(project):
    done = _tune(project, "tcp://alice:s3cret@127.0.0.1:8786")
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.startswith("knnlab tune: error: "), done.stderr
    assert_one_line(done.stderr.rstrip("\n"), "***@127.0.0.1:8786")
    assert "s3cret" not in done.stderr and "alice" not in done.stderr, done.stderr
