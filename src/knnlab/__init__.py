"""knnlab: tracked, reproducible k-nearest-neighbour experiments.

The public API: :class:`KNNClassifier`, :func:`knnlab.neighbors.kneighbors`,
:mod:`knnlab.metrics` and :func:`knnlab.tune.grid_search_cv`.
"""

from knnlab.estimators import KNNClassifier, KNNRegressor
from knnlab.neighbors import kneighbors

__all__ = ["KNNClassifier", "KNNRegressor", "kneighbors"]
__version__ = "0.1.0"
