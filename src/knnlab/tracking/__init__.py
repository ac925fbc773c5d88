"""MLflow: the only package that imports it. ``runs`` opens and logs the stages' runs,
``flavour`` is the loader MLflow calls for a logged knnlab model, ``errors`` holds
:class:`~knnlab.tracking.errors.TrackingError`.

Deliberately empty: the command line imports ``knnlab.tracking.errors`` for every command,
which must not import MLflow or the run-logging code (tests/pipeline/test_dvc_deps.py)."""
