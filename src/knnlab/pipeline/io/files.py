"""Reading and writing the pipeline's files. Every write is atomic: the content goes to a
temporary file beside the target and is renamed over it only once complete, so a crash
never leaves a half-written output."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; on success rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual mode
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_dir(path: Path | str) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``path``; on success it replaces ``path`` whole.

    The old folder is renamed aside, the new one renamed in, then the old one deleted, so
    at every moment ``path`` holds either the complete old or the complete new contents
    (bar the instant between two renames). On failure the temporary folder is removed and
    ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)  # mkdtemp makes 0700
        _replace_dir(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _replace_dir(source: Path, target: Path) -> None:
    """Move folder ``source`` to ``target``, replacing it whole: the old folder is renamed
    aside, the new one renamed in, then the old one deleted."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        os.rmdir(old)
        os.replace(target, old)
    os.replace(source, target)
    if old is not None:
        shutil.rmtree(old)


STAGING_PREFIX = ".knnlab-staging."


class StagedOutputs:
    """A stage's outputs, written into a private staging folder and moved into place together
    by :meth:`commit`, only once the whole stage (MLflow logging included) has succeeded.

    ``staged(target)`` gives the path to write ``target`` (relative to the working directory,
    e.g. ``reports/metrics.json``) to; the staged file keeps its name, so it can be logged to
    MLflow before it is committed. A stage that raises, or is killed, never commits: the
    previous outputs stay as they were, and the staging folder is removed (a killed stage's
    folder by the next stage, see :func:`remove_stale_staging`).
    """

    def __init__(self, root: Path | str = "."):
        self.root = Path(root)
        remove_stale_staging(self.root)
        self.folder = Path(
            tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}.", suffix=".tmp", dir=root)
        )
        self._targets: dict[Path, bool] = {}  # target -> is a folder
        self._on_failure: list = []

    def staged(self, target: Path | str) -> Path:
        """The staging path of file ``target``; its folder exists."""
        target = Path(target)
        self._check_target(target, is_dir=False)
        staged = self.folder / target
        staged.parent.mkdir(parents=True, exist_ok=True)
        return staged

    def staged_dir(self, target: Path | str) -> Path:
        """An empty staging folder for ``target``, a folder replaced whole on commit."""
        target = Path(target)
        self._check_target(target, is_dir=True)
        staged = self.folder / target
        staged.mkdir(parents=True)
        return staged

    def _check_target(self, target: Path, is_dir: bool) -> None:
        if target.is_absolute() or ".." in target.parts:
            raise ValueError(f"staged output {target} must be a path inside the project")
        if target in self._targets:
            raise ValueError(f"staged output {target} is staged twice")
        self._targets[target] = is_dir

    def if_commit_fails(self, callback) -> None:
        """Call ``callback(error)`` if :meth:`commit` fails (before the error propagates)."""
        self._on_failure.append(callback)

    def commit(self) -> None:
        """Move every staged output into place (each one atomically, one after the other)."""
        try:
            self._commit()
        except OSError as error:
            for callback in self._on_failure:
                callback(error)
            raise

    def _commit(self) -> None:
        for target in self._targets:
            staged = self.folder / target
            if not staged.exists():
                raise FileNotFoundError(f"staged output {target} was never written")
        for target, is_dir in self._targets.items():
            staged, final = self.folder / target, self.root / target
            final.parent.mkdir(parents=True, exist_ok=True)
            if is_dir:
                os.chmod(staged, 0o777 & ~_UMASK)
                _replace_dir(staged, final)
            else:
                os.replace(staged, final)

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_staging(root: Path | str = ".") -> None:
    """Delete staging folders left by killed stages (their process no longer exists)."""
    for folder in Path(root).glob(f"{STAGING_PREFIX}*.tmp"):
        pid = folder.name.removeprefix(STAGING_PREFIX).split(".", 1)[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def staged_outputs(root: Path | str = ".") -> Iterator[StagedOutputs]:
    """:class:`StagedOutputs` committed when the block succeeds, discarded in every case."""
    outputs = StagedOutputs(root)
    try:
        yield outputs
        outputs.commit()
    finally:
        outputs.discard()


def digest(named_files: dict[str, Path]) -> str:
    """SHA-256 over each file's name and the SHA-256 of its bytes, in the order given: the
    same for the same contents on every run and machine (an MLflow run id is not)."""
    total = hashlib.sha256()
    for name, path in named_files.items():
        total.update(f"{name}\0".encode())
        with Path(path).open("rb") as fh:  # streamed: a model file is as large as its data
            total.update(hashlib.file_digest(fh, "sha256").digest())
    return total.hexdigest()


def write_text(path: Path | str, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def to_json_text(data: Any) -> str:
    """Stable JSON: sorted keys, two-space indent, trailing newline (diff-friendly)."""
    return json.dumps(data, indent=2, sort_keys=True, allow_nan=True) + "\n"


def write_json(path: Path | str, data: Any) -> None:
    write_text(path, to_json_text(data))


def read_json(path: Path | str) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_parquet(path: Path | str, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    release_arrow_memory()


def write_csv(path: Path | str, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")


def read_parquet(path: Path | str) -> pd.DataFrame:
    import pandas as pd  # here, not at the top: the command line imports this module

    frame = pd.read_parquet(path)
    release_arrow_memory()
    return frame


def release_arrow_memory() -> None:
    """Give back to the system what Arrow's memory pool holds but no longer uses: the pool
    keeps freed buffers for reuse, so a table read or written once (as large as the frame:
    440 MB for Fashion-MNIST) would otherwise stay in the stage's resident memory."""
    import pyarrow as pa

    pa.default_memory_pool().release_unused()


def read_csv(path: Path | str) -> pd.DataFrame:
    import pandas as pd

    return pd.read_csv(path, **exact_floats(pd))


def exact_floats(pd) -> dict:
    """read_csv options that read back exactly the floats written (scores recomputed from
    a committed table must match those computed before it was written): the default from
    pandas 3 on, which deprecates asking; "round_trip" before, whose default parser may
    differ in the last bit."""
    return {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
