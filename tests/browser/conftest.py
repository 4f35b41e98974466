"""Fixtures for the real-browser tests: Debian's Chromium driven by Playwright against pytest-django's live_server.

The browser is the system one (`apt-get install chromium`), never a downloaded build: `playwright install` is not
used anywhere. CHROMIUM_PATH overrides the executable. A missing browser fails the run in CI and skips it elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_PATH = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # This machine (and CI) has no internet: keep Chromium from phoning home and waiting on it.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Generous for a cold first page load, short enough that a missing element fails the test in seconds.
ACTION_TIMEOUT_MS = 10_000


def _require_chromium() -> None:
    if Path(CHROMIUM_PATH).is_file() and os.access(CHROMIUM_PATH, os.X_OK):
        return
    message = (
        f"Chromium not found at {CHROMIUM_PATH}. Install Debian's package as root: "
        "`apt-get update && apt-get install -y chromium` (or point CHROMIUM_PATH at a Chromium executable). "
        "Do not use `playwright install`."
    )
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    if report.when == "call":
        item.stash[_CALL_FAILED] = report.failed
    return report


_CALL_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def page(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A fresh pt-BR browser page, as a receptionist's Chromium in São Paulo would open it.

    When the test fails, the page as it was is saved to `<tmp_path>/failure.png` (the path is printed).

    Playwright's sync API keeps an asyncio loop running in this thread while it is started, and Django refuses ORM
    calls under a running loop. The test body (factories, database asserts) is plain synchronous code, so the guard
    is lifted for this test only; Playwright is stopped before pytest-django flushes the database.

    Under a running loop Django also keeps a separate set of connections (asgiref's Local is context-local there), so
    the test body's connection is not the one pytest-django closes: it is closed here, or PostgreSQL refuses to drop
    the test database at the end of the run ("being accessed by other users").
    """
    _require_chromium()
    from django.db import connections
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    playwright = sync_playwright().start()
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM_PATH, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                locale="pt-BR", timezone_id="America/Sao_Paulo", viewport={"width": 1280, "height": 900}
            )
            context.set_default_timeout(ACTION_TIMEOUT_MS)
            browser_page = context.new_page()
            yield browser_page
            if request.node.stash.get(_CALL_FAILED, False):
                shot = tmp_path / "failure.png"
                browser_page.screenshot(path=shot, full_page=True)
                print(f"screenshot of the failed page: {shot} ({browser_page.url})")
            context.close()
        finally:
            browser.close()
    finally:
        connections.close_all()  # while the loop still runs: the test body's connections
        playwright.stop()


@pytest.fixture
def http_errors(page: Any) -> list[str]:
    """Every request of the page that failed or answered 4xx/5xx (a missing stylesheet or script shows up here)."""
    errors: list[str] = []

    def on_response(response: Any) -> None:
        # Chromium asks for /favicon.ico on its own; the admin has none, and staff never see that request.
        if response.status >= 400 and not response.url.endswith("/favicon.ico"):
            errors.append(f"{response.status} {response.url}")

    def on_request_failed(request: Any) -> None:
        # select2 cancels its pending search when the next keystroke arrives: aborted on purpose, not an error.
        if request.failure != "net::ERR_ABORTED":
            errors.append(f"failed {request.url}: {request.failure}")

    page.on("response", on_response)
    page.on("requestfailed", on_request_failed)
    return errors
