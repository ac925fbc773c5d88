"""What the tests share; no test lives here. Imported relatively (``from ..support import
reference``, ``from ..support.project import make_project``).

- ``project``: copies of the pipeline in temporary git repositories (``make_project``),
  running commands in them (``run``, ``_env``), ``reproduce`` (build, ``dvc repro``,
  commit), the stages a run printed (``stages_run``), the runs of a project's MLflow store
  (``store``), ``SMALL_GRID``.
- ``shared_project``: one reproduced project per test worker, copied per module
  (``copy_project``: the copy's MLflow store repointed at its own artifacts, checked to be up
  to date for DVC and git and to name nothing of the original); ``IRIS``, the params of the
  shared iris project (the session fixture is ``reproduced_iris`` in tests/e2e/conftest.py).
- ``mlflow_store``: reading an MLflow store back (runs, dataset inputs, artifacts).
- ``fault_injection``: every fault knnlab promises to answer, as rows run on a reproduced
  project (also a script: ``python tests/support/fault_injection.py PROJECT_DIR``).
- ``blocked_imports``: child Pythons in which a package looks not installed
  (``run_core_only``: knnlab's core alone, the pipeline extra hidden).
- ``memory``: the peak memory growth of one call, in a fresh interpreter.
- ``reference``, ``reference_extra``: slow Python-loop references (search, probabilities,
  regression, confusion, AUC, exact Minkowski sums).
- ``exact_inputs``: inputs on a dyadic grid, where scikit-learn's p = 2 arithmetic is exact.
- ``format_samples``: a small file of each format knnlab recognises by its first bytes.
- ``dvc_plots_browser``: ``dvc plots`` pages rendered in headless Chromium, charts counted.
- ``mlflow_ui``: a real ``mlflow server`` on loopback (``mlflow_server``), ``knnlab ui`` and
  a fresh headless Chromium page on it.
"""
