"""The "digits: my first AI project" tutorial, with knnlab.

Reproduces the tutorial's steps on scikit-learn's digits: ``train_test_split(test_size=0.2,
random_state=1337)``, ``KNNClassifier(n_neighbors=20, algorithm="kd_tree", p=2)``, its
accuracy, saving and loading the model, and a grid search over n_neighbors 2..18 step 2
and p 1..3.

What it does better: the model is saved in knnlab's ``.npz`` format (plain arrays and a
JSON header, loaded with ``allow_pickle=False`` and a SHA-256 check) instead of pickle,
which runs code on load, and the loaded model is checked to predict exactly as the saved
one. The tutorial tuned on the test split, so its "best" accuracy was optimistic: here the
grid search cross-validates on the training split only and the chosen model is scored
once, on a test split it never saw. ``--mlflow`` records the run.

Run (from the repository root)::

    .venv/bin/python examples/digits_first_project.py [--out DIR] [--mlflow]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

from knnlab import KNNClassifier, metrics
from knnlab.model_selection import grid_search_cv
from knnlab.pipeline.data.dataset import features_and_labels
from knnlab.pipeline.data.embedded import load_digits
from knnlab.pipeline.io.model_io import load_model, save_model
from knnlab.pipeline.io.params import MlflowParams
from knnlab.tracking.runs import stage_run

DEFAULT_OUT = Path(__file__).resolve().parent / "out"
GRID = {"n_neighbors": list(range(2, 19, 2)), "p": [1, 2, 3]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1337, help="train_test_split random_state")
    parser.add_argument("--cv", type=int, default=5, help="folds of the grid search")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the model")
    parser.add_argument("--mlflow", action="store_true", help="log to MLflow (knnlab-examples)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    X, y = features_and_labels(load_digits().frame)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=args.seed)
    model = KNNClassifier(n_neighbors=20, algorithm="kd_tree", p=2).fit(X_train, y_train)
    accuracy = metrics.accuracy_score(y_test, model.predict(X_test))

    # Save and load without pickle; the loaded model must give the very same answers.
    model_file = args.out / "digits_first_project.npz"
    save_model(model_file, model, extra={"dataset": "digits", "image_shape": [8, 8]})
    loaded = load_model(model_file)
    loaded_identical = bool(
        np.array_equal(loaded.predict(X_test), model.predict(X_test))
        and np.array_equal(loaded.predict_proba(X_test), model.predict_proba(X_test))
    )
    loaded_accuracy = metrics.accuracy_score(y_test, loaded.predict(X_test))

    # Tune on the training split only (5-fold CV), then score the winner once on the test.
    search = grid_search_cv(
        X_train, y_train, GRID, cv=args.cv, seed=0, scoring=["accuracy"], refit=True
    )
    tuned_test_accuracy = metrics.accuracy_score(y_test, search.best_estimator.predict(X_test))
    # For contrast only: the best test accuracy over the grid, what tuning on the test split
    # would claim. It is optimistic, and no longer an estimate of anything.
    leaky = max(
        KNNClassifier(**c).fit(X_train, y_train).score(X_test, y_test)
        for c in search.cv_results["params"]
    )

    print(f"digits: {len(X_train)} train / {len(X_test)} test rows (random_state {args.seed})")
    print(f"KNNClassifier(n_neighbors=20, algorithm='kd_tree', p=2): accuracy {accuracy:.4f}")
    print(f"saved to {model_file} (no pickle); loaded model identical: {loaded_identical}")
    print(
        f"grid search on the train split ({len(search.cv_results)} candidates, {args.cv}-fold): "
        f"best {search.best_params} with CV accuracy {search.best_score:.4f}"
    )
    print(f"tuned model on the untouched test split: accuracy {tuned_test_accuracy:.4f}")
    print(f"(picking the grid point by its test accuracy would have claimed {leaky:.4f})")
    results = {
        "accuracy": accuracy,
        "loaded_accuracy": loaded_accuracy,
        "loaded_identical": loaded_identical,
        "best_params": search.best_params,
        "best_cv_accuracy": search.best_score,
        "tuned_test_accuracy": tuned_test_accuracy,
        "leaky_best_test_accuracy": leaky,
    }

    if args.mlflow:
        config = MlflowParams(experiment="knnlab-examples", tracking_uri=None)
        with stage_run(config, "examples/digits_first_project", "digits first project") as run:
            run.log(
                params={
                    "dataset": "digits",
                    "seed": args.seed,
                    "test_size": 0.2,
                    **model.get_params(),
                    **{f"tuned_{key}": value for key, value in search.best_params.items()},
                },
                metrics={k: v for k, v in results.items() if isinstance(v, float)},
            )
            run.log_artifact(model_file, "model")
        print(f"logged to MLflow run {run.record.run_id} (experiment knnlab-examples)")
    return results


if __name__ == "__main__":
    main()
