"""params.yaml validation: every bad value names the key, the value and what is allowed."""

from __future__ import annotations

import math
import re

import pytest
import yaml

from knnlab.pipeline.params import Params, ParamsError, load_params, parse_params

from ..conftest import REPO_ROOT


def test_repository_params_are_valid_and_complete():
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.data.dataset == "digits"
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    assert set(raw) == {"data", "split", "model", "tune", "stats", "mlflow", "compute"}, (
        "every section is spelled out"
    )


def test_defaults_fill_missing_keys():
    params = parse_params({"model": {"n_neighbors": 3}})
    assert params.model.n_neighbors == 3
    assert params.model.p == 2 and params.split == Params().split


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"modle": {}}, "unknown key 'modle'"),
        ({"model": {"k": 3}}, "unknown key 'model.k'; allowed keys in model: n_neighbors"),
        (
            {"model": {"n_neighbors": 0}},
            "model.n_neighbors = 0 is not allowed; expected an integer >= 1",
        ),
        ({"model": {"n_neighbors": "5"}}, "model.n_neighbors = '5'"),
        ({"model": {"n_neighbors": True}}, "model.n_neighbors = True"),
        ({"model": {"p": 0.5}}, "model.p = 0.5 is not allowed; expected a number >= 1"),
        (
            {"model": {"weights": "inverse"}},
            "model.weights = 'inverse' .* one of uniform, distance",
        ),
        ({"model": {"algorithm": "lsh"}}, "one of auto, brute, kd_tree, ball_tree"),
        ({"split": {"test_size": 1.0}}, "split.test_size = 1.0 .* strictly between 0 and 1"),
        ({"split": {"test_size": 0}}, "split.test_size = 0 "),
        (
            {"data": {"dataset": "mnist"}},
            "data.dataset = 'mnist' .* one of digits, iris, moons, fashion_mnist, mnist_784, "
            "file, or openml:",
        ),
        ({"data": {"dataset": "file"}}, "needs data.path"),
        ({"data": {"label_column": "y"}}, "data.label_column = 'y' is only used with data.d"),
        ({"data": {"path": None}}, "data.path = None .* not null: dvc.yaml makes it a dep"),
        (
            {"data": {"dataset": "file", "path": "x.xlsx", "label_column": "y"}},
            "data.path = 'x.xlsx' .* ending in .csv or .parquet",
        ),
        ({"tune": {"grid": {"p": []}}}, r"tune.grid.p = \[\] .* a non-empty list"),
        ({"tune": {"grid": {"n_neighbors": [3, 0]}}}, r"tune.grid.n_neighbors\[1\] = 0"),
        ({"tune": {"grid": {"weights": ["uniform", "uniform"]}}}, "without repeated values"),
        ({"tune": {"cv": 1}}, "tune.cv = 1 .* >= 2"),
        ({"tune": {"scoring": "auc"}}, "tune.scoring = 'auc' .* accuracy, f1_macro, roc_auc_ovr"),
        ({"tune": {"select": "one-se"}}, "tune.select = 'one-se' .* one of best, one_se$"),
        ({"tune": {"select": None}}, "tune.select = None .* one of best, one_se$"),
        ({"stats": {"confidence": 95}}, "stats.confidence = 95 .* strictly between 0.5 and 1"),
        ({"stats": {"confidence": 0.5}}, "stats.confidence = 0.5 is not allowed"),
        ({"stats": {"confidence": True}}, "stats.confidence = True is not allowed"),
        ({"stats": {"resamples": 100}}, "stats.resamples = 100 .* an integer >= 200"),
        ({"stats": {"seed": -1}}, "stats.seed = -1 .* an integer >= 0"),
        ({"stats": {"alpha": 0.05}}, "unknown key 'stats.alpha'; allowed keys in stats: conf"),
        ({"mlflow": {"experiment": ""}}, "mlflow.experiment = ''"),
        ({"model": [1, 2]}, "model = \\[1, 2\\] .* a mapping"),
    ],
)
def test_bad_values_are_named_with_what_is_allowed(raw, message):
    with pytest.raises(ParamsError, match=message):
        parse_params(raw)


def test_fashion_mnist_is_a_dataset_whose_path_may_be_a_folder(tmp_path):
    assert parse_params({"data": {"dataset": "fashion_mnist"}}).data.dataset == "fashion_mnist"
    data = parse_params({"data": {"dataset": "fashion_mnist", "path": str(tmp_path)}}).data
    assert data.path == str(tmp_path), "a folder of IDX files"
    with pytest.raises(
        ParamsError, match=r"data\.label_column = 'y' is only used with data\.dataset"
    ):
        parse_params({"data": {"dataset": "fashion_mnist", "label_column": "y"}})


@pytest.mark.parametrize(("value", "kind"), [(10000, int), (1, int), (0.2, float), (0.999, float)])
def test_test_size_is_a_fraction_or_a_row_count(value, kind):
    test_size = parse_params({"split": {"test_size": value}}).split.test_size
    assert test_size == value and type(test_size) is kind


@pytest.mark.parametrize(
    "value", [True, False, 0, -1, -0.5, 1.0, 1.5, 10000.0, float("nan"), float("inf"), "0.2", None]
)
def test_test_size_refusals_say_both_allowed_forms(value):
    expected = (
        f"split.test_size = {value!r} is not allowed; expected a fraction strictly between 0 "
        "and 1, or a whole number of test rows >= 1"
    )
    with pytest.raises(ParamsError, match=re.escape(expected)):
        parse_params({"split": {"test_size": value}})


def test_integral_p_is_normalised_and_infinity_accepted():
    assert parse_params({"model": {"p": 2.0}}).model.p == 2
    assert isinstance(parse_params({"model": {"p": 2.0}}).model.p, int)
    assert math.isinf(parse_params({"model": {"p": float("inf")}}).model.p)


def test_params_are_frozen():
    params = Params()
    with pytest.raises(AttributeError):
        params.model.n_neighbors = 3  # type: ignore[misc]


def test_invalid_yaml_and_missing_file_are_reported(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(bad)
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "missing.yaml")


def test_params_command_prints_every_resolved_value(tmp_path, capsys):
    from knnlab import cli

    params_file = tmp_path / "params.yaml"
    params_file.write_text("model:\n  p: 2.0\n")
    assert cli.main(["params", "--params", str(params_file)]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["model"]["p"] == 2 and shown["model"]["n_neighbors"] == 5, shown["model"]
    assert shown["tune"]["grid"]["p"] == [1, 2, 3], "defaults filled in, tuples as lists"
    params_file.write_text("mlflow:\n  tracking_uri: http://127.0.0.1:5000/?token=abc123\n")
    assert cli.main(["params", "--params", str(params_file)]) == 0
    assert "abc123" not in capsys.readouterr().out, "a secret in the URI is never printed"
    params_file.write_text("model:\n  k: 3\n")
    assert cli.main(["params", "--params", str(params_file)]) == 2
    assert "unknown key 'model.k'" in capsys.readouterr().err
