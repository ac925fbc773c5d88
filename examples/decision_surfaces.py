"""2-D decision surfaces of kNN (scikit-learn's moons and iris examples), with knnlab.

Reproduces the two classic pictures: ``make_moons(noise=0.3, random_state=0)`` (from the
"classifier comparison" example) and iris on sepal length and width (from "Nearest
Neighbors Classification"), each with k = 15 (uniform votes for moons, distance weights for
iris), trained on a split and drawn as a probability surface over the plane.

What it does better: both problems are fitted on a stratified, seeded train split and
scored on the held-out rest (the iris example fits all 150 flowers and reports no score, so
an overfitting surface looks as good as any); each figure marks train and test points
apart and shows the test accuracy; moons uses 500 points by default (``--n-samples 100``
is the tutorial's size, whose few test points make a noisy score); ``--scale standard``
fits the scaler on the training rows only, inside the model. ``--mlflow`` records both.

Run (from the repository root)::

    .venv/bin/python examples/decision_surfaces.py [--out DIR] [--mlflow]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sklearn.model_selection import train_test_split

from knnlab import KNNClassifier, metrics
from knnlab.pipeline.data.dataset import features_and_labels, select_features
from knnlab.pipeline.data.embedded import load_iris, load_moons
from knnlab.pipeline.io.params import MlflowParams
from knnlab.pipeline.presentation import figure_style, figures
from knnlab.tracking.runs import stage_run

DEFAULT_OUT = Path(__file__).resolve().parent / "out"
SEPAL = ("sepal length (cm)", "sepal width (cm)")
WEIGHTS = {"moons": "uniform", "iris": "distance"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-neighbors", type=int, default=15, help="k (default: 15)")
    parser.add_argument("--n-samples", type=int, default=500, help="moons points")
    parser.add_argument("--noise", type=float, default=0.3, help="moons noise")
    parser.add_argument("--test-size", type=float, default=0.25, help="held-out fraction")
    parser.add_argument("--seed", type=int, default=42, help="split random_state")
    parser.add_argument("--scale", choices=("none", "standard", "minmax"), default="none")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for figures")
    parser.add_argument("--mlflow", action="store_true", help="log to MLflow (knnlab-examples)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    datasets = {
        "moons": load_moons(args.n_samples, args.noise, seed=0),
        "iris": select_features(load_iris(), SEPAL),
    }
    results, params, written = {}, {}, []
    for name, dataset in datasets.items():
        X, y = features_and_labels(dataset.frame)  # (n, 2), (n,)
        X_train, X_test, y_train, y_test = train_test_split(
            X, y, test_size=args.test_size, random_state=args.seed, stratify=y
        )
        model = KNNClassifier(args.n_neighbors, weights=WEIGHTS[name], scale=args.scale)
        model.fit(X_train, y_train)
        accuracy = metrics.accuracy_score(y_test, model.predict(X_test))
        fig = figures.probability_surface_figure(
            model,
            {"train": (X_train, y_train), "test": (X_test, y_test)},
            dataset.feature_columns,
            dataset.class_names,
        )
        fig.axes[0].set_title(f"{name}: {fig.axes[0].get_title()}, test accuracy {accuracy:.3f}")
        path = args.out / f"{name}_surface.png"
        figure_style.save(fig, path)
        written.append(path)
        results[f"{name}_accuracy"] = accuracy
        params.update({f"{name}_n_train": len(X_train), f"{name}_weights": WEIGHTS[name]})
        print(
            f"{name} ({', '.join(dataset.feature_columns)}): k={args.n_neighbors} "
            f"{WEIGHTS[name]}, {len(X_train)} train / {len(X_test)} test, "
            f"test accuracy {accuracy:.4f} -> {path}"
        )
    results["figures"] = [str(p) for p in written]

    if args.mlflow:
        config = MlflowParams(experiment="knnlab-examples", tracking_uri=None)
        with stage_run(config, "examples/decision_surfaces", "decision surfaces") as run:
            run.log(
                params={**params, **{k: v for k, v in vars(args).items() if k != "out"}},
                metrics={k: v for k, v in results.items() if k.endswith("_accuracy")},
            )
            for path in written:
                run.log_artifact(path, "figures")
        print(f"logged to MLflow run {run.record.run_id} (experiment knnlab-examples)")
    return results


if __name__ == "__main__":
    main()
