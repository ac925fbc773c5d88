"""knnlab reads params.yaml as DVC does: the same texts give the same values, or both refuse.

DVC's own reader (``dvc.utils.serialize.parse_yaml``) is the oracle: a value read differently
would train a model with one setting while ``dvc params diff`` and ``dvc exp show`` attribute
its results to another.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from dvc.utils.serialize import parse_yaml

from knnlab import cli
from knnlab.pipeline.io.params import ParamsError, load_params, read_params_text

from ..support.project import run

DEEP = 10_000

# (id, text): what YAML 1.1 (PyYAML) and YAML 1.2 (ruamel, DVC) may read differently, what
# either may refuse, and what a hand-edited file holds.
TEXTS = [
    ("leading zero", "model:\n  n_neighbors: 010\n"),
    ("leading zero, not octal", "a: 09\nb: 007.5\n"),
    ("sexagesimal", "a: 1:30\nb: 1:30.5\nc: -1:00\n"),
    ("yes no on off", "a: yes\nb: no\nc: on\nd: off\ne: y\nf: n\ng: Yes\nh: OFF\n"),
    ("booleans", "a: true\nb: false\nc: True\nd: FALSE\n"),
    ("exponents", "a: 1e3\nb: 1.5e-3\nc: 1E3\nd: 1.0e+3\ne: 3.\n"),
    ("infinity and nan", "a: .inf\nb: -.Inf\nc: .nan\nd: .NaN\n"),
    ("hex octal binary", "a: 0x10\nb: 0o10\nc: 0b11\nd: 0x1F\n"),
    ("nulls", "a: ~\nb: null\nc:\nd: Null\ne: NULL\n"),
    ("underscores and signs", "a: 1_000\nb: +5\nc: -0\nd: 1_0.5\n"),
    ("dates", "a: 2001-12-14\nb: 2001-12-14 21:59:43.10\n"),
    ("quoted", "a: '010'\nb: \"yes\"\nc: '1:30'\n"),
    ("tags", "a: !!str 010\nb: !!int '10'\nc: !!float '1'\n"),
    ("block scalars", "a: >\n  x\n  y\nb: |\n  x\n  y\n"),
    ("anchors and merge", "base: &b {n_neighbors: 3, p: 1}\nmodel:\n  <<: *b\n  p: 2\n"),
    ("merge of a list", "a: &a {x: 1}\nb: &b {x: 2, y: 2}\nc:\n  <<: [*a, *b]\n"),
    ("alias of a scalar", "a: &k 7\nb: *k\n"),
    ("unicode", 'name: Zürich ✓ 東京\nescaped: "\\u00e9\\t"\n'),
    ("byte order mark", "\ufeffa: 1\n"),
    ("tab inside quotes and before a comment", 'a: "x\ty"\nb: 1\t# note\n'),
    ("complex key", "? [1, 2]\n: a\n"),
    ("empty", ""),
    ("only a comment", "# nothing here\n"),
    ("an empty list at the top", "[]\n"),
    ("YAML 1.1 directive", "%YAML 1.1\n---\na: 010\nb: yes\nc: 1:30\n"),
    # Refused by both.
    ("duplicate key", "model:\n  n_neighbors: 5\n  p: 2\n  n_neighbors: 7\n"),
    ("duplicate section", "model:\n  n_neighbors: 5\nsplit: {}\nmodel:\n  p: 1\n"),
    ("duplicate key in a flow mapping", "model: {p: 1, p: 2}\n"),
    ("duplicate key spelled twice", "a:\n  10: x\n  010: y\n"),
    ("duplicate merge keys", "a: &a {x: 1}\nb:\n  <<: *a\n  <<: *a\n"),
    ("tab as indentation", "model:\n\tn_neighbors: 5\n"),
    ("tab before a value", "a:\t1\n"),
    ("unclosed list", "model: [unclosed\n"),
    ("two colons", "a: b: c\n"),
    ("undefined alias", "a: *nope\n"),
    ("two documents", "a: 1\n---\nb: 2\n"),
    ("python tag", "a: !!python/object/apply:os.system ['true']\n"),
    ("control character", "a: b\x07\n"),
    ("impossible date", "a: 2001-13-45\n"),
    ("bad bool tag", "a: !!bool maybe\n"),
    ("an integer of 5000 digits", "a: " + "1" * 5000 + "\n"),
    # Past the loader's stack (about 490 levels); 10,000 is below, through the command line.
    ("nested 600 deep", "a: " + "[" * 600 + "]" * 600 + "\n"),
    ("unclosed, 10,000 deep", "a:\n" + "[" * DEEP),
]
IDS = [name for name, _ in TEXTS]


def dvc_reads(text: str):
    """What DVC makes of ``text``: ("value", mapping) or ("refused", exception type)."""
    try:
        return "value", parse_yaml(text, "params.yaml")
    except Exception as error:  # besides its own, DVC lets ruamel's ValueError, KeyError,
        return "refused", type(error).__name__  # AssertionError and RecursionError through


def knnlab_reads(text: str):
    try:
        return "value", read_params_text(text, "params.yaml")
    except ParamsError as error:
        return "refused", str(error)


@pytest.mark.parametrize("text", [text for _, text in TEXTS], ids=IDS)
def test_knnlab_reads_every_text_as_dvc_does(text):
    dvc, ours = dvc_reads(text), knnlab_reads(text)
    assert dvc[0] == ours[0], f"DVC: {dvc}, knnlab: {ours}"
    if dvc[0] == "value":
        # repr: the same types too (10 is not 10.0, '10' is not 10), and NaN equals itself
        assert repr(ours[1]) == repr(dvc[1]), f"DVC read {dvc[1]!r}, knnlab {ours[1]!r}"


@pytest.mark.parametrize("text", [text for _, text in TEXTS], ids=IDS)
def test_a_refusal_is_one_line_naming_the_file(text):
    kind, outcome = knnlab_reads(text)
    if kind == "refused":
        assert outcome.startswith("params.yaml: "), outcome
        assert "\n" not in outcome and len(outcome) < 300, outcome


def test_the_texts_include_what_pyyaml_reads_otherwise():
    """Each of these texts YAML 1.1 (PyYAML) reads as the value given here, and DVC
    otherwise: without the shared loader, the model would train with that value."""
    pyyaml = {
        "model:\n  n_neighbors: 010\n": {"model": {"n_neighbors": 8}},
        "a: 1:30\n": {"a": 90},
        "a: yes\n": {"a": True},
        "a: 1e3\n": {"a": "1e3"},
        "model:\n  p: 1\n  p: 2\n": {"model": {"p": 2}},
    }
    for text, old in pyyaml.items():
        assert yaml.safe_load(text) == old, text
        assert knnlab_reads(text) != ("value", old), text
    assert read_params_text("model:\n  n_neighbors: 010\n", "params.yaml") == {
        "model": {"n_neighbors": 10}
    }
    assert read_params_text("a: 1:30\nb: yes\nc: 1e3\n", "p") == {"a": "1:30", "b": "yes", "c": 1e3}


def test_the_values_are_plain_python_types():
    """The safe loader, unlike ruamel's round-trip one, gives dict, list, int, float and str:
    what the checks and ``Params.to_dict`` expect."""
    raw = read_params_text("a: {b: [1, 2.5, x, true, null]}\n", "params.yaml")
    assert type(raw) is dict and type(raw["a"]) is dict and type(raw["a"]["b"]) is list
    assert [type(v) for v in raw["a"]["b"]] == [int, float, str, bool, type(None)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "model:\n  n_neighbors: 5\n  p: 2\n  n_neighbors: 7\n",
            "params.yaml: key 'model.n_neighbors' appears twice (lines 2 and 4); keep one",
        ),
        (
            "model:\n  p: 1\nsplit: {}\nmodel:\n  p: 2\n",
            "params.yaml: key 'model' appears twice (lines 1 and 4); keep one",
        ),
        (
            "tune:\n  grid: {p: [1], weights: [uniform], p: [2]}\n",
            "params.yaml: key 'tune.grid.p' appears twice (lines 2 and 2); keep one",
        ),
        (
            "a:\n  10: x\n  b: 1\n  010: y\n",
            "params.yaml: key 'a.10' appears twice (lines 2 and 4); keep one",
        ),
    ],
)
def test_duplicate_keys_name_the_key_and_both_lines(text, message):
    with pytest.raises(ParamsError) as caught:
        read_params_text(text, "params.yaml")
    assert str(caught.value) == message


def test_invalid_yaml_names_line_and_column():
    with pytest.raises(ParamsError) as caught:
        read_params_text("model:\n  n_neighbors: 5\n  p: [1, 2\n", "params.yaml")
    assert str(caught.value).startswith("params.yaml: not valid YAML at line 4, column 1: "), (
        caught.value
    )
    with pytest.raises(ParamsError, match=r"at line 2, column 4: .*U\+0007"):
        read_params_text("a: 1\nb: \x07\n", "params.yaml")


def test_a_top_level_that_is_no_mapping_is_refused():
    with pytest.raises(ParamsError, match=r"expected a mapping of sections .* found 5$"):
        read_params_text("5\n", "params.yaml")


@pytest.mark.parametrize(
    "text",
    ["a: " + "[" * DEEP + "]" * DEEP + "\n", "a:\n" + "[" * DEEP, "a: " + "{b: " * DEEP],
    ids=["closed", "unclosed", "mappings"],
)
def test_a_file_nested_10000_deep_gives_one_line_and_exit_2(tmp_path, capsys, text):
    params_file = tmp_path / "params.yaml"
    params_file.write_text(text)
    assert cli.main(["params", "--params", str(params_file)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"knnlab params: error: {params_file}: "), err
    assert err.count("\n") == 1 and "Traceback" not in err and "RecursionError" not in err, err


def dvc_params_diff(root) -> subprocess.CompletedProcess:
    """``dvc params diff --all --json`` in ``root``: HEAD's params against the working tree's."""
    return subprocess.run(
        [sys.executable, "-m", "dvc", "params", "diff", "--all", "--json"],
        cwd=root,
        env={**os.environ, "DVC_NO_ANALYTICS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_dvc_records_the_value_knnlab_trains_with(tmp_path):
    """A real DVC project: ``dvc params diff`` shows for model.n_neighbors: 010 and
    data.positive_class: 1:30 the values load_params gives (no pipeline run)."""
    (tmp_path / "params.yaml").write_text(
        "data:\n  positive_class: 1:30\nmodel:\n  n_neighbors: 010\n"
    )
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  train:\n    cmd: python -c pass\n    params:\n"
        "      - model.n_neighbors\n      - data.positive_class\n"
    )
    run(["git", "init", "-q", "-b", "main"], tmp_path)
    run(["dvc", "init", "-q"], tmp_path)
    run(["git", "add", "-A"], tmp_path)
    run(["git", "commit", "-q", "-m", "params"], tmp_path)
    done = dvc_params_diff(tmp_path)
    assert done.returncode == 0, done.stderr
    recorded = json.loads(done.stdout)["params.yaml"]
    params = load_params(tmp_path / "params.yaml")
    assert recorded["model.n_neighbors"]["new"] == params.model.n_neighbors == 10, recorded
    assert recorded["data.positive_class"]["new"] == params.data.positive_class == "1:30"


def test_a_duplicated_key_is_refused_by_dvc_and_by_knnlab(tmp_path):
    (tmp_path / "params.yaml").write_text("model:\n  n_neighbors: 5\n")
    (tmp_path / "dvc.yaml").write_text(
        "stages:\n  train:\n    cmd: python -c pass\n    params:\n      - model.n_neighbors\n"
    )
    run(["git", "init", "-q", "-b", "main"], tmp_path)
    run(["dvc", "init", "-q"], tmp_path)
    run(["git", "add", "-A"], tmp_path)
    run(["git", "commit", "-q", "-m", "params"], tmp_path)
    (tmp_path / "params.yaml").write_text("model:\n  n_neighbors: 5\n  n_neighbors: 7\n")
    done = dvc_params_diff(tmp_path)
    assert "YAML file structure is corrupted" in done.stderr, done.stderr
    with pytest.raises(ParamsError, match=r"'model\.n_neighbors' appears twice \(lines 2 and 3\)"):
        load_params(tmp_path / "params.yaml")
