"""MLflow's UI as a new user meets it, in a fresh headless Chromium against ``knnlab ui`` (a
real ``mlflow ui`` on loopback): the link opens on the runs, the first page holds every
evaluate run after many tune runs, a run page shows its metrics in sections and its summary,
and a tune run's candidates are one click away."""

from __future__ import annotations

import re

import pytest

from knnlab import stats
from knnlab.pipeline.io.artifacts import MODELS, metric_name
from knnlab.pipeline.io.params import MlflowParams
from knnlab.tracking import runs
from knnlab.tracking.server import free_port

from ..support import mlflow_ui

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(mlflow_ui.available() is not None, reason=str(mlflow_ui.available())),
]

TUNE_RUNS, CANDIDATES, EVALUATE_RUNS = 5, 54, 10  # as the issue found them


def _evaluate_metrics(k: int) -> dict[str, float]:
    """The evaluate run's metric names, as evaluate logs them."""
    logged = {}
    for model in MODELS:
        for metric in stats.METRICS:
            value = 0.9 + k / 1000
            logged[metric_name(model, metric)] = value
            logged[metric_name(model, f"{metric}_ci_low")] = value - 0.01
            logged[metric_name(model, f"{metric}_ci_high")] = value + 0.01
    logged["paired/tuned_vs_configured_accuracy_difference"] = 0.001
    logged["paired/tuned_vs_configured_accuracy_p_value"] = 0.5
    logged["timing/fit_seconds"] = 0.01
    logged["timing/predict_seconds"] = 0.2
    return logged


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Five tune runs of 54 candidates and ten evaluate runs, interleaved as `dvc exp run`
    sweeps make them, logged by knnlab's own run functions."""
    root = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    config = MlflowParams(experiment="knnlab")
    grid = [
        {
            "name": f"k={k} p={p} uniform brute",
            "params": {"n_neighbors": k, "p": p},
            "metrics": {"mean_test_accuracy": 0.9},
        }
        for k in range(1, CANDIDATES // 3 + 1)
        for p in (1, 2, 3)
    ]
    n = 0
    for _ in range(TUNE_RUNS):
        with runs.stage_run(config, "tune", f"tune {CANDIDATES} candidates") as run:
            run.log(params={"cv": 5}, metrics={"cv/best_accuracy": 0.98})
            run.log_candidates(grid, {"cv": 5})
        for _ in range(EVALUATE_RUNS // TUNE_RUNS):
            n += 1
            with runs.stage_run(config, "evaluate", f"evaluate {n:02d}: k={n}") as run:
                run.log(
                    params={"n_neighbors": n},
                    metrics=_evaluate_metrics(n),
                    tags={"mlflow.note.content": f"**k={n}** summary: accuracy 0.9{n:02d}"},
                )
    monkeypatch.undo()
    return root, uri


@pytest.fixture(scope="module")
def ui_link(store):
    root, uri = store
    with mlflow_ui.knnlab_ui(root, free_port(), {"MLFLOW_TRACKING_URI": uri}) as link:
        yield link


def test_the_link_opens_on_the_runs_with_every_evaluate_run_on_the_first_page(ui_link, store):
    root, _ = store
    with mlflow_ui.fresh_page() as page:
        page.goto(ui_link)
        page.get_by_text(f"evaluate {EVALUATE_RUNS:02d}").first.wait_for()
        page.screenshot(path=str(root / "runs.png"))
        shown = page.inner_text("body")
        assert re.search(r"\bRuns\b", shown) and "Token usage" not in shown, "not GenAI"
        assert page.get_by_role("link", name="Runs").count() >= 1 or "Runs" in shown
        evaluate = sorted(set(re.findall(r"evaluate \d\d", shown)))
        assert evaluate == [f"evaluate {n:02d}" for n in range(1, EVALUATE_RUNS + 1)], shown
        assert shown.count(f"tune {CANDIDATES} candidates") == TUNE_RUNS
        assert "k=1 p=1 uniform brute" not in shown, "candidates live in their own experiment"
        assert f"{EVALUATE_RUNS + TUNE_RUNS} matching runs" in shown


def test_a_run_page_shows_metric_sections_and_the_summary(ui_link):
    with mlflow_ui.fresh_page() as page:
        page.goto(ui_link)
        page.get_by_text(f"evaluate {EVALUATE_RUNS:02d}").first.click()
        page.get_by_text(f"summary: accuracy 0.9{EVALUATE_RUNS:02d}").wait_for()
        page.get_by_text("Model metrics").first.click()
        page.get_by_text("baseline").first.wait_for()
        shown = page.inner_text("body")
        per_model = 3 * len(stats.METRICS)  # each score and its two bounds
        for section, count in (
            ("test", per_model),
            ("tuned", per_model),
            ("baseline", per_model),
            ("paired", 2),
            ("timing", 2),
        ):
            assert re.search(rf"\b{section}\s*\(\s*{count}\s*\)", shown), (section, shown[:800])


def test_a_tune_run_links_to_its_candidates(ui_link):
    with mlflow_ui.fresh_page() as page:
        page.goto(ui_link)
        page.get_by_text(f"tune {CANDIDATES} candidates").first.click()
        with page.context.expect_page() as opened:  # MLflow opens description links in a tab
            page.get_by_role("link", name="open them").click()
        candidates = opened.value
        parent = candidates.locator("[role=row]", has_text=f"tune {CANDIDATES} candidates")
        parent.first.locator("button").first.click()  # expand the nested runs
        candidates.get_by_text("k=18 p=3 uniform brute").first.wait_for()
        shown = candidates.inner_text("body")
        # This tune run's candidates and their parent, not the other tune runs' candidates.
        assert f"{CANDIDATES + 1} matching runs" in shown, shown[-600:]
