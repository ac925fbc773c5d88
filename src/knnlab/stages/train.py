"""train: fit the configured model on the train split -> ``models/model.npz`` (the fit's
seconds, an approximate index's build, to the git-ignored ``reports/timings/train.json``),
and its out-of-fold votes on the train split -> ``models/out_of_fold.parquet``, which
calibrate the model's prediction sets (the threshold goes into the model file).
The test split is read only for the scale of ``knnlab predict``'s unusual flag: how far its
rows lie from their neighbours (:func:`~knnlab.pipeline.analysis.training.model_card`)."""

from __future__ import annotations

import time

from knnlab import conformal
from knnlab.pipeline.analysis.training import build_model, model_card, write_build_seconds
from knnlab.pipeline.analysis.votes import out_of_fold_votes, votes_table
from knnlab.pipeline.data.dataset import read_features_and_labels
from knnlab.pipeline.io import files, paths
from knnlab.pipeline.io.artifacts import SplitInfo
from knnlab.pipeline.io.model_io import save_model
from knnlab.pipeline.io.params import Params


def run(params: Params) -> None:
    split = SplitInfo.read(paths.SPLIT_META)
    X, y = read_features_and_labels(paths.TRAIN_SPLIT)
    start = time.perf_counter()
    model = build_model(params.model, len(X))
    model.fit(X, y)
    seconds = time.perf_counter() - start
    # Prediction sets are calibrated on rows each fold model never saw, never on test rows.
    votes = out_of_fold_votes(model.get_params(), X, y)
    coverage = params.conformal.coverage
    threshold = conformal.calibrate(votes.proba, votes.y_code, coverage)
    # The test split gives the unusual flag its scale (how far held-out rows lie), never
    # the model its fit.
    X_test, _ = read_features_and_labels(paths.TEST_SPLIT)
    card = model_card(split, model, X, X_test, (coverage, threshold, len(y)))
    with files.staged_outputs() as outputs:
        files.write_parquet(outputs.staged(paths.OUT_OF_FOLD_VOTES), votes_table(votes))
        save_model(outputs.staged(paths.MODEL_FILE), model, extra=card.to_dict())
    write_build_seconds(paths.TRAIN_TIMINGS, paths.MODEL_FILE, seconds)
    print(f"train: {model!r} ({model.algorithm_}) on {len(X)} rows -> {paths.MODEL_FILE}")
    print(
        f"train: prediction sets at coverage {coverage:g}: a class is in the set when its "
        f"vote is at least {1 - threshold:.4g} (calibrated on {len(y)} out-of-fold rows)"
    )
