"""Errors the command line reports as one line (exit code 2) rather than a traceback.

The input errors (:class:`knnlab.pipeline.io.params.ParamsError`,
:class:`knnlab.pipeline.data.dataset.DataError`,
:class:`knnlab.pipeline.io.model_io.ModelFileError`) are ``ValueError`` subclasses beside the
code that raises them. :class:`TrackingError` lives here so that :mod:`knnlab.cli` can
catch it without importing the run-logging module, and so without making every stage depend on it.
"""


class TrackingError(RuntimeError):
    """The MLflow store cannot be used: unreachable, read-only, or credentials in its URI."""
