"""Helpers for the app, API and browser tests: start ``app.py`` on a free port in a subprocess
with a temporary store, wait until it serves, and stop it again; drive Debian's Chromium.

The app runs exactly as a user starts it (``python app.py --store ... --port ...``); nothing in
``app.py`` exists for tests.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
from playwright.sync_api import Browser, Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def app_env(*, one_thread: bool = True) -> dict[str, str]:
    """The environment the app subprocess runs with: offline, no analytics, no ``STUDIO_*`` or
    ``GRADIO_SERVER_*`` variables from the caller, and (for tests) one torch thread."""
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", TOKENIZERS_PARALLELISM="false",
               PYTHONUNBUFFERED="1")
    if one_thread:
        env["OMP_NUM_THREADS"] = "1"
    for name in [n for n in env if n.startswith("STUDIO_") or n.startswith("GRADIO_SERVER_")]:
        del env[name]
    return env


@dataclass
class RunningApp:
    """A started ``app.py``: its URL, store folder, process and log file."""

    url: str
    store: Path
    process: subprocess.Popen
    log: Path
    started: float  # time.monotonic() when the process was started

    def log_text(self) -> str:
        """Everything the app wrote to stdout/stderr so far."""
        return self.log.read_text(encoding="utf-8", errors="replace")


def start_app(store: Path, *flags: str, timeout_s: float = 120.0, env: dict[str, str] | None = None) -> RunningApp:
    """Start ``python app.py --store STORE --port <free> FLAGS`` and wait until ``/`` answers 200.

    Raises ``RuntimeError`` with the app's log when it exits or does not serve in time.
    """
    port = free_port()
    log = store.parent / f"app-{port}.log"
    started = time.monotonic()
    command = [sys.executable, str(ROOT / "app.py"), "--store", str(store), "--port", str(port), *flags]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, cwd=ROOT, env=env or app_env(), stdout=sink, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    app = RunningApp(url=f"http://127.0.0.1:{port}/", store=store, process=process, log=log, started=started)
    wait_until_serving(app, timeout_s)
    return app


def wait_until_serving(app: RunningApp, timeout_s: float) -> float:
    """Poll ``app.url`` until it answers 200; return the seconds since the process started."""
    while time.monotonic() - app.started < timeout_s:
        if app.process.poll() is not None:
            raise RuntimeError(f"app.py exited with {app.process.returncode}:\n{app.log_text()[-3000:]}")
        try:
            if httpx.get(app.url, timeout=2.0).status_code == 200:
                return time.monotonic() - app.started
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    stop_app(app)
    raise RuntimeError(f"app.py did not serve within {timeout_s:.0f} s:\n{app.log_text()[-3000:]}")


def stop_app(app: RunningApp) -> None:
    """Stop the app (SIGINT, as Ctrl-C would; SIGKILL after 5 s)."""
    if app.process.poll() is None:
        app.process.send_signal(signal.SIGINT)
        try:
            app.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            app.process.kill()
            app.process.wait(timeout=10)


def running_app(store: Path, *flags: str) -> Iterator[RunningApp]:
    """Generator for a pytest fixture: a started app, stopped afterwards."""
    app = start_app(store, *flags)
    try:
        yield app
    finally:
        stop_app(app)


def launched_chromium() -> Iterator[Browser]:
    """Generator for a pytest fixture: Debian's Chromium, headless, driven by Playwright."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield launched
        launched.close()


def opened_page(browser: Browser, url: str, tab: str) -> Iterator[Page]:
    """Generator for a pytest fixture: a fresh browser context on the app at ``url``, waiting
    until ``tab`` is shown; the context is closed afterwards."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.goto(url)
    expect(page.get_by_role("tab", name=tab)).to_be_visible(timeout=60_000)
    yield page
    context.close()
