"""The params sections as pydantic models: a JSON Schema that forbids unknown keys and
describes every key, and constructors that check as params.yaml's loading does."""

from __future__ import annotations

import dataclasses

import pytest

from knnlab.pipeline.io.params import (
    GridParams,
    MlflowParams,
    ModelParams,
    Params,
    ParamsError,
    SplitParams,
    parse_params,
)


def test_the_schema_forbids_unknown_keys_and_describes_every_key():
    schema = Params.model_json_schema()
    sections = [schema, *schema["$defs"].values()]
    assert all(section["additionalProperties"] is False for section in sections)
    undescribed = [
        f"{section['title']}.{name}"
        for section in sections
        for name, spec in section["properties"].items()
        if "$ref" not in spec and not spec.get("description")
    ]
    assert not undescribed, f"keys without a description: {undescribed}"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: ModelParams(p=0.5),
            "params.yaml: model.p = 0.5 is not allowed; expected a number >= 1 "
            "(Minkowski p; .inf for Chebyshev)",
        ),
        (
            lambda: MlflowParams(experimnt="x"),
            "params.yaml: unknown key 'mlflow.experimnt'; allowed keys in mlflow: experiment, "
            "tracking_uri, required, lock_timeout",
        ),
        (
            lambda: SplitParams(seed="42"),
            "params.yaml: split.seed = '42' is not allowed; expected an integer >= 0 and <= "
            "4294967295 (numpy's seed range)",
        ),
        (
            lambda: dataclasses.replace(Params().tune.grid, algorithm=["hnsw"], p=[1]),
            "params.yaml: tune.grid.p = [1] is not allowed; expected a list that includes 2: "
            "hnsw in tune.grid.algorithm search Euclidean distance (p = 2) only",
        ),
    ],
)
def test_constructors_check_as_loading_does(make, message):
    with pytest.raises(ParamsError) as caught:
        make()
    assert str(caught.value) == message


@pytest.mark.parametrize("value", ["5", 5.0, True, None, [5]])
def test_no_value_is_coerced_into_an_integer(value):
    with pytest.raises(ParamsError, match=r"model\.n_neighbors = .* is not allowed"):
        parse_params({"model": {"n_neighbors": value}})


def test_values_are_kept_as_their_python_types():
    params = parse_params({"model": {"p": 1.5}, "tune": {"grid": {"p": [2.0, 3]}}})
    assert params.model.p == 1.5 and type(params.model.p) is float
    assert params.tune.grid.p == (2, 3) and {type(p) for p in params.tune.grid.p} == {int}
    assert isinstance(params.tune.grid, GridParams) and params == parse_params(params.to_dict())
