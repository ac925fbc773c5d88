"""One reproduced project per test worker, copied for each module that uses it.

Building a project and running every stage (``reproduce``) is most of a slow module's
setup. Modules whose project is the same (the same dataset, the same params) each take a
copy of one project reproduced once per test worker instead: a session fixture
(``reproduced_iris`` in tests/e2e/conftest.py; under pytest-xdist a session is one worker).
Each copy is its module's own (git repository, DVC cache, MLflow store), so no module sees
another's edits, experiments or runs, and the worker's project itself is never used in place.

What a plain copy would get wrong, and :func:`copy_project` sets right or checks:

- MLflow's SQLite store records absolute locations (``experiments.artifact_location``,
  ``runs.artifact_uri``, ``logged_models.artifact_location``): a copy's runs would name,
  and its new runs log into, the original's ``mlruns/``. Every text value of the store that
  names the original folder is rewritten to name the copy, and afterwards no value of any
  column of any table may name it.
- DVC: ``dvc.lock`` and ``.dvc/cache`` are relative to the project, and ``copytree`` keeps
  modification times (``copy2``). DVC's state (hashes by inode and mtime) lives outside the
  project, per project path, so the copy starts without it and hashes its files afresh:
  ``dvc status`` in the copy must say up to date.
- git: ``.git`` is copied, so the copy is its own repository at the same commit; ``git
  status`` there must say what it says in the original (nothing, for a committed project).
- Anything else: no file of the copy may contain the original's path (git's compressed
  objects and the store's file aside, the store being checked row by row; its freed pages
  may keep old bytes), and no symlink may point into the original.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from .project import run

# The shared iris project: a small grid over brute force and kd_tree, a complete pipeline in
# seconds, built once per test session (tests/e2e/conftest.py). test_pipeline.py checks this
# grid's runs; test_integrity.py and test_robustness.py need a reproduced project, not a grid,
# but re-run tune with it: 8 candidates, as a 32-candidate grid made their forced re-runs the
# slowest tests of the suite (the queued experiments alone took 137 s).
IRIS = {
    "data": {"dataset": "iris"},
    "tune": {
        "grid": {
            "n_neighbors": [1, 5],
            "p": [1, 2],
            "weights": ["uniform"],
            "algorithm": ["brute", "kd_tree"],
        },
        "cv": 3,
    },
}

MLFLOW_DB = "mlflow.db"
# The original is read by several workers at once: git must not refresh its index there.
GIT_STATUS = ["git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=all"]


@dataclass(frozen=True)
class Reproduced:
    """A reproduced, committed project and what its ``dvc repro`` printed."""

    root: Path
    output: str


def copy_project(source: Path, target: Path) -> Path:
    """Copy the reproduced project ``source`` into ``target`` (absent or an empty folder) as
    a project of its own; fails, naming what is wrong, unless the copy is up to date for DVC,
    says to git what ``source`` says and names nothing of ``source``. Returns ``target``."""
    source, target = source.resolve(), target.resolve()
    assert not str(target).startswith(str(source)), f"{target}: the checks need another name"
    assert not (target.exists() and any(target.iterdir())), f"{target} is not empty"
    shutil.copytree(source, target, symlinks=True, dirs_exist_ok=True)
    if (target / MLFLOW_DB).exists():
        repoint_store(target / MLFLOW_DB, source, target)
    check_copy(source, target)
    return target


def repoint_store(store: Path, old: Path, new: Path) -> list[str]:
    """Rewrite every text value of the SQLite ``store`` that names a path or ``file:`` URI
    under ``old`` to name the same under ``new``; the ``table.column``s rewritten."""
    prefixes = [(old.as_uri() + "/", new.as_uri() + "/"), (f"{old}/", f"{new}/")]
    rewritten = []
    with closing(sqlite3.connect(store)) as db, db:
        for table, column in _columns(db):
            for before, after in prefixes:
                done = db.execute(
                    f"UPDATE {table} SET {column} = replace({column}, ?, ?) "
                    f"WHERE typeof({column}) = 'text' AND instr({column}, ?) > 0",
                    (before, after, before),
                )
                if done.rowcount > 0:
                    rewritten.append(f"{table}.{column}".replace('"', ""))
    return sorted(set(rewritten))


def check_copy(source: Path, target: Path) -> None:
    """Assert that ``target``, a copy of ``source``, is a project of its own (see above)."""
    store = target / MLFLOW_DB
    if store.exists():
        left = store_columns_naming(store, source)
        assert not left, f"the copy's MLflow store still names {source} in {left}"
    files = files_naming(target, source)
    assert not files, f"files of the copy {target} name the original {source}: {files}"
    links = links_into(target, source)
    assert not links, f"symlinks of the copy {target} point into the original: {links}"
    status = run(["dvc", "status"], target)
    assert status.strip().endswith("up to date."), f"dvc status in the copy {target}:\n{status}"
    copied, original = run(GIT_STATUS, target), run(GIT_STATUS, source)
    assert copied == original, f"git status in the copy:\n{copied}\nin the original:\n{original}"


def store_columns_naming(store: Path, folder: Path) -> list[str]:
    """Every ``table.column`` of the SQLite ``store`` with a value (of any type) naming
    ``folder``, as a path or a ``file:`` URI."""
    needles = {str(folder), folder.as_uri().removeprefix("file://")}
    found = []
    with closing(sqlite3.connect(f"{store.as_uri()}?mode=ro", uri=True)) as db:
        for table, column in _columns(db):
            for needle in needles:
                (count,) = db.execute(
                    f"SELECT count(*) FROM {table} WHERE instr(CAST({column} AS TEXT), ?) > 0",
                    (needle,),
                ).fetchone()
                if count:
                    found.append(f"{table}.{column}".replace('"', ""))
    return sorted(set(found))


def files_naming(root: Path, folder: Path) -> list[str]:
    """Files under ``root`` whose bytes contain ``folder``'s path or URI; git's objects
    (compressed) and the MLflow store (checked row by row) are not read."""
    needles = {os.fsencode(folder), folder.as_uri().encode()}
    skipped = {root / ".git" / "objects", root / MLFLOW_DB}
    found = []
    for current, dirs, names in os.walk(root):
        here = Path(current)
        dirs[:] = [d for d in dirs if here / d not in skipped and not (here / d).is_symlink()]
        for name in names:
            path = here / name
            if path in skipped or path.is_symlink():
                continue
            data = path.read_bytes()
            if any(needle in data for needle in needles):
                found.append(path.relative_to(root).as_posix())
    return found


def links_into(root: Path, folder: Path) -> list[str]:
    """Symlinks under ``root`` whose target lies in ``folder``."""
    found = []
    for current, dirs, names in os.walk(root):
        for name in dirs + names:
            path = Path(current) / name
            if path.is_symlink():
                pointed = Path(os.path.normpath(path.parent / os.readlink(path)))
                if pointed == folder or folder in pointed.parents:
                    found.append(path.relative_to(root).as_posix())
    return found


def _columns(db: sqlite3.Connection) -> Iterator[tuple[str, str]]:
    """(table, column) of every column of every table, quoted for SQL."""
    tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    for table in tables:
        quoted = '"' + table.replace('"', '""') + '"'
        for row in db.execute(f"PRAGMA table_info({quoted})").fetchall():
            yield quoted, '"' + row[1].replace('"', '""') + '"'
