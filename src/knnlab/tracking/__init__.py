"""MLflow: the only package that imports it. ``store`` says where runs go and guards the
store (secrets, the SQLite lock), ``runs`` opens and logs the stages' runs, ``models`` logs,
checks and serves the knnlab model, ``flavour`` is the loader MLflow calls for it,
``errors`` holds :class:`~knnlab.tracking.errors.TrackingError`.

Deliberately empty: the command line imports ``knnlab.tracking.errors`` for every command,
which must not import MLflow or the run-logging code (tests/pipeline/test_dvc_deps.py)."""
