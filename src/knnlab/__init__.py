"""knnlab: tracked, reproducible k-nearest-neighbour experiments.

The public API: :class:`KNNClassifier`, :class:`KNNRegressor`,
:func:`knnlab.search.kneighbors`, :mod:`knnlab.metrics` and
:func:`knnlab.model_selection.grid_search_cv`.

The names below are imported on first use (PEP 562), not with the package: ``import
knnlab.pipeline.io.paths`` (every stage and the command line) must not pay for numba and
scikit-learn, and a stage must depend only on the modules it really uses
(tests/pipeline/test_dvc_deps.py derives each stage's modules from its imports).
"""

import importlib

# Public name -> the module that defines it.
LAZY_EXPORTS = {
    "KNNClassifier": "knnlab.estimators",
    "KNNRegressor": "knnlab.estimators",
    "kneighbors": "knnlab.search",
}

__all__ = list(LAZY_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in LAZY_EXPORTS:
        return getattr(importlib.import_module(LAZY_EXPORTS[name]), name)
    raise AttributeError(f"module 'knnlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *LAZY_EXPORTS])
