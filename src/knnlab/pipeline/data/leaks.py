"""Leaks across the split, found as the split is made (:mod:`knnlab.duplicates`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from knnlab.duplicates import cross_split_duplicates, rows_to_move
from knnlab.pipeline.data.dataset import LABEL, DataError
from knnlab.pipeline.io.params import SplitParams


def _features(frame: pd.DataFrame) -> np.ndarray:
    return frame.drop(columns=[LABEL]).to_numpy(dtype=np.float64)


def find_leaks(
    train: pd.DataFrame, test: pd.DataFrame, params: SplitParams
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The leaks of a split (the summary of
    :meth:`~knnlab.duplicates.CrossSplitDuplicates.summary`, plus ``moved_to_train``) and
    the split itself, with ``params.deduplicate`` the leaking test rows moved to the end of
    the training rows."""
    X_train, X_test = _features(train), _features(test)
    found = cross_split_duplicates(X_train, X_test, params.near_duplicate)
    summary = found.summary()
    moved = np.zeros(len(test), dtype=bool)
    if params.deduplicate:
        moved = rows_to_move(found, X_test)
        left = set(test[LABEL][~moved])
        emptied = [label for label in pd.unique(test[LABEL]) if label not in left]
        if emptied:
            raise DataError(
                f"split.deduplicate: true would move every test row of class {emptied[0]!r} "
                "to the train split (each of them has a (near) duplicate there); lower "
                "split.near_duplicate or set split.deduplicate: false"
            )
        train = pd.concat([train, test[moved]], ignore_index=True)
        test = test[~moved].reset_index(drop=True)
    summary["deduplicate"] = params.deduplicate
    summary["moved_to_train"] = int(moved.sum())
    return train, test, summary
