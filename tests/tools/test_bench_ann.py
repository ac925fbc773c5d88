"""The approximate-search benchmark runs end to end on digits (--quick) and its tables say
what docs/performance.md reads from them: recall against exact, determinism, load = build."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ..conftest import REPO_ROOT

pytestmark = pytest.mark.slow


def test_the_quick_run_measures_every_index_against_exact():
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_ann.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith("| ")]
    methods = {row[0].strip("| ") for row in rows}
    assert {"exact", "hnsw", "ivf"} <= methods, done.stdout
    exact = next(row for row in rows if row[0] == "| exact")
    assert exact[2] == "1.0000", "exact search is its own reference"
    for row in rows:
        if row[0] in ("| hnsw", "| ivf"):
            assert 0.0 < float(row[2]) <= 1.0, row
    # per index: loaded answers = built answers; same bytes twice; n_jobs 1 vs 2
    checks = [row for row in rows if row[0].startswith(("| hnsw M", "| ivf nlist"))]
    assert checks and all(row[-4:-1] == ["True", "True", "True"] for row in checks), checks
