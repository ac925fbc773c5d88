"""Long work speaks under DVC (issue 29): ``dvc repro`` runs a stage with stderr not a
terminal, where knnlab prints a progress line per heartbeat (``KNNLAB_PROGRESS_SECONDS``
shortens it here; the lines' content is tested in tests/core/test_progress.py)."""

from __future__ import annotations

import re
import subprocess

import pytest

from ..support.project import _env, stages_run
from ..support.shared_project import copy_project

pytestmark = pytest.mark.slow


def test_dvc_repro_shows_progress_lines_of_the_stage_and_its_steps(
    reproduced_iris, tmp_path_factory
):
    project = copy_project(reproduced_iris.root, tmp_path_factory.mktemp("progress"))
    with (tmp_path_factory.mktemp("logs") / "stderr.txt").open("w+") as log:
        done = subprocess.run(
            ["dvc", "repro", "--force", "--single-item", "tune"],
            cwd=project, env=_env({"KNNLAB_PROGRESS_SECONDS": "0.05"}),
            stdout=subprocess.PIPE, stderr=log, text=True, timeout=600,
        )  # fmt: skip
        log.seek(0)
        stderr = log.read()
    assert done.returncode == 0, stderr
    assert stages_run(done.stdout) == ["tune"]
    # The stage's heartbeat, and, once the search is under way, its done/total.
    assert re.search(r"^knnlab: tune: \d+s elapsed$", stderr, re.M), stderr
    searches = re.findall(r"^knnlab: tune, 8 candidates: (\d+)/(\d+) searches", stderr, re.M)
    assert all(total == searches[0][1] for _, total in searches), searches
    assert re.search(r"^knnlab: tune: done in \d+s$", stderr, re.M), stderr
    assert "\r" not in stderr, "lines, not a bar redrawn in place"
