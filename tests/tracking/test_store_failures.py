"""Why an MLflow store failed, in one line naming the cause and the fix: a damaged file,
a deleted experiment, a full disk or a file size limit, a read-only file. Each is a real
SQLite file in a temporary folder."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap

import mlflow
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import SQLAlchemyError

from knnlab.tracking.errors import TrackingError
from knnlab.tracking.store import check_store, store_failure


def _store_with_experiment(tmp_path, name="knnlab"):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    return uri, client, client.create_experiment(name)


def test_a_damaged_store_is_called_damaged_not_a_permission_problem(tmp_path):
    database = tmp_path / "mlflow.db"
    database.write_bytes(b"this is not a SQLite file at all" * 100)
    uri = f"sqlite:///{database}"
    with pytest.raises(TrackingError) as caught:
        check_store(uri)
    message = str(caught.value)
    assert "is damaged or is not an MLflow SQLite store (file is not a database)" in message
    assert "move the file away" in message and "permission" not in message
    # The same words when SQLAlchemy (inside MLflow) meets it, without its SQL or link.
    with pytest.raises(SQLAlchemyError) as raised, create_engine(uri).connect() as connection:
        connection.execute(text("SELECT * FROM runs"))
    line = store_failure(uri, raised.value)
    assert "is damaged" in line and "\n" not in line and "sqlalche.me" not in line


def test_a_deleted_experiment_is_refused_before_the_stage_computes(tmp_path):
    uri, client, experiment_id = _store_with_experiment(tmp_path)
    check_store(uri, "knnlab")  # active: fine
    check_store(uri, "not-there-yet")  # created by the stage: fine
    client.delete_experiment(experiment_id)
    with pytest.raises(TrackingError) as caught:
        check_store(uri, "knnlab")
    assert str(caught.value) == (
        f"MLflow experiment 'knnlab' (id {experiment_id}) in store {uri} is deleted (in "
        f"MLflow's trash): restore it with `mlflow experiments restore --experiment-id "
        f"{experiment_id}`, or set mlflow.experiment to another name"
    )
    client.restore_experiment(experiment_id)
    check_store(uri, "knnlab")


def test_a_file_size_limit_is_named_when_the_store_cannot_grow(tmp_path):
    """``ulimit -f`` in a child process (Python ignores SIGXFSZ, so writes fail instead)."""
    database = tmp_path / "grow.db"
    with sqlite3.connect(database) as db:
        db.execute("CREATE TABLE t (x BLOB)")
    child = textwrap.dedent(
        f"""
        import resource, sqlite3
        from knnlab.tracking.store import store_failure
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
        db = sqlite3.connect({str(database)!r})
        try:
            for _ in range(100):
                db.execute("INSERT INTO t VALUES (?)", (b"x" * 8192,))
                db.commit()
        except sqlite3.Error as error:
            print(store_failure("sqlite:///{database}", error))
        """
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        f"MLflow store sqlite:///{database} cannot be written (disk I/O error): this process "
        "may write files of at most 65,536 bytes (ulimit -f); raise the limit (ulimit -f "
        "unlimited), then re-run the stage"
    )


def test_a_locked_and_a_read_only_store_keep_their_own_causes(tmp_path):
    uri = f"sqlite:///{tmp_path / 'x.db'}"
    locked = store_failure(uri, sqlite3.OperationalError("database is locked"))
    assert "is locked by another process" in locked
    read_only = store_failure(uri, sqlite3.OperationalError("attempt to write a readonly database"))
    assert "check the file and folder permissions" in read_only


def test_a_full_disk_is_named_with_the_bytes_left(tmp_path):
    """A real full file system: a 1 MiB tmpfs (mounting needs root; skipped elsewhere)."""
    mount = tmp_path / "small"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        database = mount / "full.db"
        db = sqlite3.connect(database)
        db.execute("CREATE TABLE t (x BLOB)")
        with pytest.raises(sqlite3.Error) as raised:
            for _ in range(1000):
                db.execute("INSERT INTO t VALUES (?)", (b"x" * 8192,))
                db.commit()
        db.close()
        line = store_failure(f"sqlite:///{database}", raised.value)
        assert line.startswith(f"MLflow store sqlite:///{database} cannot be written (")
        assert "disk holding it has" in line and line.endswith(
            "bytes free; free some space, then re-run the stage"
        )
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_a_file_the_artifact_store_cannot_write_is_named_not_the_database(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(OSError) as raised:
        (tmp_path / "mlruns" / "missing" / "model.npz").write_bytes(b"")
    line = store_failure(uri, raised.value)
    assert line == (
        f"the artifact store of MLflow store {uri} cannot write "
        f"{tmp_path / 'mlruns' / 'missing' / 'model.npz'} (No such file or directory); check "
        "that folder's permissions"
    )


def test_a_store_in_a_missing_folder_names_the_folder(tmp_path):
    uri = f"sqlite:///{tmp_path / 'no' / 'such' / 'mlflow.db'}"
    with pytest.raises(TrackingError) as caught:
        check_store(uri)
    assert str(caught.value) == (
        f"MLflow store {uri} cannot be created: the folder {tmp_path / 'no' / 'such'} does not "
        "exist; create it, or fix mlflow.tracking_uri / MLFLOW_TRACKING_URI"
    )
