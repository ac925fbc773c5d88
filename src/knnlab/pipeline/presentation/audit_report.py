"""The report's sections on what the neighbours say about the data: prediction sets,
suspicious labels, training rows that help or hurt, leaks across the split. Each takes the
JSON and CSV records the stages wrote and returns markdown lines."""

from __future__ import annotations

import pandas as pd

from knnlab.pipeline.analysis.significance import format_p, signed

ROWS_LISTED = 10


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + [
        "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows
    ]


def _share(value: float) -> str:
    return f"{100 * value:.1f} %"


def prediction_sets_section(record: dict) -> list[str]:
    """``reports/conformal.json`` (:func:`knnlab.pipeline.analysis.audit.prediction_set_record`)."""
    target, coverage = record["target"], record["coverage"]
    confidence = round(100 * record["confidence"])
    verdict = (
        "at or above the target, as promised"
        if record["coverage_high"] >= target
        else "below the target beyond what the test split's size explains"
    )
    needed = 1 - record["threshold"]
    unanimous = " (every neighbour: at this coverage the sets abstain where they disagree)"
    covered = {k: v for k, v in record["per_class"].items() if v["coverage"] is not None}
    lowest = min(covered, key=lambda k: covered[k]["coverage"])
    lines = [
        "## Prediction sets",
        "",
        f"Each test row gets the set of classes whose vote is typical of a true label: "
        f"calibrated on the {record['calibration_rows']:,} training rows' out-of-fold votes "
        f"(never on test rows) to hold the true class of {target:g} of rows "
        f"(`conformal.coverage`), a class is in the set when its vote is at least "
        f"{needed:.3g}{unanimous if needed >= 1 else ''}.",
        "",
        f"On the {record['n']:,} test rows the sets hold the true class of "
        f"**{coverage:.4f}** [{record['coverage_low']:.4f}, {record['coverage_high']:.4f}] "
        f"({confidence} % Wilson interval): {verdict}. Mean set size "
        f"**{record['mean_set_size']:.2f}** classes; {_share(record['singleton_share'])} of "
        f"sets hold one class, {_share(record['empty_share'])} none (no class's vote "
        "reaches the threshold: the model abstains). The promise is over all rows, not per "
        f"class: the lowest here is {lowest}, {covered[lowest]['coverage']:.3f}. "
        '`knnlab predict` and the served model (`params={"output": "set"}`) return the set.',
        "",
    ]
    rows = [
        [name, str(entry["n"]), "–" if entry["coverage"] is None else f"{entry['coverage']:.3f}",
         "–" if entry["mean_set_size"] is None else f"{entry['mean_set_size']:.2f}"]
        for name, entry in record["per_class"].items()
    ]  # fmt: skip
    return lines + _table(["class", "test rows", "coverage", "mean set size"], rows)


def suspicious_section(summary: dict, table: pd.DataFrame, drawn: bool) -> list[str]:
    """``reports/audit/audit.json``'s ``suspicious`` record and ``suspicious_labels.csv``."""
    counts = summary["suspicious"]
    k = counts["n_neighbors"]
    lines = [
        "## Suspicious labels",
        "",
        f"A training row's score is the share of its {k} out-of-fold neighbours' vote (from "
        f"the folds that did not hold it, weighted as the model weighs them) against its "
        f"label. **{counts['most_against']:,}** of the {counts['rows']:,} training rows have "
        f"most of the vote against their label, **{counts['all_against']:,}** all of it: "
        "mislabelled, or where two classes overlap. The first "
        f"{min(ROWS_LISTED, len(table))} (all {len(table)} in "
        "`reports/audit/suspicious_labels.csv`):",
        "",
    ]
    rows = [
        [
            str(r.row),
            str(r.label),
            str(r.suggested),
            f"{r.suggested_vote:.2f}",
            f"{r.suspicion:.2f}",
        ]
        for r in table.head(ROWS_LISTED).itertuples()
    ]
    lines += _table(["train row", "label", "neighbours say", "their vote", "score"], rows)
    if drawn:
        lines += ["", "![Suspicious labels and their neighbours](figures/suspicious_labels.png)"]
    return lines


def shapley_section(summary: dict) -> list[str]:
    """``reports/audit/audit.json``'s ``shapley`` and ``removal`` records."""
    shapley, removal = summary["shapley"], summary["removal"]
    lines = [
        "## Training rows that help or hurt",
        "",
        f"Each training row's exact kNN-Shapley value (Jia et al., VLDB 2019) for the "
        f"{shapley['n_test']:,} test rows, k = {shapley['n_neighbors']}: its average "
        "contribution to the share of a test row's k nearest training rows that carry the "
        f"right label, over every order of adding rows. **{shapley['harmful_rows']:,}** rows "
        f"lower it, {shapley['helpful_rows']:,} raise it; the values sum to "
        f"{shapley['total']:.4f}, that share on the whole train split. All values: "
        "`reports/audit/shapley.csv`, most harmful first.",
        "",
    ]
    rows = [[str(r["row"]), str(r["label"]), f"{r['value']:.5f}"] for r in shapley["most_harmful"]]
    lines += _table(["train row", "label", "value"], rows)
    change = removal["kept_accuracy_after"] - removal["kept_accuracy_before"]
    lines += [
        "",
        f"Without the {removal['removed']:,} most harmful rows ({100 * removal['share']:g} %; "
        f"{removal['removed_label_disagrees']} of them have most of their neighbours against "
        "their label), cross-validated accuracy on the other training rows, same folds, goes "
        f"from {removal['kept_accuracy_before']:.4f} to {removal['kept_accuracy_after']:.4f} "
        f"({signed(change)}): {removal['fixed']:,} rows turn right, {removal['broken']:,} wrong, "
        f"McNemar {format_p(removal['p_value'])}. The values use the test split's labels: "
        "they audit the data; the removal is judged on the train split's folds, never on "
        "the test split.",
    ]
    return lines


def leaks_section(leaks: dict) -> list[str]:
    """``data/split/leaks.json`` (:func:`knnlab.pipeline.data.leaks.find_leaks`)."""
    exact, near = leaks["exact_duplicates"], leaks["near_duplicates"]
    lines = [
        "## Leaks across the split",
        "",
        f"**{exact}** test rows equal a training row in every feature and **{near}** more lie "
        f"within {leaks['near_duplicate_threshold']:.3g} of one (Euclidean, raw features: "
        f"`split.near_duplicate` = {leaks['near_duplicate_ratio']:g} of the test rows' median "
        f"distance to their nearest training row, {leaks['median_nearest_distance']:.3g}). "
        f"The closest pair lies {leaks['smallest_nearest_distance']:.3g} apart.",
    ]
    if leaks["deduplicate"]:
        lines += [
            "",
            f"`split.deduplicate: true` moved {leaks['moved_to_train']} test rows to the train "
            "split (these counts are from before the move); no test row is left within the "
            "threshold of a training row.",
        ]
    elif exact + near:
        lines += [
            "",
            "A model scores these test rows by remembering them: `split.deduplicate: true` "
            "moves them to the train split.",
        ]
    if leaks["closest_pairs"]:
        rows = [
            [str(p["test_row"]), str(p["train_row"]), f"{p['distance']:.3g}"]
            for p in leaks["closest_pairs"]
        ]
        lines += ["", *_table(["test row", "train row", "distance"], rows)]
    return lines
