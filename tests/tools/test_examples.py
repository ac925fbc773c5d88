"""The runnable tutorial examples in ``examples/``: each ``main`` runs on embedded data with
its figures in a temporary folder, and its key results are checked."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import urllib.error

import pytest
import sklearn.datasets

from ..conftest import REPO_ROOT
from ..support import mlflow_store


def load_example(name: str):
    """Import ``examples/<name>.py`` by path (examples/ is not a package)."""
    path = REPO_ROOT / "examples" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"knnlab_example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_digits_cookbook_reaches_the_tutorial_accuracy_and_reads_the_drawn_one(tmp_path, capsys):
    results = load_example("digits_cookbook").main(["--out", str(tmp_path)])

    assert results["drawn_one"] == 1
    assert results["accuracy"] >= 0.98
    assert (tmp_path / "digits_gallery.png").stat().st_size > 0
    assert (tmp_path / "digits_errors.png").stat().st_size > 0
    assert "the hand-drawn 1 is predicted as: 1" in capsys.readouterr().out


def test_digits_first_project_saves_without_pickle_and_tunes_on_the_train_split(tmp_path):
    results = load_example("digits_first_project").main(["--out", str(tmp_path)])

    assert results["loaded_identical"] is True
    assert results["loaded_accuracy"] == results["accuracy"] >= 0.95
    assert (tmp_path / "digits_first_project.npz").is_file()
    assert set(results["best_params"]) == {"n_neighbors", "p", "weights", "algorithm"}
    assert results["best_params"]["n_neighbors"] in range(2, 19, 2)
    assert results["best_params"]["p"] in (1, 2, 3)
    assert results["tuned_test_accuracy"] >= 0.97
    # Picking by test accuracy can only look better than (or as good as) honest tuning.
    assert results["leaky_best_test_accuracy"] >= results["tuned_test_accuracy"]


def test_decision_surfaces_score_the_held_out_points_and_draw_both_surfaces(tmp_path):
    results = load_example("decision_surfaces").main(["--out", str(tmp_path)])

    assert results["moons_accuracy"] >= 0.85
    assert results["iris_accuracy"] >= 0.6
    for name in ("moons_surface.png", "iris_surface.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_mnist_chapter3_on_digits(tmp_path):
    results = load_example("mnist_chapter3").main(["--data", "digits", "--out", str(tmp_path)])

    assert results["data"].startswith("digits")
    assert results["multilabel_f1_macro"] >= 0.95
    assert results["denoise_mse_after"] <= 0.5 * results["denoise_mse_before"]
    assert results["denoise_reduction"] >= 0.5
    # The threshold is chosen on the train split, so the test precision is near 90 %.
    assert results["precision_at_threshold"] >= 0.85
    assert results["auc_is_5"] >= 0.95
    for name in ("is_5_threshold.png", "confusion_matrix.png", "denoising.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_mnist_chapter3_labels_the_stand_in_as_such(tmp_path, capsys):
    module = load_example("mnist_chapter3")
    results = module.main(["--data", "stand-in", "--size", "600", "--out", str(tmp_path)])

    assert "STAND-IN, NOT MNIST" in results["data"]
    assert "STAND-IN, NOT MNIST" in capsys.readouterr().out
    assert results["denoise_mse_after"] < results["denoise_mse_before"]


def test_mnist_chapter3_without_the_cache_fails_clearly(tmp_path, monkeypatch, capsys):
    # No cache under this working directory, and the download fails as it does offline
    # (patched so the test never downloads MNIST on a machine that has a network).
    monkeypatch.chdir(tmp_path)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(sklearn.datasets, "fetch_openml", offline)
    module = load_example("mnist_chapter3")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--data", "mnist", "--out", str(tmp_path / "out")])

    assert exit_info.value.code not in (0, None)
    err = capsys.readouterr().err
    assert "mnist_784" in err
    assert "data/cache/openml/mnist_784.parquet" in err
    assert not (tmp_path / "out").exists()


def test_an_example_logs_its_run_to_mlflow(tmp_path, isolated_mlflow):
    results = load_example("decision_surfaces").main(["--out", str(tmp_path), "--mlflow"])

    logged = mlflow_store.run_summary(isolated_mlflow, "knnlab-examples")
    assert len(logged) == 1
    run = logged[0]
    assert run["status"] == "FINISHED"
    assert run["tags"]["knnlab.stage"] == "examples/decision_surfaces"
    assert run["params"]["n_neighbors"] == "15"
    assert run["metrics"]["moons_accuracy"] == pytest.approx(results["moons_accuracy"])
    assert run["metrics"]["iris_accuracy"] == pytest.approx(results["iris_accuracy"])
    figures = mlflow_store.list_artifacts(isolated_mlflow, run["run_id"], "figures")
    assert sorted(figures) == ["figures/iris_surface.png", "figures/moons_surface.png"]


def test_an_example_runs_as_a_script(tmp_path):
    script = REPO_ROOT / "examples" / "digits_cookbook.py"
    done = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "test accuracy" in done.stdout
    assert (tmp_path / "digits_gallery.png").is_file()
