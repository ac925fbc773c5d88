"""plot: figures into ``reports/figures/``, also attached to the evaluate run in MLflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from knnlab import figures, io, paths, tracking
from knnlab.metrics import confusion_matrix


def run() -> None:
    predictions = io.read_csv(paths.PREDICTIONS_PLOT)
    cv_results = io.read_csv(paths.CV_RESULTS)
    tuned = io.read_json(paths.BEST_PARAMS)
    meta = io.read_json(paths.SPLIT_META)

    labels = np.union1d(predictions["actual"], predictions["predicted"])
    cm = confusion_matrix(predictions["actual"], predictions["predicted"], labels=labels)
    names = [meta["class_names"].get(str(label), str(label)) for label in labels]
    written: list[Path] = []
    for name, fig in (
        (
            "confusion_matrix.png",
            figures.confusion_matrix_figure(
                cm, names, f"Confusion matrix: configured model on the {meta['name']} test split"
            ),
        ),
        (
            "cv_score_vs_k.png",
            figures.cv_score_figure(cv_results, tuned["scoring"], tuned["best_params"]),
        ),
    ):
        figures.save(fig, paths.FIGURES_DIR / name)
        written.append(paths.FIGURES_DIR / name)
    tracking.log_artifacts_to(io.read_json(paths.EVALUATE_RUN), written, "figures")
    print(f"plot: {len(written)} figures -> {paths.FIGURES_DIR}")
