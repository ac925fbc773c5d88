"""Predictions of a saved model for ``knnlab predict``: labels, class probabilities and how
unusual each query is (its mean distance to its neighbours against the training set's 99th
percentile, stored in the model file at training time)."""

from __future__ import annotations

import json

import numpy as np


class SavedModel:
    """A saved model ready to answer queries. Brute-force models (what ``auto`` picks for
    images) answer from the file's arrays with knnlab's search and voting, exactly as
    :class:`~knnlab.estimators.KNNClassifier` does, without importing scikit-learn (1.6 s of
    the command's time); a tree model is rebuilt as the estimator, an approximate one
    loaded with its stored index.

    header, arrays : as :func:`knnlab.pipeline.io.model_io.read_model` returns them.
    """

    def __init__(self, header: dict, arrays: dict[str, np.ndarray]) -> None:
        from knnlab.algorithms import resolve_algorithm
        from knnlab.options import fit_scaling

        params = header["params"]
        X = arrays["X"]
        self.classes_ = arrays["classes"]
        self.n_features_in_ = X.shape[1]
        self._params = params
        self._y = arrays["y"]
        self._estimator = None
        if resolve_algorithm(params["algorithm"], *X.shape, params["n_neighbors"]) != "brute":
            from knnlab.pipeline.io.model_io import model_from

            self._estimator = model_from(header, arrays)  # a tree, or the stored index
            return
        self._centre, self._factor = fit_scaling(X, params["scale"])
        self._X = self._transform(X)

    def _transform(self, X: np.ndarray) -> np.ndarray:
        # The estimator's own transform, operation for operation: the same bits.
        if self._params["scale"] == "none":
            return X
        return (X - self._centre) / self._factor

    def neighbors_and_proba(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distances (n, k) to the k nearest training rows and class probabilities
        (n, n_classes) of queries X (n, n_features), from one search."""
        if self._estimator is not None:
            return self._estimator.kneighbors(X)[0], self._estimator.predict_proba(X)
        from knnlab.neighbors import kneighbors
        from knnlab.voting import class_probabilities

        k = self._params["n_neighbors"]
        distances, indices = kneighbors(
            self._X,
            self._transform(np.asarray(X, dtype=np.float64)),
            k,
            p=float(self._params["p"]),
            n_jobs=self._params["n_jobs"],
        )
        labels = self._y[indices]
        proba = class_probabilities(
            distances, labels, len(self.classes_), self._params["weights"], [k]
        )
        return distances, proba[0]


def predict_rows(model: SavedModel, X: np.ndarray, names: list[str], novelty: float, top: int = 3):
    """Label, top class probabilities, mean neighbour distance and the unusual flag, per row."""
    distances, proba = model.neighbors_and_proba(X)
    results = []
    for name, row, d in zip(names, proba, distances.mean(axis=1), strict=True):
        order = np.argsort(-row, kind="stable")[:top]
        label = model.classes_[order[0]]
        results.append(
            {
                "input": name,
                "label": label.item() if hasattr(label, "item") else label,
                "probabilities": {str(model.classes_[i]): round(float(row[i]), 4) for i in order},
                "mean_neighbor_distance": round(float(d), 4),
                "unusual": bool(d > novelty),
            }
        )
    return results


def format_results(results: list[dict], as_json: bool) -> str:
    if as_json:
        return json.dumps(results, indent=2) + "\n"
    lines = []
    for r in results:
        probabilities = ", ".join(f"{k}: {v:.2f}" for k, v in r["probabilities"].items())
        flag = "  UNUSUAL: unlike the training data" if r["unusual"] else ""
        lines.append(f"{r['input']}: {r['label']}  ({probabilities}){flag}")
    return "\n".join(lines) + "\n"
