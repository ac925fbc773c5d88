"""Fixtures of the end-to-end modules: a project reproduced once per test session."""

from __future__ import annotations

import json
import shutil

import pytest
from filelock import FileLock, Timeout

from ..support.project import reproduce
from ..support.shared_project import IRIS, Reproduced

# A build takes about 40 s on 2 loaded cores; a worker waiting longer than this for another
# worker's build fails, saying so, rather than waiting without end.
BUILD_WAIT_SECONDS = 900


@pytest.fixture(scope="session")
def reproduced_iris(tmp_path_factory, worker_id) -> Reproduced:
    """iris with a small grid (``IRIS``), reproduced and committed once for the whole test
    session: under pytest-xdist the first worker to ask builds it in the folder every worker
    shares (the parent of their temporary folders), the others wait for that build, as
    pytest-xdist's documentation describes for session data. Never used in place: a module
    takes its own copy, ``copy_project(reproduced_iris.root, tmp_path_factory.mktemp(NAME))``."""
    if worker_id == "master":  # no xdist: this process is the session
        root = tmp_path_factory.mktemp("iris-reproduced")
        return Reproduced(root, reproduce(root, **IRIS))
    shared = tmp_path_factory.getbasetemp().parent
    root, done = shared / "iris-reproduced", shared / "iris-reproduced.json"
    try:
        with FileLock(str(shared / "iris-reproduced.lock"), timeout=BUILD_WAIT_SECONDS):
            if not done.is_file():  # a failed build leaves no record: the next worker retries
                if root.exists():
                    shutil.rmtree(root)
                root.mkdir()
                done.write_text(json.dumps({"output": reproduce(root, **IRIS)}))
    except Timeout:
        pytest.fail(f"another test worker's build of {root} took over {BUILD_WAIT_SECONDS} s")
    return Reproduced(root, json.loads(done.read_text())["output"])
