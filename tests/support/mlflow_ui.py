"""A real ``mlflow server`` on loopback, and MLflow's UI as a user meets it: ``knnlab ui``
on a store, opened in headless Chromium (Debian's, driven by Playwright, with a fresh
profile each time: a new browser)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from knnlab.tracking.server import free_port

from .dvc_plots_browser import CHROMIUM_FLAGS, chromium

# The DVC plots check's flags (no network through the dead proxy), with Chromium's own
# bypass of loopback kept: the UI is on 127.0.0.1.
LOOPBACK_ONLY = [f for f in CHROMIUM_FLAGS if not f.startswith("--proxy-bypass-list")]
SERVER_START_TIMEOUT = 180  # seconds for `mlflow server`; about 10 here, more when loaded
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


def stop_group(process: subprocess.Popen, signum: int) -> None:
    """Send ``signum`` to the process group of ``process`` (started with
    ``start_new_session=True``), then SIGKILL it if it has not ended within 30 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@contextlib.contextmanager
def mlflow_server(folder: Path):
    """A real ``mlflow server`` on 127.0.0.1 (SQLite store and artifacts in ``folder``);
    yields its URL, stops it after."""
    port = free_port()
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{folder / 'server.db'}",
         "--artifacts-destination", str(folder / "artifacts"), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{url}/health", timeout=5) as answer,
            ):
                if answer.status == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"mlflow server did not start:\n{(folder / 'server.log').read_text()}"
                )
            time.sleep(0.5)
        yield url
    finally:
        stop_group(process, signal.SIGTERM)
        log.close()


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
        stop_group(process, signal.SIGINT)


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
