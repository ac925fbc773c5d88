"""Intervals and paired tests on the test split, as the pipeline records them.

evaluate writes :func:`uncertainty` to ``reports/uncertainty.json`` (kept apart from
``metrics.json``, whose point values ``dvc metrics diff`` compares); the report reads it, and
``knnlab report --base`` compares two revisions with :func:`compare_revisions`: paired row by
row when both scored the same test split (same fingerprint), unpaired from each revision's
standard errors otherwise.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from knnlab import stats
from knnlab.pipeline.io import files
from knnlab.pipeline.io.artifacts import MODELS, ArtifactError, metric_name

METHOD = "stratified bootstrap over test rows, BCa intervals"
# (first, second): the verdict says how second compares with first.
PAIRS = (("configured", "tuned"), ("baseline", "configured"), ("baseline", "tuned"))


def test_split_fingerprint(X_test: np.ndarray, y_test: np.ndarray) -> str:
    """SHA-256 of the test rows (n, d) and labels (n,), in order: two revisions with the
    same fingerprint scored the same rows in the same order, so their predictions pair."""
    digest = hashlib.sha256()
    X = np.ascontiguousarray(X_test, dtype=np.float64)
    digest.update(repr(X.shape).encode())
    digest.update(X.tobytes())
    digest.update("\n".join(map(str, np.asarray(y_test).tolist())).encode())
    return digest.hexdigest()


def _interval(resampled: stats.Resampled, confidence: float) -> dict[str, float]:
    low, high = resampled.interval(confidence)
    return {"low": low, "high": high, "se": resampled.standard_error()}


def uncertainty(
    y_true: np.ndarray,
    predictions: dict[str, tuple],
    confidence: float,
    resamples: int,
    seed: int,
    fingerprint: str,
    pairs: tuple[tuple[str, str], ...] = PAIRS,
) -> dict:
    """The record of ``reports/uncertainty.json`` (pairs: which models to compare, first
    against second).

    y_true : (n,) test labels; predictions : {model: (y_pred (n,), proba (n, n_classes),
    classes)}.
    Per model and metric the bootstrap interval and standard error; Wilson's interval for
    accuracy; per pair of :data:`PAIRS` the paired difference of every metric with its
    interval, and for accuracy McNemar's exact test.
    """
    plan = stats.Bootstrap(np.asarray(y_true), resamples, seed)
    distribution = stats.bootstrap_distribution(plan, predictions)
    n = len(y_true)
    record = {
        "method": METHOD,
        "confidence": confidence,
        "resamples": resamples,
        "seed": seed,
        "n_test": n,
        "test_split": fingerprint,
        "intervals": {
            model: {m: _interval(v, confidence) for m, v in distribution[model].items()}
            for model in predictions
        },
        "wilson_accuracy": {},
        "paired": [],
    }
    correct = {
        model: np.asarray(y_pred) == np.asarray(y_true)
        for model, (y_pred, _, _) in predictions.items()
    }
    for model in predictions:
        low, high = stats.wilson_interval(int(correct[model].sum()), n, confidence)
        record["wilson_accuracy"][model] = {"low": low, "high": high}
    for first, second in pairs:
        if first not in predictions or second not in predictions:
            continue
        comparison = stats.paired_accuracy(
            first,
            second,
            correct[first],
            correct[second],
            distribution[second]["accuracy"] - distribution[first]["accuracy"],
            confidence,
        )
        differences = {}
        for metric in distribution[first]:
            change = distribution[second][metric] - distribution[first][metric]
            low, high = change.interval(confidence)
            differences[metric] = {"difference": change.point, "low": low, "high": high}
        record["paired"].append(
            {
                "first": first,
                "second": second,
                "accuracy_difference": comparison.difference,
                "low": comparison.low,
                "high": comparison.high,
                "only_first_right": comparison.only_first_right,
                "only_second_right": comparison.only_second_right,
                "mcnemar_p": comparison.p_value,
                "significant": comparison.significant(1.0 - confidence),
                "differences": differences,
            }
        )
    return record


# What the report reads from an uncertainty record, checked before it is read.
RECORD_KEYS = (
    "confidence",
    "resamples",
    "seed",
    "n_test",
    "intervals",
    "wilson_accuracy",
    "paired",
)


def read_uncertainty(path) -> dict:
    """``reports/uncertainty.json`` as evaluate wrote it, checked: a missing or mangled
    file stops the reader with the file's name and what to run."""
    try:
        record = files.read_json(path)
    except (OSError, ValueError) as error:
        raise ArtifactError(
            f"{path}: cannot be read ({type(error).__name__}); re-run `dvc repro evaluate`"
        ) from None
    missing = [key for key in RECORD_KEYS if not isinstance(record, dict) or key not in record]
    if missing or sorted(record["intervals"]) != sorted(MODELS):
        what = f"missing {', '.join(missing)}" if missing else "not one entry per model"
        raise ArtifactError(f"{path}: {what}; re-run `dvc repro evaluate`")
    return record


def mlflow_metrics(record: dict) -> dict[str, float]:
    """The evaluate run's interval metrics, beside each score in its section:
    ``test/accuracy_ci_low`` / ``_ci_high`` for the configured model, ``tuned/accuracy_ci_low``
    etc. for the others (:func:`artifacts.metric_name`); per pair
    ``paired/tuned_vs_configured_accuracy_difference`` with its interval and ``..._p_value``."""
    logged = {}
    for model, by_metric in record["intervals"].items():
        for metric, interval in by_metric.items():
            logged[metric_name(model, f"{metric}_ci_low")] = interval["low"]
            logged[metric_name(model, f"{metric}_ci_high")] = interval["high"]
    for pair in record["paired"]:
        name = f"paired/{pair['second']}_vs_{pair['first']}_accuracy"
        logged[f"{name}_difference"] = pair["accuracy_difference"]
        logged[f"{name}_difference_ci_low"] = pair["low"]
        logged[f"{name}_difference_ci_high"] = pair["high"]
        logged[f"{name}_p_value"] = pair["mcnemar_p"]
    return {k: v for k, v in logged.items() if not math.isnan(v)}


def format_p(p: float) -> str:
    """McNemar's p for a sentence: 'p = 1.0', 'p = 0.031', 'p < 0.0001'."""
    if p < 1e-4:
        return "p < 0.0001"
    if p >= 0.995:
        return "p = 1.0"
    return f"p = {p:.2g}" if p < 0.1 else f"p = {p:.2f}"


def signed(value: float, digits: int = 4) -> str:
    """+0.0067 / −0.0067 (a true minus sign, as typeset), with more digits where
    ``digits`` would print a non-zero value as zero: −0.00003, never −0.0000 (an interval's
    upper bound of −0.0000 reads as touching zero)."""
    if math.isnan(value):
        return "n/a"
    if value != 0 and round(abs(value), digits) == 0:
        digits = min(-math.floor(math.log10(abs(value))), 12)  # its first significant digit
    text = f"{value:+.{digits}f}"
    return text.replace("-", "\u2212")


def _rows(count: int) -> str:
    return f"{count} row" if count == 1 else f"{count} rows"


def verdict(pair: dict, names: dict[str, str]) -> str:
    """One sentence: "tuned is not significantly better than configured: +0.0000
    [−0.0067, +0.0067], McNemar p = 1.0 (0 test rows right by one model only)"."""
    first = names.get(pair["first"], pair["first"])
    second = names.get(pair["second"], pair["second"])
    difference = pair["accuracy_difference"]
    direction = "better" if difference >= 0 else "worse"
    status = "significantly" if pair["significant"] else "not significantly"
    discordant = pair["only_first_right"] + pair["only_second_right"]
    return (
        f"{second} is {status} {direction} than {first} in accuracy: {signed(difference)} "
        f"[{signed(pair['low'])}, {signed(pair['high'])}], McNemar {format_p(pair['mcnemar_p'])} "
        f"({_rows(pair['only_second_right'])} right only by {second}, "
        f"{pair['only_first_right']} only by {first}; {discordant} discordant)"
    )


# How a revision's change in a metric reads to a reviewer (``judge``).
BETTER, WORSE, NEGLIGIBLE, NOISE, NOT_ASSESSED = (
    "better", "worse", "negligible", "noise", "not assessed"
)  # fmt: skip


def judge(row: dict, min_effect: dict[str, float]) -> str:
    """A row of :func:`compare_revisions` as a reviewer's verdict: :data:`BETTER` or
    :data:`WORSE` only when the change is both significant and at least ``min_effect`` of
    its metric (params ``review.min_effect``; the point estimate, in absolute value, every
    headline metric higher-is-better); :data:`NEGLIGIBLE` when significant but smaller;
    :data:`NOISE` when not significant; :data:`NOT_ASSESSED` without intervals."""
    if row["significant"] is None:
        return NOT_ASSESSED
    if not row["significant"]:
        return NOISE
    if abs(row["change"]) < min_effect.get(row["metric"], 0.0):
        return NEGLIGIBLE
    return BETTER if row["change"] > 0 else WORSE


def champion_decision(
    champion_version: str | None, pair: dict | None, reason: str | None
) -> tuple[bool, str]:
    """Whether a newly registered model takes the alias ``champion``, and the sentence that
    says why: the first version does; a later one only when the paired test against the
    champion's predictions on the same test split (``pair``: champion first, the new model
    second) finds it significantly better in accuracy. ``pair`` None: not compared,
    ``reason`` says why."""
    if champion_version is None:
        return True, "the first version: champion until a better one comes"
    if pair is None:
        return False, f"not compared with champion version {champion_version}: {reason}"
    names = {"champion": f"champion v{champion_version}", "configured": "this model"}
    crown = bool(pair["significant"]) and pair["accuracy_difference"] > 0
    return crown, verdict(pair, names)


def compare_revisions(
    base: dict,
    current: dict,
    confidence: float,
    resamples: int,
    seed: int,
    metrics: tuple[str, ...] = stats.METRICS,
) -> dict:
    """Each model's change in each metric from ``base`` to ``current``, and whether it is
    significant at 1 - ``confidence``.

    Each revision: {"metrics": metrics.json, "uncertainty": uncertainty.json or None,
    "predictions": (y_true (n,), classes, {model: (y_pred, proba)}) or None}. Paired when both
    have the same test-split fingerprint and predictions: the same resamples score both
    revisions' predictions, a change is significant when its paired interval excludes 0
    (accuracy: when McNemar's exact p < 1 - confidence). Otherwise unpaired: the change over
    sqrt(se_base^2 + se_current^2) against the normal quantile, from each revision's
    bootstrap standard errors; "not assessed" where either has none.

    Returns {"mode": "paired" | "unpaired" | "none", "reason": str, "rows": [{"model",
    "metric", "base", "current", "change", "low", "high", "p", "significant"}]}.
    """
    alpha = 1.0 - confidence
    unc_base, unc_now = base.get("uncertainty"), current.get("uncertainty")
    same_split = (
        unc_base is not None
        and unc_now is not None
        and unc_base.get("test_split") == unc_now.get("test_split")
    )
    paired = same_split and base.get("predictions") is not None and current.get("predictions")
    rows = []
    if paired:
        y_true, classes, now_models = current["predictions"]
        _, _, base_models = base["predictions"]
        both = [m for m in MODELS if m in now_models and m in base_models]
        plan = stats.Bootstrap(np.asarray(y_true), resamples, seed)
        distribution = stats.bootstrap_distribution(
            plan,
            {
                **{f"base:{m}": (*base_models[m], classes) for m in both},
                **{f"now:{m}": (*now_models[m], classes) for m in both},
            },
        )
        for model in both:
            for metric in metrics:
                before = base["metrics"].get(model, {}).get(metric, float("nan"))
                after = current["metrics"].get(model, {}).get(metric, float("nan"))
                change = (
                    distribution[f"now:{model}"][metric] - distribution[f"base:{model}"][metric]
                )
                if metric == "accuracy":  # the same test as between models: McNemar's
                    mcnemar = stats.paired_accuracy(
                        "base",
                        "now",
                        np.asarray(base_models[model][0]) == y_true,
                        np.asarray(now_models[model][0]) == y_true,
                        change,
                        confidence,
                    )
                    low, high, p = mcnemar.low, mcnemar.high, mcnemar.p_value
                    significant = mcnemar.significant(alpha)
                else:
                    (low, high), p = change.interval(confidence), None
                    significant = bool(low > 0 or high < 0)
                rows.append(_row(model, metric, before, after, low, high, p, significant))
        reason = (
            f"paired: both revisions scored the same {len(y_true)} test rows (same test-split "
            f"fingerprint), so each change is tested row by row ({resamples} paired bootstrap "
            "resamples; accuracy by McNemar's exact test)"
        )
        return {"mode": "paired", "reason": reason, "rows": rows}
    if unc_base is None or unc_now is None:
        missing = "the base revision" if unc_base is None else "this revision"
        reason = (
            f"not assessed: {missing} has no reports/uncertainty.json (made before knnlab "
            "recorded intervals); re-run `dvc repro` there to compare with intervals"
        )
        mode = "none"
    else:
        reason = (
            "unpaired: the test splits differ (data or split params changed), so the rows "
            "cannot be paired; each change is compared with both revisions' bootstrap "
            "standard errors"
        )
        mode = "unpaired"
    z = stats.normal_quantile(confidence)
    for model in MODELS:
        for metric in metrics:
            before = base["metrics"].get(model, {}).get(metric, float("nan"))
            after = current["metrics"].get(model, {}).get(metric, float("nan"))
            low = high = float("nan")
            significant = None
            if mode == "unpaired":
                se_base = _se(unc_base, model, metric)
                se_now = _se(unc_now, model, metric)
                spread = math.hypot(se_base, se_now)
                if not math.isnan(spread):
                    low, high = after - before - z * spread, after - before + z * spread
                    significant = bool(low > 0 or high < 0)
            rows.append(_row(model, metric, before, after, low, high, None, significant))
    return {"mode": mode, "reason": reason, "rows": rows}


def _se(record: dict, model: str, metric: str) -> float:
    return float(record.get("intervals", {}).get(model, {}).get(metric, {}).get("se", math.nan))


def _row(model, metric, before, after, low, high, p, significant) -> dict:
    return {
        "model": model,
        "metric": metric,
        "base": before,
        "current": after,
        "change": after - before,
        "low": low,
        "high": high,
        "p": p,
        "significant": significant,
    }
