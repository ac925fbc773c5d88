"""knnlab without its pipeline extra (pyproject.toml): the library works (the served model's
case is in tests/tracking/test_serving.py), and the pipeline's commands say which extra to
install instead of ending in a traceback."""

from __future__ import annotations

import pytest

from .support.blocked_imports import run_core_only

RUN_KNNLAB = "import runpy; runpy.run_module('knnlab', run_name='__main__', alter_sys=True)"


@pytest.mark.parametrize("command", [["params"], ["runs"], ["fetch"]])
def test_a_pipeline_command_names_the_extra_to_install(tmp_path, command):
    (tmp_path / "params.yaml").write_text("data:\n  dataset: digits\n")
    done = run_core_only(RUN_KNNLAB, tmp_path, *command)
    assert done.returncode == 2, done.stderr[-2000:]
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"knnlab {command[0]}: error: this command needs knnlab's pipeline ")
    assert "is not installed; install it with: pip install 'knnlab[pipeline]'" in line


def test_the_library_fits_searches_and_tunes_with_the_core_alone(tmp_path):
    probe = """
import numpy as np
from sklearn.datasets import load_iris
from knnlab.estimators import KNNClassifier
from knnlab.model_selection import grid_search_cv
X, y = load_iris(return_X_y=True)
search = grid_search_cv(X, y, {"n_neighbors": [1, 5], "p": [1, 2]}, cv=3, seed=0)
model = KNNClassifier(**search.best_params).fit(X, y)
print((model.predict(X) == y).mean() > 0.9, sorted(set(sys.modules) & set(HIDDEN)))
"""
    done = run_core_only(probe, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["True", "[]"]
