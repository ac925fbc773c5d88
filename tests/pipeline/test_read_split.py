"""Reading a split table straight into arrays gives features_and_labels' arrays, bit for bit
and dtype for dtype, whatever the labels and the features' types."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from knnlab.pipeline.data.dataset import LABEL, features_and_labels, read_features_and_labels
from knnlab.pipeline.io import files


def _frames(rng) -> dict[str, pd.DataFrame]:
    X = rng.normal(size=(50, 3)) * 10.0 ** rng.integers(-300, 300, size=(50, 3))
    return {
        "float features, integer labels": pd.DataFrame(X, columns=["a", "b", "c"]).assign(
            **{LABEL: rng.integers(0, 10, 50)}
        ),
        "text labels": pd.DataFrame(X[:, :1], columns=["x"]).assign(
            **{LABEL: rng.choice(["cat", "dog", "émeu"], 50)}
        ),
        "integer and uint8 features": pd.DataFrame(
            {
                "big": rng.integers(-(2**53), 2**53, 50),
                "pixel": rng.integers(0, 256, 50).astype(np.uint8),
                LABEL: rng.integers(0, 2, 50),
            }
        ),
        "label first, one row": pd.DataFrame({LABEL: [3], "f": [0.1]}),
    }


@pytest.mark.parametrize("case", list(_frames(np.random.default_rng(0))))
def test_reading_a_split_gives_the_frames_arrays(tmp_path, case):
    frame = _frames(np.random.default_rng(0))[case]
    path = tmp_path / "split.parquet"
    files.write_parquet(path, frame)
    X, y = read_features_and_labels(path)
    want_X, want_y = features_and_labels(files.read_parquet(path))
    assert X.dtype == want_X.dtype == np.float64 and X.flags.c_contiguous
    np.testing.assert_array_equal(X, want_X)
    assert y.dtype == want_y.dtype, (y.dtype, want_y.dtype)
    np.testing.assert_array_equal(y, want_y)
