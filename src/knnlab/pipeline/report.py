"""``reports/report.md``: the page a reviewer reads in a pull request.

:func:`build_report` is pure (the stages' records in, markdown out). The plot stage writes
the report; ``knnlab report --base <rev>`` rebuilds it with the change in params and
metrics against a git revision (read with ``git show``, no DVC needed), for a pull-request
comment.
"""

from __future__ import annotations

import json
import math
import subprocess
from typing import Any

import yaml

from knnlab.pipeline.artifacts import MODELS, Evaluation, SplitInfo, TuneSummary

HEADLINE = (
    ("accuracy", "Accuracy"),
    ("precision_macro", "Precision (macro)"),
    ("recall_macro", "Recall (macro)"),
    ("f1_macro", "F1 (macro)"),
    ("f1_weighted", "F1 (weighted)"),
    ("roc_auc_ovr", "ROC-AUC (one-vs-rest)"),
)
# Figures in reading order: (file, caption).
FIGURES = (
    ("confusion_matrix.png", "Confusion matrix: counts, and where the errors go"),
    ("roc_curves.png", "ROC curves, one class vs the rest"),
    ("precision_recall_curves.png", "Precision-recall curves"),
    ("binary_threshold.png", "Binary target: precision and recall against the threshold"),
    ("cv_score_vs_k.png", "Cross-validated score against k, one line per p and weighting"),
    ("cv_heatmap.png", "Mean CV score over k and p"),
    ("search_speed.png", "Search time per algorithm"),
    ("confused_pair.png", "The most-confused pair of classes"),
    ("probability_surface.png", "Decision surface"),
    ("sample_gallery.png", "Sample images"),
)


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def build_report(
    split: SplitInfo,
    evaluation: Evaluation,
    tuned: TuneSummary,
    model_params: dict,
    figures: list[str],
    binary: dict | None = None,
) -> str:
    """The report as markdown.

    model_params : the configured model's params; figures : file names present in
    reports/figures/; binary : the positive-class analysis (:func:`knnlab.pipeline.evaluation.
    binary_analysis`), if any.
    """
    metrics, timings = evaluation.metrics, evaluation.timings
    lines = [f"# knnlab report: {split.name}", ""]
    lines += ["## Data", ""]
    lines += _table(
        ["rows", "features", "classes", "train / test", "test_size", "split seed"],
        [
            [
                str(split.n_samples),
                str(split.n_features),
                str(split.n_classes),
                f"{split.n_train} / {split.n_test}",
                str(split.test_size),
                str(split.seed),
            ]
        ],
    )
    lines += ["", "## Test-split metrics", ""]
    rows = [[label] + [_fmt(metrics[m][key]) for m in MODELS] for key, label in HEADLINE]
    rows += [
        [label] + [_fmt(timings[m][key], 3) for m in MODELS]
        for key, label in (("fit_seconds", "Fit seconds"), ("predict_seconds", "Predict seconds"))
    ]
    lines += _table(["", "configured", "tuned best", "baseline (most frequent)"], rows)
    configured = ", ".join(f"{k}={v}" for k, v in sorted(model_params.items()))
    best = ", ".join(f"{k}={v}" for k, v in sorted(tuned.best_params.items()))
    lines += [
        "",
        f"- **configured**: {configured}",
        f"- **tuned best** ({tuned.cv}-fold CV on the train split only, "
        f"{tuned.n_candidates} candidates, by {tuned.scoring}): {best}; "
        f"mean CV {tuned.scoring} {_fmt(tuned.best_score)}",
        "- **baseline**: always predicts the most frequent class of the train split",
    ]
    if binary is not None:
        lines += ["", f"## Is it a {binary['name']}?", ""]
        found = binary["at_precision"]
        if found is None:
            lines += [f"No threshold reaches {binary['target']:.0%} precision on training folds."]
        else:
            lines += [
                f"The threshold {found['threshold']:.3g}, chosen on out-of-fold scores of the "
                f"train split to reach {binary['target']:.0%} precision, gives on the test "
                f"split precision {found['precision']:.3f} and recall {found['recall']:.3f} "
                f"(false positive rate {found['false_positive_rate']:.4f})."
            ]
    shown = [(name, caption) for name, caption in FIGURES if name in figures]
    if shown:
        lines += ["", "## Figures", ""]
        for name, caption in shown:
            lines += [f"### {caption}", "", f"![{caption}](figures/{name})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _arrow(change: float, higher_is_better: bool) -> str:
    if change == 0 or math.isnan(change):
        return "="
    better = (change > 0) == higher_is_better
    return ("▲" if change > 0 else "▼") + (" better" if better else " worse")


def _flatten(prefix: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        out = {}
        for key, inner in value.items():
            out.update(_flatten(f"{prefix}.{key}" if prefix else str(key), inner))
        return out
    return {prefix: value}


def diff_against(base: dict, current: dict) -> dict:
    """Params and metrics that differ between ``base`` and ``current``.

    Each argument: {"params": params.yaml mapping, "metrics": metrics.json mapping}.
    """
    params_base, params_now = _flatten("", base["params"]), _flatten("", current["params"])
    params = [
        (key, params_base.get(key, "—"), params_now.get(key, "—"))
        for key in sorted(set(params_base) | set(params_now))
        if params_base.get(key) != params_now.get(key)
    ]
    metrics = []
    for model in MODELS:
        for key, label in HEADLINE:
            before = base["metrics"].get(model, {}).get(key, float("nan"))
            after = current["metrics"].get(model, {}).get(key, float("nan"))
            metrics.append((f"{model}: {label}", before, after))
    return {"base": base.get("rev", "base"), "params": params, "metrics": metrics}


def diff_section(diff: dict) -> list[str]:
    lines = [f"## Changes against `{diff['base']}`", ""]
    if diff["params"]:
        lines += _table(
            ["param", "base", "this change"],
            [[f"`{k}`", f"`{a}`", f"`{b}`"] for k, a, b in diff["params"]],
        )
    else:
        lines += ["No params changed."]
    lines += [""]
    rows = []
    for label, before, after in diff["metrics"]:
        change = after - before
        if math.isnan(change) or abs(change) < 5e-5:
            continue
        rows.append([label, _fmt(before), _fmt(after), f"{change:+.4f}", _arrow(change, True)])
    lines += (
        _table(["metric", "base", "this change", "Δ", ""], rows)
        if rows
        else ["No metric moved by 0.0001 or more."]
    )
    return lines


def read_revision(rev: str, params_path: str, metrics_path: str) -> dict:
    """params.yaml and reports/metrics.json as committed at ``rev`` (``git show``)."""

    def show(path: str) -> str:
        done = subprocess.run(
            ["git", "show", f"{rev}:{path}"], capture_output=True, text=True, timeout=30
        )
        if done.returncode != 0:
            raise ValueError(f"cannot read {path} at revision {rev!r}: {done.stderr.strip()}")
        return done.stdout

    return {
        "rev": rev,
        "params": yaml.safe_load(show(params_path)) or {},
        "metrics": json.loads(show(metrics_path)),
    }
