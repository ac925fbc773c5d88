"""Render ``dvc plots show`` HTML in headless Chromium and count what it drew.

The page is the project's offline template (``.dvc/plots/offline.html``, Vega inlined), so
the browser runs without network: a chart that needed the CDN would not draw.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # No network at all: only the page's own inlined scripts can draw the charts.
    "--proxy-server=127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
]


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


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
    """Vega charts drawn (an SVG or canvas inside a vega-embed container), images, and
    errors shown on the page (outside the scripts, whose code names errors)."""
    shown = re.sub(r"(?s)<script\b.*?</script>", "", dom)
    return {
        "vega_charts": len(re.findall(r'class="[^"]*vega-embed[^"]*"', dom)),
        "drawn": len(re.findall(r"<canvas|<svg[^>]*class=\"marks\"", dom)),
        "images": len(re.findall(r"<img ", dom)),
        "errors": len(re.findall(r"(?i)\berror\b", shown)),
    }
