"""The offline page for `dvc plots` (.dvc/plots/offline.html): what DVC's page loads from
its CDN, inlined, at the versions the installed DVC names."""

from __future__ import annotations

import importlib.util
import re

import pytest
from dvc_render.html import PAGE_HTML

from ..conftest import REPO_ROOT

_spec = importlib.util.spec_from_file_location("vega_offline", REPO_ROOT / "tools/vega_offline.py")
vega_offline = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(vega_offline)


def test_the_committed_page_inlines_the_libraries_dvc_names():
    page = vega_offline.TEMPLATE.read_text(encoding="utf-8")
    libraries = vega_offline.dvc_libraries()
    assert [name for name, _ in libraries] == ["vega", "vega-lite", "vega-embed"]
    inlined = re.findall(r"<!-- ([a-z-]+)@([0-9.]+), from the npm registry -->", page)
    assert inlined == libraries, "DVC names other versions: run `python tools/vega_offline.py`"
    assert "cdn." not in page and "{scripts}" not in page
    assert "{plot_divs}" in page and "{refresh_tag}" in page, "DVC fills these in"
    assert page.count("Redistribution and use in source and binary forms") == 3, "licences"
    config = (REPO_ROOT / ".dvc/config").read_text()
    assert re.search(r"(?m)^\s*html_template = plots/offline\.html$", config)


def test_the_page_is_dvcs_own_with_the_scripts_in_place():
    page = vega_offline.offline_page([("vega", "1.0.0", "var vega = {};", "BSD licence")])
    assert page == PAGE_HTML.replace(
        "{scripts}",
        "<!-- vega@1.0.0, from the npm registry -->\n"
        "<script>/*! vega@1.0.0\nBSD licence\n*/\nvar vega = {};</script>",
    )


@pytest.mark.parametrize("script", ["x = '</script>';", "x = '{plot_divs}';"])
def test_a_script_that_would_break_the_page_is_refused(script):
    with pytest.raises(ValueError, match="cannot be inlined"):
        vega_offline.offline_page([("vega", "1.0.0", script, "BSD")])
