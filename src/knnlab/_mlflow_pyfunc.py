"""The knnlab model as an MLflow pyfunc, logged as code (MLflow's "models from code").

MLflow loads this file rather than unpickling an object, and the model then reads knnlab's
own pickle-free ``.npz`` artifact: loading a logged model never executes pickled code. This
is the one file besides :mod:`knnlab.tracking` that imports mlflow, because MLflow itself
loads it. Use: ``mlflow.pyfunc.load_model("runs:/<run_id>/model").predict(frame)``.
"""

import mlflow
import numpy as np
import pandas as pd

from knnlab.model_io import load_model


class KnnlabPyfunc(mlflow.pyfunc.PythonModel):
    """Predicts class labels from a frame (or array) of the training features."""

    def load_context(self, context):
        self.model = load_model(context.artifacts["knnlab_model"])

    # Annotated with a type MLflow infers no schema from: the logged signature is explicit,
    # and MLflow no longer warns that predict has no type hints. Arrays work too.
    def predict(self, context, model_input: pd.DataFrame, params=None) -> np.ndarray:
        if isinstance(model_input, pd.DataFrame):
            model_input = model_input.to_numpy(dtype=np.float64)
        return self.model.predict(np.asarray(model_input, dtype=np.float64))


mlflow.models.set_model(KnnlabPyfunc())
