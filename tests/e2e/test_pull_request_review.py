"""Pull-request review as a user does it: commits of a real DVC pipeline on digits in a
temporary git repository, and ``knnlab report --base`` saying whether each change is real.

On the default split (450 test rows), k = 5 gets 443 rows right and k = 4 gets 442: one row
apart, which must read "within noise"; k = 600 (a model broken by over-smoothing) gets 315
right, which must read as a significant drop. (A changed split, compared unpaired, is
tested on the same records in tests/pipeline/test_significance.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from ..conftest import REPO_ROOT
from ..support import mlflow_store
from ..support.project import SMALL_GRID, _env, make_project, run, stages_run

pytestmark = pytest.mark.slow


def _set_k(root, k: int) -> None:
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["model"]["n_neighbors"] = k
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _commit(root, message: str) -> None:
    run(["git", "add", "-A"], root)
    run(["git", "commit", "-q", "-m", message], root)


@pytest.fixture(scope="module")
def digits_project(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("review"), tune=SMALL_GRID)
    run(["dvc", "repro"], root)
    _commit(root, "base: k = 5")
    return root


def test_intervals_land_in_reports_and_mlflow_and_rerun_byte_identical(digits_project):
    root = digits_project
    record = json.loads((root / "reports/uncertainty.json").read_text())
    metrics = json.loads((root / "reports/metrics.json").read_text())
    accuracy = metrics["configured"]["accuracy"]
    interval = record["intervals"]["configured"]["accuracy"]
    assert accuracy == pytest.approx(443 / 450)
    assert interval["low"] < accuracy < interval["high"]
    report = (root / "reports/report.md").read_text()
    assert (
        f"| Accuracy | {accuracy:.3f} [{interval['low']:.3f}, {interval['high']:.3f}] |" in report
    )
    assert "## Is the difference real?" in report
    assert "- tuned is not significantly" in report or "- tuned is significantly" in report
    evaluate = next(
        r
        for r in mlflow_store.run_summary(f"sqlite:///{root / 'mlflow.db'}", "knnlab")
        if r["tags"].get("knnlab.stage") == "evaluate"
    )
    assert evaluate["metrics"]["test/accuracy_ci_low"] == pytest.approx(interval["low"])
    assert evaluate["metrics"]["test/accuracy_ci_high"] == pytest.approx(interval["high"])
    assert "paired/tuned_vs_configured_accuracy_p_value" in evaluate["metrics"]
    logged = mlflow_store.list_artifacts(f"sqlite:///{root / 'mlflow.db'}", evaluate["run_id"])
    assert "uncertainty.json" in logged
    # The worst errors, explained by their neighbours: a table, a figure, in MLflow too.
    assert "## Why kNN erred: the most confident errors and their neighbours" in report
    assert "| 25 | 8 | 1 | 1.00 (5 of 5) | 1@21.8, 1@22.0, 1@22.2, 1@22.6, 1@23.2 |" in report
    assert "![The most confident errors" in report
    assert (root / "reports/figures/worst_errors.png").stat().st_size > 10_000
    figures = mlflow_store.list_artifacts(
        f"sqlite:///{root / 'mlflow.db'}", evaluate["run_id"], "figures"
    )
    assert "figures/worst_errors.png" in figures
    # The tune run logs both picks of the grid search.
    tune = next(
        r
        for r in mlflow_store.run_summary(f"sqlite:///{root / 'mlflow.db'}", "knnlab")
        if r["tags"].get("knnlab.stage") == "tune"
    )
    assert {"best_n_neighbors", "one_se_n_neighbors", "select"} <= set(tune["params"])
    assert {"cv/best_accuracy_se", "cv/one_se_threshold"} <= set(tune["metrics"])
    # Same params, same bytes.
    before = {
        p: (root / p).read_bytes() for p in ("reports/uncertainty.json", "reports/metrics.json")
    }
    output = run(["dvc", "repro", "--force", "--single-item", "evaluate"], root)
    assert stages_run(output) == ["evaluate"]
    for path, content in before.items():
        assert (root / path).read_bytes() == content, path


def test_a_one_row_change_is_within_noise_and_a_broken_model_is_significant(digits_project):
    root = digits_project
    _set_k(root, 4)
    run(["dvc", "repro"], root)
    _commit(root, "k = 4: one test row fewer right")
    text = run(["python", "-m", "knnlab", "report", "--base", "HEAD~1"], root)
    assert "Metrics, paired: both revisions scored the same 450 test rows" in text, text
    row = next(line for line in text.splitlines() if line.startswith("| configured: Accuracy"))
    assert row.startswith("| configured: Accuracy | 0.9844 | 0.9822 | \u22120.0022 ["), row
    assert row.endswith("| within noise |"), row
    changes = text.split("## Changes against")[1].split("## Data")[0]
    assert "▲" not in changes and "▼" not in changes, changes
    # dvc's own comparison keeps working beside it, on quality only (timings are outputs).
    metrics_diff = run(["dvc", "metrics", "diff", "HEAD~1"], root)
    assert "configured.accuracy" in metrics_diff and "seconds" not in metrics_diff
    # The README's recipe for the columns that matter in `dvc exp show`.
    shown = run(
        [
            "dvc",
            "exp",
            "show",
            "--md",
            "--drop",
            ".*",
            "--keep",
            r"^Experiment$|^model\.|^(configured|tuned)\.accuracy$",
        ],
        root,
    )
    header = [cell.strip() for cell in shown.splitlines()[0].strip("|").split("|")]
    assert header[0] == "Experiment" and "configured.accuracy" in header, header
    assert {"model.n_neighbors", "model.p", "model.weights", "model.algorithm"} <= set(header)
    assert not [h for h in header if "seconds" in h or h.startswith(("stats.", "data."))]

    _set_k(root, 600)
    run(["dvc", "repro", "evaluate"], root)  # report --base reads what evaluate writes
    text = run(["python", "-m", "knnlab", "report", "--base", "HEAD"], root)
    row = next(line for line in text.splitlines() if line.startswith("| configured: Accuracy"))
    assert "| 0.9822 | 0.7000 |" in row, row
    assert "**▼ worse** (significant, McNemar p < 0.0001)" in row, row


def test_an_unknown_base_revision_is_one_clear_line(digits_project):
    done = subprocess.run(
        [sys.executable, "-m", "knnlab", "report", "--base", "no-such-branch"],
        cwd=digits_project,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("knnlab report: error: cannot read revision 'no-such-branch'")
    assert len(done.stderr.strip().splitlines()) == 1


# --- the gate: .ci/pr-report, the steps of .github/workflows/report.yml ----------------------

PR_REPORT = REPO_ROOT / ".ci" / "pr-report"


def _at_base(root, branch: str) -> None:
    """A new branch from ``base`` (k = 5, the first commit) with its outputs in place."""
    run(["git", "reset", "-q", "--hard"], root)
    run(["git", "checkout", "-q", "-B", branch, "base"], root)
    run(["dvc", "checkout", "-q"], root)


def _pr_report(root) -> subprocess.CompletedProcess:
    """The workflow's step as it runs it: the script with the base branch and an output,
    in an environment already built (KNNLAB_BUILD: the build without make's install)."""
    env = _env({"KNNLAB_BUILD": "dvc repro", "KNNLAB_PYTHON": sys.executable})
    return subprocess.run(
        ["bash", str(PR_REPORT), "base", "pr-report.md", "https://example.org/reports/"],
        cwd=root, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def _changes(text: str) -> str:
    return text.split("## Changes against")[1].split("## Data")[0]


def test_the_workflow_runs_the_gate_script():
    workflow = yaml.safe_load((REPO_ROOT / ".github/workflows/report.yml").read_text())
    steps = workflow["jobs"]["report"]["steps"]
    [gate] = [s for s in steps if ".ci/pr-report" in s.get("run", "")]
    assert '.ci/pr-report "origin/${{ github.base_ref }}" pr-report.md' in gate["run"]
    [post] = [s for s in steps if "gh pr comment" in s.get("run", "")]
    assert post["if"].startswith("always()"), "the report is posted when the gate fails too"
    assert steps.index(post) > steps.index(gate)


def test_k_5_to_7_passes_the_gate_with_nothing_marked(digits_project):
    """The README's example: accuracy −0.0044 within noise; ROC-AUC's tiny significant
    change is negligible, not a red flag, and no bound prints as −0.0000."""
    root = digits_project
    run(["git", "branch", "-f", "base", "HEAD~1"], root)  # k = 5
    _at_base(root, "harmless")
    _set_k(root, 7)
    done = _pr_report(root)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "knnlab report: pass: no headline metric is worse than at base" in done.stderr
    text = (root / "pr-report.md").read_text()
    changes = _changes(text)
    assert "▲" not in changes and "▼" not in changes, changes
    row = next(line for line in changes.splitlines() if line.startswith("| configured: Accuracy"))
    assert row.endswith("| within noise |"), row
    assert "\u22120.0000]" not in changes and "\u22120.0000," not in changes, changes
    auc = [line for line in changes.splitlines() if "configured: ROC-AUC" in line]
    assert all("negligible" in line or "within noise" in line for line in auc), auc
    assert "](https://example.org/reports/figures/" in text, "figure links for the comment"
    _commit(root, "k = 7")


def test_k_600_fails_the_gate_and_the_report_is_written(digits_project):
    root = digits_project
    _at_base(root, "broken")
    _set_k(root, 600)
    done = _pr_report(root)
    assert done.returncode == 1, done.stderr[-3000:]
    [failure] = [line for line in done.stderr.splitlines() if "fail:" in line][:1]
    assert failure.startswith(
        "knnlab report: fail: configured Accuracy is significantly and materially worse: "
        "0.9844 -> 0.7000"
    ), failure
    assert failure.endswith("the smallest change that matters is 0.0050 (review.min_effect)")
    row = next(
        line
        for line in _changes((root / "pr-report.md").read_text()).splitlines()
        if line.startswith("| configured: Accuracy")
    )
    assert "**▼ worse** (significant, McNemar p < 0.0001)" in row, row


def test_another_dataset_is_not_comparable_and_the_gate_does_not_judge(digits_project):
    root = digits_project
    _at_base(root, "iris")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["data"]["dataset"] = "iris"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["dvc", "repro"], root)
    done = subprocess.run(
        [sys.executable, "-m", "knnlab", "report", "--base", "base", "--fail-on", "worse"],
        cwd=root, env=_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "knnlab report: not judged: base is not comparable (the datasets differ" in done.stderr
    changes = _changes(done.stdout)
    assert "**Not comparable**: no change is marked better or worse, because" in changes
    assert "- the datasets differ: digits at the base, iris here;" in changes
    assert "- the label sets differ: 10 classes (0, 1, 2, 3, 4, 5, …) at the base, 3 " in changes
    assert "▲" not in changes and "▼" not in changes and "significant" not in changes
    assert "| configured: Accuracy | 0.9844 |" in changes
