"""Render ``dvc plots show`` HTML in headless Chromium and count what it drew.

DVC's page loads vega, vega-lite and vega-embed from a CDN, which this machine cannot reach;
the same versions come from the npm registry (``npm pack``) and the page is pointed at them.
Everything else is DVC's own output, rendered by a real browser.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tarfile
from pathlib import Path

CDN = re.compile(r'src="https://cdn\.jsdelivr\.net/npm/(vega(?:-lite|-embed)?)@([0-9.]+)"')
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def fetch_library(name: str, version: str, cache: Path) -> Path:
    """The minified UMD build of an npm package, fetched once into ``cache``."""
    target = cache / f"{name}-{version}.min.js"
    if target.is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["npm", "pack", f"{name}@{version}", "--silent"],
        cwd=cache,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    tarball = cache / done.stdout.strip().splitlines()[-1]
    with tarfile.open(tarball) as archive:
        member = archive.extractfile(f"package/build/{name}.min.js")
        target.write_bytes(member.read())
    return target


def localise(index: Path, cache: Path) -> int:
    """Point the page's CDN scripts at local copies; return how many were replaced."""
    html = index.read_text(encoding="utf-8")
    found = CDN.findall(html)
    for name, version in found:
        local = fetch_library(name, version, cache)
        shutil.copy(local, index.parent / local.name)
        html = html.replace(
            f'src="https://cdn.jsdelivr.net/npm/{name}@{version}"', f'src="{local.name}"'
        )
    index.write_text(html, encoding="utf-8")
    return len(found)


def render(index: Path, profile: Path) -> str:
    """The DOM after the page's scripts ran (headless Chromium, --dump-dom)."""
    done = subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            "--allow-file-access-from-files",
            "--virtual-time-budget=10000",
            "--dump-dom",
            index.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout


def count_rendered(dom: str) -> dict[str, int]:
    """Vega charts drawn (an SVG or canvas inside a vega-embed container), images, errors."""
    return {
        "vega_charts": len(re.findall(r'class="[^"]*vega-embed[^"]*"', dom)),
        "drawn": len(re.findall(r"<canvas|<svg[^>]*class=\"marks\"", dom)),
        "images": len(re.findall(r"<img ", dom)),
        "errors": len(re.findall(r"(?i)\berror\b", dom)),
    }
