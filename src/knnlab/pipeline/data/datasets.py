"""The dataset ``data.dataset`` names, from its source (:mod:`~knnlab.pipeline.data.embedded`,
:mod:`~knnlab.pipeline.data.tables`, :mod:`~knnlab.pipeline.data.openml`,
:mod:`~knnlab.pipeline.data.fashion_mnist`), sampled, checked, and split."""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from knnlab.pipeline.data.dataset import (
    LABEL,
    DataError,
    Dataset,
    sample_rows,
    select_features,
    validate,
)
from knnlab.pipeline.data.embedded import load_digits, load_iris, load_moons
from knnlab.pipeline.data.fashion_mnist import load_fashion_mnist
from knnlab.pipeline.data.openml import load_openml
from knnlab.pipeline.data.tables import load_table
from knnlab.pipeline.io.formats import excerpt, excerpt_list
from knnlab.pipeline.io.params import (
    DEFAULT_DATA_PATH,
    FASHION_MNIST,
    FILE_DATASET,
    OPENML_PREFIX,
    DataParams,
    ParamsError,
    SplitParams,
)


def load(params: DataParams) -> Dataset:
    """The dataset ``params`` names, validated."""
    if params.dataset == "digits":
        dataset = load_digits()
    elif params.dataset == "iris":
        dataset = load_iris()
    elif params.dataset == "moons":
        m = params.moons
        dataset = load_moons(m.n_samples, m.noise, m.seed)
    elif params.dataset == FASHION_MNIST:
        # data.path names the folder of the IDX files only when the user changed it.
        folder = params.path if params.path != DEFAULT_DATA_PATH else None
        dataset = load_fashion_mnist(folder)
    elif params.dataset == FILE_DATASET:
        dataset = load_table(params.path, params.label_column)
    else:
        dataset = load_openml(params.dataset.removeprefix(OPENML_PREFIX))
    dataset = sample_rows(select_features(dataset, params.features), params.max_rows, params.seed)
    return validate(dataset)


def positive_class(wanted: int | str | None, classes: np.ndarray):
    """The class of the binary "is it a <class>?" analysis: ``data.positive_class`` if set
    (it must be one of ``classes``), else the larger label of a binary problem, else None.
    ``split`` checks it, so a wrong value stops the pipeline before any stage logs."""
    if wanted is None:
        return classes[1] if classes.size == 2 else None
    matches = [c for c in classes if str(c) == str(wanted)]
    if not matches:
        raise ParamsError(
            f"params.yaml: data.positive_class = {wanted!r} is not a class of this dataset; "
            f"classes are {excerpt_list(classes)} (or null for none)"
        )
    return matches[0]


def stratified_split(frame: pd.DataFrame, params: SplitParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split rows so each class keeps its share in both parts; same seed, same split.
    ``params.test_size`` is a fraction (ceil(fraction * n) test rows) or a count of test rows,
    as in scikit-learn's ``train_test_split``."""
    counts = frame[LABEL].value_counts()
    if counts.min() < 2:
        raise DataError(
            f"class {excerpt(counts.idxmin())} has {counts.min()} sample(s); a stratified "
            "split needs at least 2 per class: remove the class or add samples"
        )
    test_size = params.test_size
    if isinstance(test_size, numbers.Integral) and not isinstance(test_size, bool):
        n_test = int(test_size)
        if n_test >= len(frame):
            raise DataError(
                f"split.test_size = {test_size} test rows is not fewer than the {len(frame)} "
                "rows of the dataset; give a smaller count, or a fraction in (0, 1)"
            )
    else:
        n_test = int(np.ceil(test_size * len(frame)))
    if n_test < counts.size or len(frame) - n_test < counts.size:
        raise DataError(
            f"split.test_size = {params.test_size} gives {n_test} test and "
            f"{len(frame) - n_test} train rows for {counts.size} classes; each part needs at "
            "least one row per class: change split.test_size"
        )
    train, test = train_test_split(
        frame, test_size=params.test_size, random_state=params.seed, stratify=frame[LABEL]
    )
    return train.reset_index(drop=True), test.reset_index(drop=True)
