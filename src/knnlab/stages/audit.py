"""audit: what the configured model's neighbours say about the data ->
``reports/audit/``: the training rows whose out-of-fold neighbours vote against their label
(``suspicious_labels.csv``, from the votes train kept), each training row's exact
kNN-Shapley value for the test split (``shapley.csv``), and what dropping the 1 % most
harmful rows does to cross-validated accuracy (``audit.json``). The test split's labels
value the training rows here; nothing this stage writes feeds a model."""

from __future__ import annotations

import time

from knnlab.pipeline.analysis import audit, votes
from knnlab.pipeline.data.dataset import read_features_and_labels
from knnlab.pipeline.io import files, paths
from knnlab.pipeline.io.artifacts import SplitInfo
from knnlab.pipeline.io.model_io import read_model_params
from knnlab.pipeline.io.params import Params


def run(params: Params) -> None:
    del params  # every input is a file: the model's params come from the model file
    split = SplitInfo.read(paths.SPLIT_META)
    X_train, y_train = read_features_and_labels(paths.TRAIN_SPLIT)
    X_test, y_test = read_features_and_labels(paths.TEST_SPLIT)
    model_params = read_model_params(paths.MODEL_FILE)
    oof = votes.read_votes_table(files.read_parquet(paths.OUT_OF_FOLD_VOTES), y_train)
    start = time.perf_counter()
    suspicious, counts = audit.suspicious_labels(oof, split.display_name)
    values = audit.shapley_values(model_params, X_train, y_train, X_test, y_test)
    shapley = audit.shapley_table(values, y_train, split.display_name)
    removal = audit.removal_effect(model_params, X_train, y_train, oof, values)
    seconds = time.perf_counter() - start
    summary = {
        "suspicious": {**counts, "n_neighbors": oof.neighbors.shape[1]},
        "shapley": audit.shapley_summary(values, len(y_test), oof.neighbors.shape[1], shapley),
        "removal": removal,
    }
    with files.staged_outputs() as outputs:
        folder = outputs.staged_dir(paths.AUDIT_DIR)
        files.write_json(folder / paths.AUDIT_SUMMARY.name, summary)
        files.write_csv(folder / paths.SUSPICIOUS_LABELS.name, suspicious)
        files.write_csv(folder / paths.SHAPLEY_VALUES.name, shapley)
    files.write_json(paths.AUDIT_TIMINGS, {"audit_seconds": seconds})
    print(
        f"audit: {counts['most_against']} of {counts['rows']} training rows have most of their "
        f"out-of-fold neighbours against their label -> {paths.SUSPICIOUS_LABELS}"
    )
    print(
        f"audit: {summary['shapley']['harmful_rows']} training rows lower the test split's "
        f"kNN utility (Shapley < 0) -> {paths.SHAPLEY_VALUES}; without the "
        f"{removal['removed']} most harmful, CV accuracy on the rest "
        f"{removal['kept_accuracy_before']:.4f} -> {removal['kept_accuracy_after']:.4f} "
        f"({removal['fixed']} rows fixed, {removal['broken']} broken)"
    )
