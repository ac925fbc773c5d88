"""The knnlab model as an MLflow pyfunc, loaded through this installed module.

A logged model's ``MLmodel`` names this module as its ``loader_module`` and the knnlab
``.npz`` as its ``data``; MLflow imports the module from the installed knnlab and calls
:func:`_load_pyfunc` with the path of that ``.npz``. The artifact folder holds no code and no
pickle, so nothing stored there runs when the model is loaded, and the ``.npz`` is read by
:func:`knnlab.pipeline.model_io.load_model` with all its checks. Use
``mlflow.pyfunc.load_model("runs:/<run_id>/model").predict(frame)``, or
:func:`knnlab.tracking.models.load_logged_model`, which also refuses a tampered ``MLmodel``.

This module does not import mlflow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from knnlab.estimators import KNNClassifier
from knnlab.pipeline.model_io import load_model


class KnnlabPyfunc:
    """Predicts class labels from a frame (or array) of the training features."""

    def __init__(self, model: KNNClassifier):
        self.model = model

    def predict(self, model_input, params=None) -> np.ndarray:
        """model_input : DataFrame or array of shape (n_queries, n_features).
        Returns the labels, ndarray of shape (n_queries,)."""
        if isinstance(model_input, pd.DataFrame):
            model_input = model_input.to_numpy(dtype=np.float64)
        return self.model.predict(np.asarray(model_input, dtype=np.float64))


def _load_pyfunc(data_path: str) -> KnnlabPyfunc:
    """MLflow's loader hook: ``data_path`` is the logged knnlab ``.npz``."""
    return KnnlabPyfunc(load_model(data_path))
