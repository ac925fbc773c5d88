"""The knnlab model as an MLflow pyfunc, loaded through this installed module.

A logged model's ``MLmodel`` names this module as its ``loader_module`` and the knnlab
``.npz`` as its ``data``; MLflow imports the module from the installed knnlab and calls
:func:`_load_pyfunc` with the path of that ``.npz``. Nothing stored in the artifact folder
runs when the model is loaded: the ``.npz`` is read by
:func:`knnlab.pipeline.io.model_io.read_model` with all its checks, no pickle. Use
``mlflow.pyfunc.load_model("runs:/<run_id>/model").predict(rows)``, or
:func:`knnlab.tracking.models.load_logged_model`, which also refuses a tampered ``MLmodel``.

The signature declares no input schema, so MLflow hands the input over as it came and this
module checks it, naming what is wrong in one line (MLflow's own schema checks accept either
named columns or unnamed arrays, not both, refuse integers for a float64 schema, and print
the whole schema and input when they fail). Accepted, for a model of ``n_features`` features:

- an array or nested list of shape (n_queries, n_features), any real numbers (what the
  scoring server makes of ``{"inputs": ...}`` and ``{"instances": ...}``);
- a DataFrame whose columns name every training feature (in any order; other columns are
  ignored), or, with no column names (pandas' 0, 1, 2, ..., as ``dataframe_split`` without
  ``columns`` gives), exactly ``n_features`` columns taken in order;
- named columns in other shapes: a mapping of feature name to values, or a list of records
  (what the server makes of ``{"instances": [{"pixel_0_0": 0.0, ...}]}``).

The names are those the train stage keeps in the model file; a model file without them takes
any columns in order.

``params={"output": "proba"}`` returns the class probabilities instead of the labels: a
DataFrame of shape (n_queries, n_classes) whose columns are the class labels as text.
``params={"output": "set"}`` returns each query's prediction set: a DataFrame with one
column ``set``, each cell the list of class labels (as text) whose vote reaches the threshold
train calibrated for the model's ``conformal.coverage`` (:mod:`knnlab.conformal`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from knnlab.estimators import KNNClassifier
from knnlab.pipeline.io.model_io import model_from, read_model

OUTPUT_PARAM = "output"
OUTPUTS = ("label", "proba", "set")  # the first is the default
_SHOWN_NAMES = 5  # missing feature names quoted in an error, before "... (N in all)"


def input_error(problem: str):
    """The error a bad input raises: MLflow's own exception type, which its scoring server
    answers with HTTP 400 and this message after ``Error:`` (any other exception type
    becomes a generic "unexpected error" there, the message only in the stack trace)."""
    from mlflow.exceptions import MlflowException  # already loaded: MLflow calls this module

    return MlflowException.invalid_parameter_value(f"knnlab model: {problem}")


class KnnlabPyfunc:
    """Predicts class labels, or probabilities, from rows of the training features.

    feature_names : list of str, or None
        The training features' column names, in the model's order (the model file keeps
        them when the train stage wrote it); None accepts a DataFrame's columns in order.
    """

    def __init__(
        self,
        model: KNNClassifier,
        feature_names: list[str] | None = None,
        conformal_threshold: float | None = None,
    ):
        self.model = model
        self.feature_names = feature_names
        self.conformal_threshold = conformal_threshold

    def predict(self, model_input, params=None):
        """model_input : array, nested list or DataFrame of shape (n_queries, n_features),
        or named columns as a mapping or a list of records (see the module's docstring).

        Returns the labels, ndarray of shape (n_queries,); with ``params={"output":
        "proba"}``, a DataFrame of shape (n_queries, n_classes) of class probabilities,
        columns named by the class labels (as text, as JSON object keys are); with
        ``{"output": "set"}``, a DataFrame with one column ``set`` of lists of class labels
        (as text): each query's prediction set."""
        output = (params or {}).get(OUTPUT_PARAM, OUTPUTS[0])
        if output not in OUTPUTS:
            allowed = ", ".join(repr(o) for o in OUTPUTS)
            raise input_error(f"params {OUTPUT_PARAM} must be one of {allowed}; got {output!r}")
        if output == "set" and self.conformal_threshold is None:
            raise input_error(
                "this model file keeps no prediction-set threshold (written before prediction "
                "sets); re-run `dvc repro train` and log it again"
            )
        X = self.features(model_input)
        if output == "set":
            from knnlab.conformal import prediction_sets

            sets = prediction_sets(self.model.predict_proba(X), self.conformal_threshold)
            labels = [str(label) for label in self.model.classes_]
            members = [[labels[c] for c in np.flatnonzero(row)] for row in sets]
            return pd.DataFrame({"set": members})
        if output == "proba":
            columns = [str(label) for label in self.model.classes_]
            return pd.DataFrame(self.model.predict_proba(X), columns=columns)
        return self.model.predict(X)

    def features(self, model_input) -> np.ndarray:
        """The input as a float64 array of shape (n_queries, n_features), checked."""
        n_features = self.model.n_features_in_
        try:
            named = _named_columns(model_input)
            if named is not None:
                model_input = self._columns_in_order(named)
            X = np.asarray(model_input, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise input_error(
                f"expected rows of {n_features} numbers; the input does not convert to "
                f"numbers ({error})"
            ) from None
        if X.ndim != 2 or X.shape[1] != n_features:
            got = f"{X.shape[1]} per row" if X.ndim == 2 else f"an input of shape {X.shape}"
            raise input_error(
                f"expected rows of {n_features} features, shape (n_queries, {n_features}); "
                f"got {got}" + ("; put a single row in a list: [[...]]" if X.ndim == 1 else "")
            )
        if len(X) == 0:
            raise input_error("the input has no rows")
        if not np.isfinite(X).all():
            raise input_error("the input holds NaN or infinite values; features must be finite")
        return X

    def _columns_in_order(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The frame's feature columns in the model's order: by name when the model knows
        its features' names and the frame has names, else in the frame's order."""
        unnamed = list(frame.columns) == list(range(frame.shape[1]))
        if self.feature_names is None or unnamed:
            return frame
        missing = [name for name in self.feature_names if name not in frame.columns]
        if missing:
            shown = ", ".join(repr(name) for name in missing[:_SHOWN_NAMES])
            more = f", ... ({len(missing)} in all)" if len(missing) > _SHOWN_NAMES else ""
            raise input_error(
                f"the input's columns lack the features {shown}{more}; name all "
                f"{len(self.feature_names)} training features (as in the model's input "
                "example), or send rows without column names"
            )
        return frame[self.feature_names]


def _named_columns(model_input) -> pd.DataFrame | None:
    """A DataFrame of an input that names its columns: a DataFrame, a mapping of column
    name to values (MLflow's server makes one of ``{"instances": [{name: value, ...}]}`` and
    ``{"inputs": {name: [values]}}``) or a list of such records; None for rows."""
    if isinstance(model_input, pd.DataFrame):
        return model_input
    if isinstance(model_input, dict):
        return pd.DataFrame({name: np.ravel(values) for name, values in model_input.items()})
    if isinstance(model_input, list) and model_input and isinstance(model_input[0], dict):
        return pd.DataFrame.from_records(model_input)
    return None


def _feature_names(extra: dict, n_features: int) -> list[str] | None:
    """The training features' names kept in a model file's header, if it has them all."""
    names = extra.get("feature_columns")
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        return None
    return names if len(set(names)) == len(names) == n_features else None


def _load_pyfunc(data_path: str) -> KnnlabPyfunc:
    """MLflow's loader hook: ``data_path`` is the logged knnlab ``.npz``."""
    header, arrays = read_model(data_path)  # read once: the header holds the feature names
    model = model_from(header, arrays).prepare()  # the first request pays only for itself
    extra = header["extra"]
    threshold = extra.get("conformal_threshold")
    return KnnlabPyfunc(model, _feature_names(extra, model.n_features_in_), threshold)
