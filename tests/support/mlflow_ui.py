"""MLflow's UI as a user meets it: ``knnlab ui`` on a store, opened in headless Chromium
(Debian's, driven by Playwright, with a fresh profile each time: a new browser)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from .dvc_plots_browser import CHROMIUM_FLAGS, chromium

# The DVC plots check's flags (no network through the dead proxy), with Chromium's own
# bypass of loopback kept: the UI is on 127.0.0.1.
LOOPBACK_ONLY = [f for f in CHROMIUM_FLAGS if not f.startswith("--proxy-bypass-list")]
LINK = re.compile(r"(http://127\.0\.0\.1:\d+/#/experiments/\d+/runs\S*)")


def available() -> str | None:
    """Why the browser checks cannot run here, or None when they can."""
    if chromium() is None:
        return "needs Debian's chromium (make test installs it as root)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "needs playwright (the dev extras)"
    return None


@contextlib.contextmanager
def knnlab_ui(project: Path, port: int, env: dict[str, str]) -> Iterator[str]:
    """``knnlab ui --port PORT`` in ``project``; yields the link it prints, stops it after."""
    process = subprocess.Popen(
        [sys.executable, "-m", "knnlab", "ui", "--port", str(port)],
        cwd=project,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        seen = []
        for line in process.stdout:  # ends if the command dies: no endless wait
            seen.append(line)
            if match := LINK.search(line):
                yield match.group(1)
                break
        else:
            raise AssertionError(f"knnlab ui printed no link:\n{''.join(seen)}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@contextlib.contextmanager
def fresh_page(width: int = 1600, height: int = 1000):
    """A page in a new headless Chromium with an empty profile (as a first visit)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=chromium(), args=LOOPBACK_ONLY)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()
