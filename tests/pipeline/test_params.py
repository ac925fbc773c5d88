"""params.yaml validation: every bad value names the key, the value and what is allowed."""

from __future__ import annotations

import math
import re

import pytest
import yaml

from knnlab.pipeline.io.params import Params, ParamsError, load_params, parse_params

from ..conftest import REPO_ROOT


def test_repository_params_are_valid_and_complete():
    params = load_params(REPO_ROOT / "params.yaml")
    assert params.data.dataset == "digits"
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    sections = {"data", "split", "model", "conformal", "tune", "stats", "review", "mlflow"}
    assert set(raw) == sections | {"compute"}, "every section is spelled out"


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
        ({"conformal": {"coverage": 90}}, "conformal.coverage = 90 .* strictly between 0 and 1"),
        ({"conformal": {"coverage": 1}}, "conformal.coverage = 1 is not allowed"),
        ({"conformal": {"coverage": True}}, "conformal.coverage = True is not allowed"),
        ({"conformal": {"level": 0.9}}, "unknown key 'conformal.level'; allowed keys in confor"),
        ({"split": {"near_duplicate": 1.0}}, "split.near_duplicate = 1.0 .* at least 0 and below"),
        ({"split": {"near_duplicate": -0.1}}, "split.near_duplicate = -0.1 is not allowed"),
        ({"split": {"deduplicate": "yes"}}, "split.deduplicate = 'yes' is not allowed"),
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


# (section path, key, the largest value allowed, why a larger one is refused)
UPPER_BOUNDS = [
    (("model",), "n_neighbors", 100_000, "an integer >= 1 and <= 100000"),
    (("data", "moons"), "n_samples", 1_000_000, "an integer >= 10 and <= 1000000"),
    (("tune",), "cv", 100, "an integer >= 2 and <= 100"),
    (("stats",), "resamples", 100_000, "an integer >= 200 and <= 100000"),
    (("data",), "max_rows", 10**9, "an integer >= 2 and <= 1000000000"),
    (
        ("split",),
        "test_size",
        10**9,
        "a fraction strictly between 0 and 1, or a whole number of test rows >= 1 and <= "
        "1000000000 (e.g. 10000)",
    ),
]


def _nested(path: tuple[str, ...], key: str, value) -> dict:
    raw: dict = {key: value}
    for section in reversed(path):
        raw = {section: raw}
    return raw


def _at(params: Params, path: tuple[str, ...], key: str):
    section = params
    for name in path:
        section = getattr(section, name)
    return getattr(section, key)


@pytest.mark.parametrize(("path", "key", "maximum", "allowed"), UPPER_BOUNDS)
def test_values_that_scale_work_have_an_upper_bound_naming_key_value_and_range(
    path, key, maximum, allowed
):
    assert _at(parse_params(_nested(path, key, maximum)), path, key) == maximum
    name = ".".join((*path, key))
    for value in (maximum + 1, maximum * 1000, 2**64):
        expected = f"params.yaml: {name} = {value} is not allowed; expected {allowed}"
        with pytest.raises(ParamsError) as caught:
            parse_params(_nested(path, key, value))
        assert str(caught.value) == expected


def test_grid_values_and_candidate_count_are_bounded():
    grid = {"n_neighbors": [1, 100_000], "p": [1], "weights": ["uniform"]}
    assert parse_params({"tune": {"grid": grid}}).tune.grid.n_neighbors == (1, 100_000)
    with pytest.raises(
        ParamsError,
        match=re.escape(
            "tune.grid.n_neighbors[1] = 100001 is not allowed; expected an integer "
            ">= 1 and <= 100000"
        ),
    ):
        parse_params({"tune": {"grid": {"n_neighbors": [1, 100_001]}}})
    # 100 k x 100 p x 1 weighting x 1 algorithm: at the cap; one p more is past it
    at_cap = {"n_neighbors": list(range(1, 101)), "p": list(range(1, 101)), "weights": ["uniform"]}
    assert len(parse_params({"tune": {"grid": at_cap}}).tune.grid.p) == 100
    with pytest.raises(ParamsError) as caught:
        parse_params({"tune": {"grid": {**at_cap, "p": list(range(1, 102))}}})
    assert str(caught.value) == (
        "params.yaml: tune.grid has 10100 candidates (every combination of its lists, per "
        "algorithm); at most 10000 are allowed: shorten tune.grid's lists"
    )


@pytest.mark.parametrize(
    "grid",
    [
        {},
        {"algorithm": ["brute", "kd_tree"], "p": [1, 2, 3.5], "weights": ["distance"]},
        {"algorithm": ["brute", "hnsw"], "index": {"ef_search": [8, 16], "M": [4, 8, 16]}},
        {"algorithm": ["hnsw", "ivf"], "index": {"nprobe": [1, 2], "ef_search": [8]}},
        {"algorithm": ["ivf"], "p": [1, 2], "index": {"nlist": [4, 8], "nprobe": [1, 2, 3]}},
    ],
)
def test_the_candidate_count_is_what_the_grid_search_runs(grid):
    from knnlab.model_selection import candidate_list
    from knnlab.pipeline.io.params import _candidate_count

    pytest.importorskip("faiss")
    checked = parse_params({"tune": {"grid": grid}}).tune.grid
    plain = {
        "n_neighbors": list(checked.n_neighbors),
        "p": list(checked.p),
        "weights": list(checked.weights),
        "algorithm": list(checked.algorithm),
        "index": {name: list(values) for name, values in checked.index.items()},
    }
    assert _candidate_count(checked) == len(candidate_list(plain)), plain


@pytest.mark.parametrize(
    ("option", "maximum"),
    [("M", 256), ("ef_construction", 10_000), ("ef_search", 100_000)],
)
def test_hnsw_options_have_a_maximum(option, maximum):
    pytest.importorskip("faiss")
    model = {"algorithm": "hnsw", "index": {option: maximum}}
    assert parse_params({"model": model}).model.index == {option: maximum}
    expected = (
        f"params.yaml: model.index.{option} = {maximum + 1} is not allowed; expected an "
        f"integer >= {2 if option == 'M' else 1} and <= {maximum}, or null for the default"
    )
    with pytest.raises(ParamsError) as caught:
        parse_params({"model": {**model, "index": {option: maximum + 1}}})
    assert str(caught.value) == expected
    grid = {"algorithm": ["hnsw"], "index": {option: [maximum + 1]}}
    with pytest.raises(ParamsError, match=re.escape(f"tune.grid.index.{option}[0] = ")):
        parse_params({"tune": {"grid": grid}})


@pytest.mark.parametrize("option", ["nlist", "nprobe"])
def test_ivf_options_have_a_maximum(option):
    pytest.importorskip("faiss")
    assert parse_params({"model": {"algorithm": "ivf", "index": {option: 65_536}}})
    with pytest.raises(
        ParamsError,
        match=re.escape(
            f"model.index.{option} = 65537 is not allowed; expected an integer >= 1 and <= 65536"
        ),
    ):
        parse_params({"model": {"algorithm": "ivf", "index": {option: 65_537}}})


SEEDS = [
    (("data",), 2**32 - 1),
    (("data", "moons"), 2**32 - 1),
    (("split",), 2**32 - 1),
    (("tune",), 2**32 - 1),
    (("stats",), 2**32 - 1),
    (("model",), 2**31 - 1),  # also faiss's k-means seed (ivf), a C int
]


@pytest.mark.parametrize(
    ("path", "maximum"), SEEDS, ids=lambda x: ".".join(x) if isinstance(x, tuple) else ""
)
def test_every_seed_is_in_the_range_its_library_takes(path, maximum):
    assert _at(parse_params(_nested(path, "seed", 0)), path, "seed") == 0
    assert _at(parse_params(_nested(path, "seed", maximum)), path, "seed") == maximum
    name = ".".join((*path, "seed"))
    for value in (-1, maximum + 1, 2**64):
        with pytest.raises(ParamsError) as caught:
            parse_params(_nested(path, "seed", value))
        message = str(caught.value)
        assert message.startswith(
            f"params.yaml: {name} = {value} is not allowed; expected an "
            f"integer >= 0 and <= {maximum} ("
        ), message


def test_every_seed_key_is_bounded():
    """No seed key escapes the list above: each key named seed anywhere in Params."""
    found = []

    def walk(section, path):
        for name, value in vars(section).items():
            if name == "seed":
                found.append(path)
            elif hasattr(value, "__dataclass_fields__"):
                walk(value, (*path, name))

    walk(Params(), ())
    assert sorted(found) == sorted(path for path, _ in SEEDS)


@pytest.mark.parametrize(
    ("address", "secret"),
    [
        ("tcp://user:secret@host:8786", "secret"),
        ("tcp://secret@host:8786", "secret"),
        ("tls://user:se/cr@t?@host:8786", "se/cr@t?"),
        ("tcp://host:8786?token=secret", "secret"),
        ("tcp://host:8786#secret", "secret"),
        ("user:secret@host:8786", "secret"),
    ],
)
def test_a_refused_scheduler_address_never_shows_its_secret(monkeypatch, address, secret):
    with pytest.raises(ParamsError) as caught:
        parse_params({"compute": {"scheduler": address}})
    message = str(caught.value)
    assert secret not in message and "***" in message, message
    assert message.startswith("params.yaml: compute.scheduler = "), message
    assert "no user or password" in message, message
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", address)
    with pytest.raises(ParamsError) as caught:
        Params().compute.resolved_scheduler()
    message = str(caught.value)
    assert secret not in message and "***" in message, message
    assert message.startswith("environment: DASK_SCHEDULER_ADDRESS = "), message


def test_a_masked_address_keeps_what_helps_to_find_the_fault():
    with pytest.raises(ParamsError, match=re.escape("= 'tcp://***@host:8786' is not allowed")):
        parse_params({"compute": {"scheduler": "tcp://user:pw@host:8786"}})
    with pytest.raises(ParamsError, match=re.escape("= 'http://host:8786' is not allowed")):
        parse_params({"compute": {"scheduler": "http://host:8786"}})


def test_a_huge_deep_or_cyclic_value_gives_a_short_line():
    deep: list = [1]
    for _ in range(5000):  # deeper than repr() can go
        deep = [deep]
    cyclic: list = []
    cyclic.append(cyclic)
    for value in (deep, cyclic, list(range(10**6)), "x" * 10**6, 16**5000, {"a": deep}):
        for raw in (
            {"model": {"n_neighbors": value}},
            {"tune": {"grid": {"p": [value]}}},
            {"model": value},
            {"data": {"max_rows": value}},
            {"model": {"algorithm": "hnsw", "index": {"M": value}}},
        ):
            with pytest.raises(ParamsError) as caught:
                parse_params(raw)
            assert len(str(caught.value)) < 400 and "\n" not in str(caught.value), raw.keys()


def test_an_unknown_key_from_the_file_is_quoted_short():
    with pytest.raises(ParamsError) as caught:
        parse_params({"model": {"k" * 10_000: 1}})
    assert len(str(caught.value)) < 400, str(caught.value)[:100]


def test_a_params_file_that_cannot_be_read_gives_one_line(tmp_path):
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("data:\n  label_column: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ParamsError, match=r"latin1.yaml: not UTF-8 text \(byte 25 cannot"):
        load_params(latin1)
    with pytest.raises(ParamsError, match=r": cannot be read \(Is a directory\)"):
        load_params(tmp_path)


def test_load_params_reads_yaml_1_2(tmp_path):
    params_file = tmp_path / "params.yaml"
    params_file.write_text("data:\n  positive_class: 1:30\nmodel:\n  n_neighbors: 010\n")
    params = load_params(params_file)
    assert params.model.n_neighbors == 10 and params.data.positive_class == "1:30"
    params_file.write_text("model:\n  n_neighbors: 5\nmodel:\n  p: 1\n")
    with pytest.raises(ParamsError, match=r"key 'model' appears twice \(lines 1 and 3\)"):
        load_params(params_file)


@pytest.mark.parametrize("seconds", [86_401, 1e9, float("inf")])
def test_a_lock_timeout_past_a_day_is_refused_as_a_typo(seconds):
    with pytest.raises(ParamsError, match=r"mlflow.lock_timeout = .* at most 86400 \(a day\)"):
        parse_params({"mlflow": {"lock_timeout": seconds}})
    assert parse_params({"mlflow": {"lock_timeout": 86_400}}).mlflow.lock_timeout == 86_400.0
