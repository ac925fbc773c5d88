"""End to end: the real DVC pipeline in a temporary git repository, logging to a real
MLflow SQLite store at that repository's root (its default location)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from knnlab.tracking import models
from knnlab.tracking.store import mlflow_client

from ..support import dvc_plots_browser, mlflow_store
from ..support.project import run, run_stdout, stages_run, store
from ..support.shared_project import copy_project

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def iris_project(reproduced_iris, tmp_path_factory):
    """iris with a small grid over brute force and kd_tree (``IRIS`` in
    tests/support/shared_project.py), reproduced and committed: this module's copy of the
    worker's (conftest.py), and what its ``dvc repro`` printed."""
    root = copy_project(reproduced_iris.root, tmp_path_factory.mktemp("project"))
    return root, reproduced_iris.output


def test_repro_runs_every_stage_and_writes_reports(iris_project):
    root, output = iris_project
    assert stages_run(output) == [
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
    metrics = json.loads((root / "reports/metrics.json").read_text())
    assert set(metrics) == {"configured", "tuned", "baseline"}
    assert metrics["configured"]["accuracy"] >= 0.85, metrics
    assert metrics["baseline"]["roc_auc_ovr"] == 0.5, "a constant predictor ranks at chance"
    best = json.loads((root / "reports/tune/best_params.json").read_text())
    assert best["n_candidates"] == 2 * 2 * 1 * 2
    expected = {
        "confusion_matrix.png",
        "roc_curves.png",
        "precision_recall_curves.png",
        "cv_score_vs_k.png",
        "cv_heatmap.png",
    }  # iris has 4 features and 3 classes: no image, surface or binary figures
    assert {p.name for p in (root / "reports/figures").iterdir()} == expected
    for figure in expected:
        assert (root / "reports/figures" / figure).read_bytes()[:4] == b"\x89PNG"
    report = (root / "reports/report.md").read_text()
    assert "| Accuracy |" in report and "- **tuned** (" in report
    for section in (
        "## Prediction sets",
        "## Suspicious labels",
        "## Training rows that help or hurt",
        "## Leaks across the split",
    ):
        assert section in report, f"the report lacks {section}"
    conformal = json.loads((root / "reports/conformal.json").read_text())
    assert conformal["target"] == 0.9 and conformal["n"] == len(
        pd.read_parquet(root / "data/split/test.parquet")
    )
    audit = json.loads((root / "reports/audit/audit.json").read_text())
    shapley = pd.read_csv(root / "reports/audit/shapley.csv")
    assert len(shapley) == audit["suspicious"]["rows"], "one value per training row"
    assert shapley["value"].sum() == pytest.approx(audit["shapley"]["total"], abs=1e-9)
    for link in re.findall(r"\]\((figures/[^)]+)\)", report):
        assert (root / "reports" / link).is_file(), f"report links a missing {link}"
    assert (root / "models/model.npz").is_file()
    assert "Fit seconds" not in report, "seconds differ on every run: not in the report"
    timings = json.loads((root / "reports/timings/timings.json").read_text())
    assert timings["configured"]["predict_seconds"] > 0
    assert (root / "reports/timings/search_speed.png").read_bytes()[:4] == b"\x89PNG"
    assert "reports/timings" not in run(["git", "ls-files", "reports"], root), "not committed"


def test_a_fresh_clone_reproduces_to_a_clean_tree(iris_project, tmp_path):
    """The quickstart's promise: a clone has no DVC cache, MLflow store or run records, and
    `dvc repro` there rebuilds every output byte for byte: `git status` shows nothing."""
    root, _ = iris_project
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(root), str(clone)], tmp_path)
    output = run(["dvc", "repro"], clone)
    # audit's outputs are committed and its inputs come back byte for byte, so DVC finds it
    # up to date; exact and evaluate write files git does not keep.
    assert stages_run(output) == [
        "params",
        "fetch",
        "split",
        "train",
        "exact",
        "tune",
        "evaluate",
        "plot",
    ]
    assert run(["git", "status", "--porcelain", "--untracked-files=all"], clone) == ""
    [evaluate] = [r for r in store(clone) if r["tags"].get("knnlab.stage") == "evaluate"]
    assert {"figures", "report.md"} <= set(
        mlflow_store.list_artifacts(f"sqlite:///{clone / 'mlflow.db'}", evaluate["run_id"])
    ), "plot found the clone's own evaluate run by its tag"


def test_mlflow_holds_the_evaluate_run_and_nested_tuning_runs(iris_project):
    root, _ = iris_project
    logged = store(root)
    evaluate = [r for r in logged if r["tags"].get("knnlab.stage") == "evaluate"]
    tune = [r for r in logged if r["tags"].get("knnlab.stage") == "tune"]
    assert len(evaluate) == 1 and len(tune) == 1, [r["name"] for r in logged]
    run = evaluate[0]
    assert run["status"] == "FINISHED"
    for key in ("dataset", "test_size", "seed", "n_neighbors", "p", "weights", "algorithm"):
        assert key in run["params"], f"evaluate run lacks param {key}"
    assert run["params"]["dataset"] == "iris"
    for key in (
        "test/accuracy",
        "test/f1_macro",
        "test/roc_auc_ovr",
        "timing/fit_seconds",
        "timing/predict_seconds",
    ):
        assert key in run["metrics"], f"evaluate run lacks metric {key}"
    assert run["tags"]["mlflow.source.git.commit"], "runs carry the git commit"
    assert run["tags"]["mlflow.source.name"] == "knnlab evaluate", "the UI's Source field"
    uri = f"sqlite:///{root / 'mlflow.db'}"
    # The run's description: the models' scores for reading, the verdicts, the model's URI.
    description = run["tags"]["mlflow.note.content"]
    accuracy = run["metrics"]["test/accuracy"]
    low, high = run["metrics"]["test/accuracy_ci_low"], run["metrics"]["test/accuracy_ci_high"]
    assert f"| configured (this run's model) | {accuracy:.4f} [{low:.4f}, {high:.4f}] |" in (
        description
    )
    assert "tuned is " in description and f"`runs:/{run['run_id']}/model`" in description
    # The tune run spans its search: it opened after writing the CV table, but starts before.
    written = (root / "reports/tune/cv_results.csv").stat().st_mtime * 1000
    assert tune[0]["start_time"] <= written <= tune[0]["end_time"]
    client = mlflow_client(uri)
    for name in ("knnlab", "knnlab candidates"):
        tags = client.get_experiment_by_name(name).tags
        assert tags["mlflow.experimentKind"] == "custom_model_development", name
    artifacts = mlflow_store.list_artifacts(uri, run["run_id"])
    assert {"figures", "metrics.json", "report.md", "confusion_matrix.json"} <= set(artifacts)
    model = models.load_logged_model(uri, run["run_id"])
    test = pd.read_parquet(root / "data/split/test.parquet")
    predicted = pd.read_csv(root / "reports/plots/predictions.csv")["predicted"]
    np.testing.assert_array_equal(model.predict(test.drop(columns=["label"])), predicted)
    inputs = mlflow_store.run_inputs(uri, run["run_id"])
    assert sorted((name, context) for name, _, context in inputs) == [
        ("iris-test", "evaluation"),
        ("iris-train", "training"),
    ]
    assert all(len(digest) >= 8 for _, digest, _ in inputs), "datasets carry a digest"
    figures = set(mlflow_store.list_artifacts(uri, run["run_id"], "figures"))
    assert figures == {f"figures/{p.name}" for p in (root / "reports/figures").iterdir()}
    assert {"timings.json", "uncertainty.json"} <= set(artifacts)
    # What the neighbours say about the data, beside the model: files and metrics.
    assert {"conformal.json", "leaks.json", "audit.json", "shapley.csv"} <= set(artifacts)
    assert "suspicious_labels.csv" in artifacts
    for key in ("conformal/coverage", "leaks/exact_duplicates", "audit/shapley_harmful_rows"):
        assert key in run["metrics"], f"evaluate run lacks metric {key}"
    key = run["tags"]["knnlab.evaluation_sha256"]
    assert re.fullmatch(r"[0-9a-f]{64}", key), "plot finds this run by the outputs' digest"
    assert "tune/search_speed.png" in mlflow_store.list_artifacts(uri, tune[0]["run_id"], "tune")
    assert run["artifact_uri"].startswith((root / "mlruns").as_uri()), "artifacts beside the db"
    assert not any("mlflow.parentRunId" in r["tags"] for r in logged), "stage runs only"
    parent, children = mlflow_store.candidates_of(uri, tune[0])
    assert parent["name"] == tune[0]["name"] and parent["status"] == "FINISHED"
    assert parent["params"] == tune[0]["params"], "the search's settings beside its candidates"
    assert len(children) == 8, "one nested run per grid point"
    assert all("mean_test_accuracy" in c["metrics"] for c in children)
    assert {"n_neighbors", "p", "weights", "algorithm"} <= set(children[0]["params"])


def test_second_repro_is_a_no_op_and_logs_nothing(iris_project):
    root, _ = iris_project
    before = len(store(root))
    output = run(["dvc", "repro"], root)
    assert stages_run(output) == [], output
    assert len(store(root)) == before, "an up-to-date pipeline must not log runs"


def test_changing_k_reruns_only_what_depends_on_it(iris_project):
    root, _ = iris_project
    before = store(root)
    output = run(["dvc", "exp", "run", "-S", "model.n_neighbors=7"], root)
    # "params" only re-checks the edited params.yaml; its output is unchanged.
    assert stages_run(output) == ["params", "train", "audit", "evaluate", "plot"], output
    new = [r for r in store(root) if r["run_id"] not in {b["run_id"] for b in before}]
    assert [r["tags"]["knnlab.stage"] for r in new] == ["evaluate"]
    assert new[0]["params"]["n_neighbors"] == "7"
    assert new[0]["tags"]["knnlab.dvc_exp_name"], "the DVC experiment name is tagged"


def test_runs_lists_the_evaluate_runs_newest_first(iris_project):
    root, _ = iris_project
    listed = json.loads(run_stdout(["knnlab", "runs", "--json"], root))
    evaluate = sorted(
        (r for r in store(root) if r["tags"].get("knnlab.stage") == "evaluate"),
        key=lambda r: r["start_time"],
        reverse=True,
    )
    assert len(evaluate) >= 2, "k = 5, then the k = 7 experiment"
    assert [r["run_id"] for r in listed] == [r["run_id"] for r in evaluate]
    for shown, logged in zip(listed, evaluate, strict=True):
        assert shown["model_uri"] == f"runs:/{logged['run_id']}/model"
        assert (
            shown["dataset"] == "iris" and shown["n_neighbors"] == logged["params"]["n_neighbors"]
        )
        assert shown["accuracy"] == logged["metrics"]["test/accuracy"]
        assert shown["accuracy_low"] == logged["metrics"]["test/accuracy_ci_low"]
        assert shown["url"] is None, "a local store has no UI address of its own"
    assert listed[0]["n_neighbors"] == "7"
    text = run_stdout(["knnlab", "runs", "--limit", "1"], root)
    newest = listed[0]
    row = next(line for line in text.splitlines() if line.startswith(newest["run_id"]))
    accuracy = f"{newest['accuracy']:.4f} [{newest['accuracy_low']:.4f}, "
    assert " iris " in row and " 7 " in row and accuracy in row, text
    assert len([line for line in text.splitlines() if re.match(r"[0-9a-f]{32} ", line)]) == 1
    assert f"knnlab serve {newest['model_uri']}" in text


def test_temporary_experiment_workspace_logs_to_the_main_store(iris_project):
    root, _ = iris_project
    before = len(store(root))
    output = run(["dvc", "exp", "run", "--temp", "-S", "model.p=1"], root)
    assert stages_run(output) == ["params", "train", "audit", "evaluate", "plot"], output
    after = store(root)
    assert len(after) == before + 1, "the --temp run landed in the main repository's store"
    assert any(r["params"].get("p") == "1" for r in after)


@pytest.mark.parametrize("command", [["dvc", "plots", "show"], ["dvc", "plots", "diff", "HEAD"]])
def test_dvc_plots_pages_need_no_network(iris_project, tmp_path, command):
    """.dvc/config points DVC at .dvc/plots/offline.html: DVC's page with Vega inlined."""
    root, _ = iris_project
    out = tmp_path / "plots"
    run([*command, "-o", str(out)], root)
    page = (out / "index.html").read_text(encoding="utf-8")
    assert not re.findall(r"<script[^>]+src=", page), "no script is loaded from anywhere"
    assert "vega@5.20.2" in page and page.count("vegaEmbed('#") == 4, "four charts, inlined"


@pytest.mark.skipif(dvc_plots_browser.chromium() is None, reason="needs Debian's chromium")
@pytest.mark.parametrize("command", [["dvc", "plots", "show"], ["dvc", "plots", "diff", "HEAD"]])
def test_dvc_plots_render_in_headless_chromium_offline(iris_project, tmp_path, command):
    root, _ = iris_project
    out = tmp_path / "plots"
    run([*command, "-o", str(out)], root)
    index = out / "index.html"
    drawn = dvc_plots_browser.count_rendered(dvc_plots_browser.render(index, tmp_path / "p"))
    figures = len(list((root / "reports/figures").iterdir()))
    assert drawn["vega_charts"] == 4, f"confusion, ROC, PR and CV plots: {drawn}"
    assert drawn["drawn"] == 4, f"every chart drew an SVG or canvas: {drawn}"
    assert drawn["images"] >= figures, f"every PNG figure is on the page: {drawn}"
    assert drawn["errors"] == 0, drawn


def test_report_command_diffs_params_and_metrics_against_a_revision(iris_project):
    root, _ = iris_project
    # The workspace holds the last `dvc exp run -S model.n_neighbors=7` (or p=1) results.
    text = run(["python", "-m", "knnlab", "report", "--base", "HEAD"], root)
    assert "## Changes against `HEAD`" in text
    assert "| `model.n_neighbors` | `5` | `7` |" in text, text
    assert "| Accuracy |" in text


def test_moons_experiment_draws_the_surface_and_the_binary_analysis(iris_project):
    root, _ = iris_project
    before = {r["run_id"] for r in store(root)}
    output = run(
        ["dvc", "exp", "run", "-S", "data.dataset=moons", "-S", "data.features=null"], root
    )
    assert stages_run(output)[:3] == ["params", "fetch", "split"], output
    figures = {p.name for p in (root / "reports/figures").iterdir()}
    assert {"probability_surface.png", "binary_threshold.png"} <= figures, figures
    assert "## Is it a 1?" in (root / "reports/report.md").read_text()
    new = [r for r in store(root) if r["run_id"] not in before]
    evaluate = [r for r in new if r["tags"].get("knnlab.stage") == "evaluate"]
    assert [r["params"]["dataset"] for r in evaluate] == ["moons"]
    logged = mlflow_store.list_artifacts(
        f"sqlite:///{root / 'mlflow.db'}", evaluate[0]["run_id"], "figures"
    )
    assert "figures/probability_surface.png" in logged
