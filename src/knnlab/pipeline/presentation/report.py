"""``reports/report.md``: the page a reviewer reads in a pull request.

:func:`build_report` is pure (the stages' records in, markdown out). The plot stage writes
the report; ``knnlab report --base <rev>`` rebuilds it with the change in params and
metrics against a git revision (read with ``git show``, no DVC needed), for a pull-request
comment.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
from typing import Any

from knnlab.algorithms import index_options, is_approximate
from knnlab.metrics import HEADLINE_LABELS
from knnlab.pipeline.analysis import significance
from knnlab.pipeline.io.artifacts import MODELS, SplitInfo, TuneSummary
from knnlab.pipeline.io.params import FILE_DATASET, DataParams, read_params_text

HEADLINE = tuple(HEADLINE_LABELS.items())  # (metric, label) in report order
DEFAULT_DATASET = DataParams().dataset  # a params.yaml without data.dataset
# Figures in reading order: (file, caption).
FIGURES = (
    ("confusion_matrix.png", "Confusion matrix: counts, and where the errors go"),
    ("roc_curves.png", "ROC curves, one class vs the rest"),
    ("precision_recall_curves.png", "Precision-recall curves"),
    ("binary_threshold.png", "Binary target: precision and recall against the threshold"),
    ("cv_score_vs_k.png", "Cross-validated score against k, one line per p and weighting"),
    ("cv_heatmap.png", "Mean CV score over k and p"),
    ("speed_accuracy.png", "Exact and approximate candidates: CV score and recall against work"),
    ("confused_pair.png", "The most-confused pair of classes"),
    ("worst_errors.png", "The most confident errors, explained by their nearest neighbours"),
    ("probability_surface.png", "Decision surface"),
    ("sample_gallery.png", "Sample images"),
)


def _fmt(value: Any, digits: int = 4) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


# How the report names the models in sentences.
MODEL_NAMES = {"configured": "configured", "tuned": "tuned", "baseline": "baseline"}


def _with_interval(value: float, interval: dict | None) -> str:
    """0.984 [0.972, 0.993]: the point value and its interval, three decimals."""
    if interval is None or math.isnan(value):
        return _fmt(value)
    if math.isnan(interval["low"]):
        return _fmt(value, 3)
    return f"{value:.3f} [{interval['low']:.3f}, {interval['high']:.3f}]"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def build_report(
    split: SplitInfo,
    metrics: dict[str, dict[str, float]],
    tuned: TuneSummary,
    model_params: dict,
    figures: list[str],
    binary: dict | None = None,
    uncertainty: dict | None = None,
    errors: list[str] | None = None,
    tradeoff: dict | None = None,
    data_sections: list[str] | None = None,
) -> str:
    """The report as markdown.

    metrics : ``reports/metrics.json``, scores by model; model_params : the configured
    model's params; figures : file names present in
    reports/figures/; binary : the positive-class analysis
    (:func:`knnlab.pipeline.analysis.evaluation.binary_analysis`), if any; uncertainty :
    ``reports/uncertainty.json``
    (:func:`knnlab.pipeline.analysis.significance.uncertainty`); errors : markdown lines of the
    worst errors and their neighbours (:mod:`knnlab.pipeline.analysis.explain`); tradeoff : the
    grid's fastest candidate within one SE of the best exact one
    (:func:`knnlab.pipeline.presentation.tradeoff_figures.fastest_within_one_se`), for a grid with
    an approximate algorithm; data_sections : markdown lines of the prediction sets,
    suspicious labels, Shapley values and leaks (:mod:`knnlab.pipeline.presentation.audit_report`).
    """
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
    intervals = uncertainty["intervals"] if uncertainty else {}
    rows = [
        [label] + [_with_interval(metrics[m][key], intervals.get(m, {}).get(key)) for m in MODELS]
        for key, label in HEADLINE
    ]
    if uncertainty:
        wilson = uncertainty["wilson_accuracy"]
        rows.insert(
            1,
            ["Accuracy, Wilson interval"]
            + [_with_interval(metrics[m]["accuracy"], wilson.get(m)) for m in MODELS],
        )
    lines += _table(["", "configured", "tuned", "baseline (most frequent)"], rows)
    lines += [
        "",
        "Fit and predict seconds differ on every run, so they are not in this committed "
        "report: they are in each run's MLflow metrics (`fit_seconds`, `predict_seconds`) and, "
        "after a local run, in the git-ignored `reports/timings/`.",
    ]
    # An exact model has no index options and no seed: only an approximate one shows them.
    shown = {k: v for k, v in model_params.items() if k not in ("index", "random_state")}
    if is_approximate(model_params.get("algorithm")):
        options = index_options(model_params["algorithm"], model_params.get("index"))
        shown |= {"index": options, "seed": model_params["random_state"]}
    configured = ", ".join(f"{k}={v}" for k, v in sorted(shown.items()))
    lines += [
        "",
        f"- **configured**: {configured}",
        f"- **tuned** ({tuned.cv}-fold CV on the train split only, {tuned.n_candidates} "
        f"candidates, by {tuned.scoring}, `tune.select: {tuned.select}`): "
        f"{_params_text(tuned.best_params)}; mean CV {tuned.scoring} "
        f"{_fmt(tuned.best_score)} ± {_fmt(tuned.best_se)} (standard error over folds)",
        *_other_pick(tuned),
        "- **baseline**: always predicts the most frequent class of the train split",
    ]
    if uncertainty:
        lines += _few_errors_note(metrics, uncertainty["n_test"])
        lines += ["", *_significance_section(uncertainty)]
    if (uncertainty and uncertainty.get("vs_exact")) or tradeoff:
        lines += ["", *_approximate_section((uncertainty or {}).get("vs_exact", {}), tradeoff)]
    if data_sections:
        lines += ["", *data_sections]
    if errors:
        lines += ["", "## Why kNN erred: the most confident errors and their neighbours", ""]
        lines += errors
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


def _approximate_section(vs_exact: dict, tradeoff: dict | None) -> list[str]:
    """Each approximate model against its exact twin, and the grid's speed/accuracy pick."""
    lines = ["## Exact or approximate search", ""]
    for name, record in vs_exact.items():
        pair = record["paired"]
        options = ", ".join(f"{k} {v}" for k, v in record["index"].items())
        noise = "a significant difference" if pair["significant"] else "within noise"
        lines.append(
            f"- **{name}**, {record['algorithm']} ({options}): accuracy "
            f"{significance.signed(pair['accuracy_difference'])} "
            f"[{significance.signed(pair['low'])}, {significance.signed(pair['high'])}] "
            f"against the exact search with the same k, p and weights, {noise} (McNemar "
            f"{significance.format_p(pair['mcnemar_p'])}); recall@{record['n_neighbors']} "
            f"{_fmt(record['recall'])}; index {record['index_bytes'] / 2**20:.1f} MiB"
        )
    if vs_exact:
        lines += [
            "",
            "Recall@k: the share of each test row's k true nearest neighbours the index "
            "found. Speeds (queries per second, one query at a time, build seconds) differ "
            "on every run: they are in the evaluate run's MLflow metrics under "
            "`approximate/`.",
        ]
    if tradeoff:
        fewer = tradeoff["exact_distances_per_query"] / tradeoff["distances_per_query"]
        if vs_exact:
            lines.append("")
        lines.append(
            f"Tuning: the fastest candidate whose mean CV score is within one standard error "
            f"of the best exact candidate ({tradeoff['exact_label']}, mean CV "
            f"{_fmt(tradeoff['exact_score'])}; line {_fmt(tradeoff['threshold'])}) is "
            f"**{tradeoff['label']}, k={tradeoff['n_neighbors']}, {tradeoff['weights']}**: "
            f"mean CV {_fmt(tradeoff['score'])} ± {_fmt(tradeoff['se'])}, recall "
            f"{_fmt(tradeoff['recall'])}, {tradeoff['distances_per_query']:,.0f} distances "
            f"computed per query against {tradeoff['exact_distances_per_query']:,.0f} for "
            f"exact search ({fewer:.1f}× fewer). Work is counted, not timed, so this pick is "
            "the same on every machine; the tune run in MLflow has the same figure against "
            "measured queries per second."
        )
    return lines


def _params_text(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(params.items()))


def _other_pick(tuned: TuneSummary) -> list[str]:
    """The rule not selected, so a reviewer sees whether the choice mattered."""
    other = "one_se" if tuned.select == "best" else "best"
    pick = tuned.picks.get(other)
    if pick is None:
        return []
    if pick["params"] == tuned.best_params:
        return [f"  - the {_RULES[other]} picks the same candidate"]
    return [
        f"  - the {_RULES[other]} would pick {_params_text(pick['params'])} (mean CV "
        f"{_fmt(pick['score'])} ± {_fmt(pick['se'])}); the one-SE line is "
        f"{_fmt(tuned.picks['one_se']['threshold'])}"
    ]


_RULES = {
    "best": "highest mean (`tune.select: best`)",
    "one_se": "one-standard-error rule (`tune.select: one_se`: the largest k within one SE "
    "of the best)",
}


# Below this many errors (or right answers) in the test split, a bootstrap interval is too
# narrow: resamples cannot hold more errors than the rows drawn from. Simulated coverage of
# the 95 % BCa interval of accuracy on 450 rows: 88 % with 2.25 errors expected, 96 % with
# 4.5 (benchmarks/results_coverage.txt); Wilson's interval held 94-98 % in both.
FEW_ERRORS = 5


def _few_errors_note(metrics: dict, n_test: int) -> list[str]:
    few = []
    for model in MODELS:
        right = round(metrics[model]["accuracy"] * n_test)
        if min(right, n_test - right) < FEW_ERRORS:
            errors = n_test - right
            few.append(f"{model} ({errors} error{'' if errors == 1 else 's'} of {n_test})")
    if not few:
        return []
    return [
        "",
        f"Too few errors for the bootstrap: {', '.join(few)}. With fewer than {FEW_ERRORS}, "
        "bootstrap intervals are too narrow (88 % coverage in simulation instead of 95 %); "
        "read the Wilson row for accuracy, and take the other intervals as a lower bound on "
        "the uncertainty.",
    ]


def _significance_section(uncertainty: dict) -> list[str]:
    """The paired verdicts between the models, and how the intervals were made."""
    level = f"{uncertainty['confidence']:.0%}"
    alpha_value = 1 - uncertainty["confidence"]
    alpha = f"{alpha_value:.0%}"
    lines = ["## Is the difference real?", ""]
    lines += [f"- {significance.verdict(pair, MODEL_NAMES)}" for pair in uncertainty["paired"]]
    lines += [
        "",
        f"Intervals are {level}: a stratified bootstrap of the {uncertainty['n_test']} test "
        f"rows ({uncertainty['resamples']} resamples, seed {uncertainty['seed']}; "
        "bias-corrected and accelerated), so they show how much each score would move on "
        "another test split of this size. Differences are paired: both models are scored "
        "on the same resamples (percentile intervals), and for accuracy McNemar's exact "
        "test counts the rows only one model gets right. A difference is significant when "
        f"p < {alpha_value:.2g} ({alpha}). Wilson's interval treats the test rows as drawn "
        "at random; the bootstrap keeps each class's count, as the stratified split does, "
        "so a constant baseline's interval has no width (docs/statistics.md).",
    ]
    return lines


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
    """Params that differ between ``base`` and ``current``.

    Each argument: {"params": params.yaml mapping, ...}; returns {"base": revision name,
    "params": [(key, base value, current value)]}.
    """
    params_base, params_now = _flatten("", base["params"]), _flatten("", current["params"])
    params = [
        (key, params_base.get(key, "—"), params_now.get(key, "—"))
        for key in sorted(set(params_base) | set(params_now))
        if params_base.get(key) != params_now.get(key)
    ]
    return {"base": base.get("rev", "base"), "params": params}


_VERDICT_TEXT = {
    significance.NOT_ASSESSED: "not assessed",
    significance.NOISE: "within noise",
}


def _verdict_cell(row: dict, min_effect: dict[str, float]) -> str:
    """▲/▼ only for a change both significant and material (:func:`significance.judge`);
    a significant change under ``min_effect`` is "significant but negligible"."""
    verdict = significance.judge(row, min_effect)
    if verdict in _VERDICT_TEXT:
        return _VERDICT_TEXT[verdict]
    p = "" if row["p"] is None else f", McNemar {significance.format_p(row['p'])}"
    if verdict == significance.NEGLIGIBLE:
        return f"significant but negligible (under {_fmt(min_effect[row['metric']])}{p})"
    return f"**{_arrow(row['change'], True)}** (significant{p})"


def comparability(base: dict, current: dict) -> list[str]:
    """Why the two revisions' metrics cannot be compared, one sentence per reason, or []:
    they must score the same dataset (``data.dataset``; for a file, the same ``data.path``
    and ``data.label_column``; for moons, the same ``data.moons``) with the same label set.
    A different split of the same data is comparable (unpaired)."""
    reasons = []
    data_base, data_now = base["params"].get("data", {}), current["params"].get("data", {})
    name_base = data_base.get("dataset", DEFAULT_DATASET)
    name_now = data_now.get("dataset", DEFAULT_DATASET)
    if name_base != name_now:
        reasons.append(f"the datasets differ: {name_base} at the base, {name_now} here")
    else:
        keys = {FILE_DATASET: ("path", "label_column"), "moons": ("moons",)}.get(name_now, ())
        for key in keys:
            if data_base.get(key) != data_now.get(key):
                reasons.append(
                    f"data.{key} differs: {data_base.get(key)!r} at the base, "
                    f"{data_now.get(key)!r} here (another {name_now} dataset)"
                )
    if base.get("predictions") is not None and current.get("predictions") is not None:
        classes_base = [str(c) for c in base["predictions"][1]]
        classes_now = [str(c) for c in current["predictions"][1]]
        if set(classes_base) != set(classes_now):
            reasons.append(
                f"the label sets differ: {_classes(classes_base)} at the base, "
                f"{_classes(classes_now)} here"
            )
    return reasons


def _classes(classes: list[str]) -> str:
    shown = ", ".join(classes[:6]) + (", …" if len(classes) > 6 else "")
    return f"{len(classes)} classes ({shown})"


def metric_values(base: dict, current: dict) -> list[dict]:
    """Each model's headline metrics at both revisions, {"model", "metric", "base",
    "current"}, for revisions shown side by side without a verdict."""
    return [
        {
            "model": model,
            "metric": metric,
            "base": base["metrics"].get(model, {}).get(metric, math.nan),
            "current": current["metrics"].get(model, {}).get(metric, math.nan),
        }
        for model in MODELS
        for metric, _ in HEADLINE
    ]


def gate_failures(comparison: dict, min_effect: dict[str, float]) -> list[str]:
    """The configured model's headline metrics that are significantly and materially worse
    than at the base, one sentence each (``knnlab report --fail-on worse``)."""
    labels = dict(HEADLINE)
    failures = []
    for row in comparison["rows"]:
        if row["model"] != "configured" or row["metric"] not in labels:
            continue
        if significance.judge(row, min_effect) != significance.WORSE:
            continue
        p = "" if row["p"] is None else f", McNemar {significance.format_p(row['p'])}"
        failures.append(
            f"configured {labels[row['metric']]} is significantly and materially worse: "
            f"{_fmt(row['base'])} -> {_fmt(row['current'])}, "
            f"{significance.signed(row['change'])} [{significance.signed(row['low'])}, "
            f"{significance.signed(row['high'])}]{p}; the smallest change that matters is "
            f"{_fmt(min_effect[row['metric']])} (review.min_effect)"
        )
    return failures


def diff_section(
    diff: dict,
    comparison: dict | None,
    min_effect: dict[str, float],
    not_comparable: list[str] = (),
    values: list[dict] = (),
) -> list[str]:
    """The pull-request section: params changed, then each metric that moved, with the
    change's interval and its verdict (``comparison``:
    :func:`knnlab.pipeline.analysis.significance.compare_revisions`). Revisions that are
    not comparable (``not_comparable``, the reasons) get the reasons and the metrics'
    values (``values``: rows without intervals), and no verdict."""
    lines = [f"## Changes against `{diff['base']}`", ""]
    if diff["params"]:
        lines += _table(
            ["param", "base", "this change"],
            [[f"`{k}`", f"`{a}`", f"`{b}`"] for k, a, b in diff["params"]],
        )
    else:
        lines += ["No params changed."]
    labels = dict(HEADLINE)
    if not_comparable:
        lines += ["", "**Not comparable**: no change is marked better or worse, because"]
        lines += [f"- {reason};" for reason in not_comparable[:-1]]
        lines += [f"- {not_comparable[-1]}.", ""]
        rows = [
            [
                f"{row['model']}: {labels.get(row['metric'], row['metric'])}",
                _fmt(row["base"]),
                _fmt(row["current"]),
            ]
            for row in values
        ]
        return lines + _table(["metric", "base", "this change"], rows)
    lines += ["", f"Metrics, {comparison['reason']}.", ""]
    kinds: dict[float, list[str]] = {}
    for metric, value in min_effect.items():
        kinds.setdefault(value, []).append(labels.get(metric, metric))
    shown = "; ".join(f"{', '.join(names)}: {_fmt(value)}" for value, names in kinds.items())
    lines += [
        f"A change is marked better or worse only when it is significant and at least the "
        f"smallest change that matters (`review.min_effect`: {shown}); a significant change "
        "below that is negligible.",
        "",
    ]
    rows = []
    for row in comparison["rows"]:
        change = row["change"]
        if math.isnan(change) or abs(change) < 5e-5:
            continue
        interval = (
            ""
            if math.isnan(row["low"])
            else f" [{significance.signed(row['low'])}, {significance.signed(row['high'])}]"
        )
        rows.append(
            [
                f"{row['model']}: {labels.get(row['metric'], row['metric'])}",
                _fmt(row["base"]),
                _fmt(row["current"]),
                significance.signed(change) + interval,
                _verdict_cell(row, min_effect),
            ]
        )
    lines += (
        _table(["metric", "base", "this change", "change [interval]", ""], rows)
        if rows
        else ["No metric moved by 0.0001 or more."]
    )
    return lines


def read_revision(rev: str, paths_at_rev: dict[str, str]) -> dict[str, str | None]:
    """The text of each file as committed at ``rev`` (``git show``), None where the file did
    not exist there; {name: path} in, {name: text or None} out. An unknown revision fails."""
    check = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if check.returncode != 0:
        raise ValueError(
            f"cannot read revision {rev!r}: not a commit of this repository "
            f"({check.stderr.strip() or 'git rev-parse found nothing'})"
        )
    found = {}
    for name, path in paths_at_rev.items():
        done = subprocess.run(
            ["git", "show", f"{rev}:{path}"], capture_output=True, text=True, timeout=60
        )
        found[name] = done.stdout if done.returncode == 0 else None
    return found


def revision_state(rev: str, texts: dict[str, str | None]) -> dict:
    """A revision's params, metrics, intervals and predictions, from the file texts of
    :func:`read_revision` (params and metrics are required; intervals and predictions are
    None for revisions made before knnlab recorded them)."""
    where = "in the working tree" if rev == CURRENT else f"at revision {rev!r}"
    for name, path in (("params", "params.yaml"), ("metrics", "reports/metrics.json")):
        if texts.get(name) is None:
            raise ValueError(f"cannot read {path} {where}: the file is not there")
    state = {"rev": rev}
    try:
        state["params"] = read_params_text(texts["params"], f"params.yaml {where}")
    except ValueError as error:  # the reader's one line, said as a failed read
        raise ValueError(f"cannot read {error}") from None
    for name, path, parse in (
        ("metrics", "reports/metrics.json", json.loads),
        ("uncertainty", "reports/uncertainty.json", _json_or_none),
        ("predictions", "reports/plots/predictions.csv", _predictions_or_none),
    ):
        try:
            state[name] = parse(texts.get(name))
        except (ValueError, KeyError, IndexError) as error:
            # A hand-edited or truncated file: say which and where, not a traceback.
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ValueError(
                f"cannot read {path} {where}: {type(error).__name__}: {first_line}".rstrip()
            ) from None
    for name in ("params", "metrics", "uncertainty"):
        if state[name] is not None and not isinstance(state[name], dict):
            raise ValueError(
                f"cannot read {name} {where}: expected a mapping, got {type(state[name]).__name__}"
            )
    _check_numbers(state["metrics"], f"reports/metrics.json {where}")
    return state


def _check_numbers(tree: dict, where: str, prefix: str = "") -> None:
    """Every leaf of a metrics mapping is a number or null (an undefined metric)."""
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            _check_numbers(value, where, f"{name}.")
        elif value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            shown = repr(value)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            raise ValueError(
                f"cannot compare {where}: {name} = {shown} is not a number; metrics files "
                "hold numbers only (was it edited by hand?): re-run `dvc repro evaluate` there"
            )


CURRENT = "this change"  # the working tree's name in the diff


def _json_or_none(text: str | None):
    return None if text is None else json.loads(text)


def _predictions_or_none(text: str | None):
    """(y_true, classes, {model: (y_pred, proba)}) from a predictions table's CSV text."""
    if text is None:
        return None
    import pandas as pd

    from knnlab.pipeline.analysis.evaluation import read_model_predictions
    from knnlab.pipeline.io.files import exact_floats

    frame = pd.read_csv(io.StringIO(text), **exact_floats(pd))
    return read_model_predictions(frame)


def pairable(base: dict, current: dict) -> bool:
    """Both revisions' predictions cover the same rows, labels and classes in order."""
    if base.get("predictions") is None or current.get("predictions") is None:
        return False
    (y_base, classes_base, _), (y_now, classes_now, _) = base["predictions"], current["predictions"]
    return (
        y_base.shape == y_now.shape
        and (y_base == y_now).all()
        and classes_base.shape == classes_now.shape
        and (classes_base == classes_now).all()
    )
