"""docs/development.md's layout map lists every module of src/knnlab, and nothing else."""

from __future__ import annotations

import re

from .conftest import REPO_ROOT


def test_the_layout_map_lists_every_module_once():
    text = (REPO_ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    section = text.split("## Layout", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    listed = re.findall(r"^  (\S+\.py)\s", block, flags=re.MULTILINE)
    package = REPO_ROOT / "src" / "knnlab"
    modules = sorted(str(p.relative_to(package)) for p in package.rglob("*.py"))
    assert sorted(listed) == modules, {
        "not listed": sorted(set(modules) - set(listed)),
        "listed but no such module": sorted(set(listed) - set(modules)),
    }
    assert len(listed) == len(set(listed)), "a module is listed twice"
