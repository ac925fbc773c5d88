"""End to end: the team's DVC remote on an SSH server (dvc-ssh, the `team` extra).

A real SFTP server (asyncssh, in a subprocess) listens on 127.0.0.1 on a free port with a
generated host key, and lets one user in with one generated key: no password, no agent.
Teammate A commits `dvc remote add -d team ssh://127.0.0.1:PORT/<path>`, names the user
and the key in `.dvc/config.local`, repros and `dvc push`es; a fresh clone names its own
user and key the same way, `dvc pull`s and its `dvc repro` runs nothing. Every command
runs without an SSH agent and with HOME in a temporary directory, whose ~/.ssh holds the
user's key and nothing else (no config, no known_hosts). docs/team-remote.md, "An SSH
server as the remote", promises what these tests check.
"""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import asyncssh
import pytest

from ..support.project import SMALL_GRID, _env, make_project, stages_run
from .test_remote import PULLED, UP_TO_DATE, _outputs

pytestmark = pytest.mark.slow

USER = "alice"  # the one account the server lets in
KEYFILE = "~/.ssh/id_ed25519"  # as written in .dvc/config.local: dvc-ssh expands ~
SERVER = """
import asyncio, sys
import asyncssh

HOST_KEY, AUTHORIZED_KEYS, USER = sys.argv[1:4]

class Server(asyncssh.SSHServer):
    def connection_made(self, conn):
        self._conn = conn

    def begin_auth(self, username):
        if username == USER:  # any other user: no key is authorized
            self._conn.set_authorized_keys(AUTHORIZED_KEYS)
        return True  # public keys only: SSHServer supports no password, no kbd-interactive

async def main():
    server = await asyncssh.listen(
        "127.0.0.1", 0, server_factory=Server, server_host_keys=[HOST_KEY],
        sftp_factory=True, allow_scp=False,  # SFTP only: no shell, no exec
    )
    print(server.get_port(), flush=True)
    await asyncio.Future()

asyncio.run(main())
"""


@dataclass(frozen=True)
class Team:
    origin: Path  # the team's git remote (a bare repository)
    remote: Path  # the DVC remote: a folder on the SSH server
    url: str  # ssh://127.0.0.1:PORT/<remote>
    port: int
    home: Path  # HOME of every command: ~/.ssh holds the user's key and nothing else
    a: Path  # teammate A's working copy
    push_output: str


def _sh(cmd: list[str], cwd: Path, home: Path) -> subprocess.CompletedProcess:
    env = _env({"HOME": str(home)})
    env.pop("SSH_AUTH_SOCK", None)  # no agent: the key DVC's config names, or none
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def _ok(cmd: list[str], cwd: Path, home: Path) -> str:
    done = _sh(cmd, cwd, home)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _fails(cmd: list[str], cwd: Path, home: Path) -> str:
    done = _sh(cmd, cwd, home)
    assert done.returncode != 0, f"{' '.join(cmd)} succeeded:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def _free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_key(key: asyncssh.SSHKey, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    key.write_private_key(str(path))
    path.chmod(0o600)
    key.write_public_key(f"{path}.pub")
    return path


def _start_server(base: Path, home: Path) -> tuple[subprocess.Popen, int]:
    """The server's host key in base, the user's key pair in home/.ssh (KEYFILE)."""
    host_key = _write_key(asyncssh.generate_private_key("ssh-ed25519"), base / "host_key")
    keyfile = _write_key(asyncssh.generate_private_key("ssh-ed25519"), home / ".ssh/id_ed25519")
    args = [str(host_key), f"{keyfile}.pub", USER]
    with (base / "server.log").open("w") as log:
        server = subprocess.Popen(
            [sys.executable, "-c", SERVER, *args], stdout=subprocess.PIPE, stderr=log, text=True
        )
    port = server.stdout.readline().strip()
    assert port.isdigit(), f"the SSH server did not start: {(base / 'server.log').read_text()}"
    return server, int(port)


def _configure(root: Path, team: Team) -> None:
    """Each teammate's own login, in .dvc/config.local (git ignores it)."""
    for option, value in [("user", USER), ("keyfile", KEYFILE)]:
        _ok(["dvc", "remote", "modify", "--local", "team", option, value], root, team.home)


def _clone(team: Team, where: Path) -> Path:
    _ok(["git", "clone", "-q", str(team.origin), str(where)], where.parent, team.home)
    return where


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """A: `dvc remote add -d team ssh://...` (committed), user and keyfile (--local),
    repro, commit, dvc push over SSH, git push."""
    base = tmp_path_factory.mktemp("team-ssh")
    home = base / "home"
    server, port = _start_server(base, home)
    try:
        remote = base / "server" / "knnlab-dvc"
        remote.parent.mkdir()
        a = base / "a"
        make_project(a, data={"dataset": "iris"}, tune=SMALL_GRID, stats={"resamples": 200})
        url = f"ssh://127.0.0.1:{port}{remote}"
        team = Team(base / "origin.git", remote, url, port, home, a, "")
        _ok(["git", "init", "-q", "--bare", "-b", "main", str(team.origin)], base, home)
        _ok(["git", "remote", "add", "origin", str(team.origin)], a, home)
        _ok(["dvc", "remote", "add", "-d", "team", url], a, home)
        _configure(a, team)
        stages = stages_run(_ok(["dvc", "repro"], a, home))
        assert stages == [
            "params",
            "fetch",
            "split",
            "train",
            "exact",
            "audit",
            "tune",
            "evaluate",
            "plot",
        ]
        _ok(["git", "add", "-A"], a, home)
        _ok(["git", "commit", "-q", "-m", "repro"], a, home)
        pushed = _ok(["dvc", "push"], a, home)
        _ok(["git", "push", "-q", "origin", "main"], a, home)
        yield replace(team, push_output=pushed)
    finally:
        server.terminate()
        server.wait(timeout=10)
        server.stdout.close()


def test_push_over_ssh_fills_the_remote_folder_on_the_server(team):
    assert "files pushed" in team.push_output
    assert "Cache and remote 'team' are in sync." in _ok(["dvc", "status", "-c"], team.a, team.home)
    assert any((team.remote / "files/md5").rglob("*")), "the server's folder holds the cache"
    assert _ok(["git", "status", "--porcelain"], team.a, team.home) == "", "config.local: ignored"
    committed = (team.a / ".dvc/config").read_text()
    assert team.url in committed and "keyfile" not in committed and USER not in committed


def test_a_teammates_clone_pulls_over_ssh_and_reproduces_nothing(team, tmp_path):
    b = _clone(team, tmp_path / "b")
    _configure(b, team)
    output = _ok(["dvc", "pull"], b, team.home)
    for path in PULLED:
        assert (b / path).exists(), f"dvc pull did not bring {path}:\n{output}"
    assert UP_TO_DATE in _ok(["dvc", "status"], b, team.home)
    assert stages_run(_ok(["dvc", "repro"], b, team.home)) == [], "everything came from the server"
    assert _outputs(b) == _outputs(team.a), "the clone has A's outputs, byte for byte"
    assert _ok(["git", "status", "--porcelain", "--untracked-files=all"], b, team.home) == ""


def test_pull_as_another_user_or_from_a_wrong_port_says_so(team, tmp_path):
    c = _clone(team, tmp_path / "c")
    _ok(["dvc", "remote", "modify", "--local", "team", "keyfile", KEYFILE], c, team.home)
    message = _fails(["dvc", "pull"], c, team.home)  # no `user`: the local login name
    assert "failed to connect to ssh" in message, message
    assert f"Permission denied for user {getpass.getuser()} on host 127.0.0.1" in message, message

    _configure(c, team)
    wrong = _free_port()
    _ok(["dvc", "remote", "modify", "--local", "team", "port", str(wrong)], c, team.home)
    message = _fails(["dvc", "pull"], c, team.home)
    assert "failed to connect to ssh" in message, message
    assert f"Connect call failed ('127.0.0.1', {wrong})" in message, message
    assert not (c / "models/model.npz").exists()

    _ok(["dvc", "remote", "modify", "--local", "team", "--unset", "port"], c, team.home)
    _ok(["dvc", "pull"], c, team.home)  # the committed URL's port again
    assert UP_TO_DATE in _ok(["dvc", "status"], c, team.home)


def test_the_servers_host_key_is_not_checked(team, tmp_path):
    """dvc-ssh hands asyncssh known_hosts=None: a known_hosts naming another key for this
    server does not stop a pull (OpenSSH would refuse: "REMOTE HOST IDENTIFICATION HAS
    CHANGED"). When this fails, dvc-ssh checks host keys: update docs/team-remote.md."""
    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    home = tmp_path / "home"
    shutil.copytree(team.home / ".ssh", home / ".ssh")  # the same key
    (home / ".ssh/known_hosts").write_text(f"[127.0.0.1]:{team.port} {other}")
    d = _clone(team, tmp_path / "d")
    _configure(d, team)
    _ok(["dvc", "pull"], d, home)
    assert UP_TO_DATE in _ok(["dvc", "status"], d, home)
