"""Write ``.dvc/plots/offline.html``: DVC's own page for ``dvc plots show`` / ``dvc plots diff``
with the Vega libraries inlined, so the charts draw with no network.

DVC's page loads vega, vega-lite and vega-embed from a CDN (cdn.jsdelivr.net): offline, or
behind a firewall, it shows the PNG figures and blank charts. ``.dvc/config`` points
``plots.html_template`` at this file, so every ``dvc plots`` command of the project uses it.
The page is DVC's (``dvc_render.html.PAGE_HTML``) with ``{scripts}`` replaced by the same
library versions DVC names (``dvc_render.vega.VegaRenderer.SCRIPTS``), taken from the npm
registry with ``npm pack`` and inlined with their BSD-3-Clause licences.

Run it again after an upgrade of DVC changes those versions (a test says when):

    python tools/vega_offline.py        # needs npm and the registry; writes the file
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1] / ".dvc" / "plots" / "offline.html"
CDN_SCRIPT = re.compile(
    r'<script src="https://cdn\.jsdelivr\.net/npm/([a-z-]+)@([0-9.]+)"></script>'
)


def dvc_libraries() -> list[tuple[str, str]]:
    """(npm package, version) of each script DVC's page loads, in its order."""
    from dvc_render.vega import VegaRenderer

    return CDN_SCRIPT.findall(VegaRenderer.SCRIPTS)


def npm_build(name: str, version: str, workdir: Path) -> tuple[str, str]:
    """The minified browser build and the licence of ``name@version`` from the registry."""
    done = subprocess.run(
        ["npm", "pack", f"{name}@{version}", "--silent"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    tarball = workdir / done.stdout.strip().splitlines()[-1]
    with tarfile.open(tarball) as archive:
        script = archive.extractfile(f"package/build/{name}.min.js").read().decode("utf-8")
        licence = archive.extractfile("package/LICENSE").read().decode("utf-8")
    return script, licence


def offline_page(libraries: list[tuple[str, str, str, str]]) -> str:
    """DVC's page with ``(name, version, script, licence)`` inlined in place of the CDN."""
    from dvc_render.html import PAGE_HTML

    blocks = []
    for name, version, script, licence in libraries:
        if "</script" in script.lower() or re.search(
            r"\{(plot_divs|scripts|refresh_tag)\}", script
        ):
            raise ValueError(f"{name}@{version} cannot be inlined: it holds a page placeholder")
        comment = licence.strip().replace("*/", "* /")
        blocks.append(
            f"<!-- {name}@{version}, from the npm registry -->\n"
            f"<script>/*! {name}@{version}\n{comment}\n*/\n{script}</script>"
        )
    return PAGE_HTML.replace("{scripts}", "\n".join(blocks))


def main() -> int:
    libraries = []
    with tempfile.TemporaryDirectory(prefix="vega-offline-") as tmp:
        for name, version in dvc_libraries():
            libraries.append((name, version, *npm_build(name, version, Path(tmp))))
    page = offline_page(libraries)
    TEMPLATE.parent.mkdir(parents=True, exist_ok=True)
    TEMPLATE.write_text(page, encoding="utf-8")
    size = len(page.encode("utf-8"))
    names = ", ".join(f"{n}@{v}" for n, v, _, _ in libraries)
    print(f"wrote {TEMPLATE} ({size:,} bytes): {names}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
