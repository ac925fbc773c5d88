"""Predictions of a saved model for ``knnlab predict``: labels, class probabilities and how
unusual each query is: its mean distance to its neighbours, placed among the test split's
(the scale the train stage keeps in the model file), and flagged beyond the threshold kept
there (the test split's 99th percentile; its false alarms on the test split beside it)."""

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


def _plain(label):
    """A numpy label as its Python value (JSON-ready)."""
    return label.item() if hasattr(label, "item") else label


def distance_percentiles(distances: np.ndarray, scale: list[float]) -> list[float | None]:
    """For each mean neighbour distance (n,), the share (in %) of test rows lying closer
    to their neighbours, from the model's ``test_distance_scale`` (the test rows' mean
    neighbour distance at every 0.1 percentile): the highest percentile at or below the
    distance, 100 beyond the farthest. None each for a model file without a scale."""
    if len(scale) < 2:
        return [None] * len(distances)
    percents = np.linspace(0.0, 100.0, len(scale))
    at = np.maximum(np.searchsorted(scale, distances, side="right") - 1, 0)
    shares = np.where(distances > scale[-1], 100.0, percents[at])
    return [round(float(share), 1) for share in shares]  # the scale's 0.1 % steps


def predict_rows(
    model: SavedModel, X: np.ndarray, names: list[str], extra: dict, top: int = 3
) -> list[dict]:
    """Label, top class probabilities, the prediction set (``prediction_set``: the classes
    whose vote reaches the calibrated threshold; None for a model file without one), mean
    neighbour distance, where that distance lies among the test split's
    (``distance_percentile``) and the unusual flag, per row.
    extra : the model file's card (novelty_threshold, test_distance_scale,
    conformal_threshold)."""
    novelty = extra.get("novelty_threshold", float("inf"))
    distances, proba = model.neighbors_and_proba(X)
    threshold = extra.get("conformal_threshold")
    sets = [None] * len(proba)
    if threshold is not None:
        from knnlab.conformal import prediction_sets

        sets = prediction_sets(proba, threshold)
    mean = distances.mean(axis=1)
    percentiles = distance_percentiles(mean, extra.get("test_distance_scale") or [])
    results = []
    for name, row, d, percentile, members in zip(
        names, proba, mean, percentiles, sets, strict=True
    ):
        order = np.argsort(-row, kind="stable")[:top]
        label = model.classes_[order[0]]
        results.append(
            {
                "input": name,
                "label": _plain(label),
                "probabilities": {str(model.classes_[i]): round(float(row[i]), 4) for i in order},
                "prediction_set": None
                if members is None
                else [_plain(model.classes_[i]) for i in np.flatnonzero(members)],
                "mean_neighbor_distance": round(float(d), 4),
                "distance_percentile": percentile,
                "unusual": bool(d > novelty),
            }
        )
    return results


def _unusual_text(result: dict, false_alarm_rate: float | None) -> str:
    """ "  UNUSUAL: farther from its neighbours than 99.6 % of test rows (the flag marks
    1.1 % of the test split itself)"; "" for a usual row."""
    if not result["unusual"]:
        return ""
    percentile = result.get("distance_percentile")
    if percentile is None:  # a model file from before the scale
        return "  UNUSUAL: unlike the training data"
    where = (
        "farther from its neighbours than every test row"
        if percentile >= 100.0
        else f"farther from its neighbours than {percentile:.1f} % of test rows"
    )
    alarms = (
        ""
        if false_alarm_rate is None or np.isnan(false_alarm_rate)
        else f" (the flag marks {100 * false_alarm_rate:.1f} % of the test split itself)"
    )
    return f"  UNUSUAL: {where}{alarms}"


def _set_text(result: dict, coverage: float | None) -> str:
    """ "  90 % set {4, 9}"; an empty set says why; "" for a model file without prediction
    sets."""
    members = result.get("prediction_set")
    if members is None or coverage is None:
        return ""
    shown = f"  {100 * coverage:g} % set {{{', '.join(str(m) for m in members)}}}"
    return shown if members else f"{shown} (no class's vote is high enough)"


def format_results(
    results: list[dict],
    as_json: bool,
    false_alarm_rate: float | None = None,
    coverage: float | None = None,
) -> str:
    if as_json:
        return json.dumps(results, indent=2) + "\n"
    lines = []
    for r in results:
        probabilities = ", ".join(f"{k}: {v:.2f}" for k, v in r["probabilities"].items())
        flag = _unusual_text(r, false_alarm_rate)
        members = _set_text(r, coverage)
        lines.append(f"{r['input']}: {r['label']}  ({probabilities}){members}{flag}")
    return "\n".join(lines) + "\n"
