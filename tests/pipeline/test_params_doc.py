"""docs/pipeline.md's params table is the one the params models generate: a key added,
renamed or re-described in knnlab.pipeline.io.params needs the page rewritten with
tools/params_table.py."""

from __future__ import annotations

import importlib.util

import yaml

from knnlab.pipeline.io.params import params_table

from ..conftest import REPO_ROOT

_spec = importlib.util.spec_from_file_location(
    "params_table_tool", REPO_ROOT / "tools/params_table.py"
)
tool = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tool)


def test_the_docs_table_is_the_generated_one():
    # Given docs/pipeline.md as committed
    doc = tool.DOC.read_text(encoding="utf-8")
    assert tool.BEGIN in doc and tool.END in doc, "the table's markers are missing"
    # When its table is cut out between the markers
    _, table, _ = tool.split_page(doc)
    # Then it is the table the models render, row for row
    assert table == params_table(), (
        "docs/pipeline.md's params table differs from knnlab.pipeline.io.params; "
        "rewrite it: python tools/params_table.py"
    )


def test_the_table_names_every_key_of_the_repository_params():
    # Given every leaf key of the repository's params.yaml (model.index.M and the like)
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text(encoding="utf-8"))

    def leaves(mapping, prefix=""):
        for name, value in mapping.items():
            key = f"{prefix}{name}"
            if isinstance(value, dict) and key != "tune.grid.index":
                yield from leaves(value, key + ".")
            else:
                yield key

    # Then each has its row
    rows = {
        line.split(" | ")[0].removeprefix("| `").rstrip("`") for line in params_table().split("\n")
    }
    missing = [key for key in leaves(raw) if key not in rows]
    assert not missing, f"params.yaml keys without a row in the table: {missing}"


def test_the_check_exits_1_when_the_table_differs(tmp_path, monkeypatch, capsys):
    # Given a copy of the page whose table lost a row
    page = tmp_path / "pipeline.md"
    doc = tool.DOC.read_text(encoding="utf-8")
    page.write_text(doc.replace("| `model.p` |", "| `model.q` |"), encoding="utf-8")
    monkeypatch.setattr(tool, "DOC", page)
    # Then --check refuses it, and rewriting it makes it pass
    assert tool.main(["--check"]) == 1
    assert "tools/params_table.py" in capsys.readouterr().out
    assert tool.main([]) == 0 and tool.main(["--check"]) == 0
    assert page.read_text(encoding="utf-8") == doc, "the rewrite gives the committed page"
