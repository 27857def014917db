"""Fixtures for the web page tests: the service in a thread, headless Chromium.

The service harness is async and Selenium is synchronous, so the service runs in a
background thread with its own event loop (:class:`ServiceThread`); a test calls into it
with :meth:`ServiceThread.call`. The browser is Debian's ``chromium`` driven through
``chromium-driver`` (no browser download). Without them the tests are skipped, or fail
when ``CI`` is set: CI must run them.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest

from tests.conftest import REPO, missing
from tests.stream.harness import Service, serving

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DEBIAN_PACKAGES = "chromium chromium-driver"
ARTIFACTS = REPO / "test-artifacts"
"""Screenshots the tests take, kept for a person (and CI) to look at."""

T = TypeVar("T")


@functools.cache
def chromium_unavailable() -> str | None:
    """Why headless Chromium cannot run here, or None when it can."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() and os.access(path, os.X_OK)):
            return f"{path} is missing; apt-get install {DEBIAN_PACKAGES}"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed; pip install -c constraints.txt -e '.[dev]'"
    return None


def require_chromium() -> None:
    """Skip the calling test when Chromium cannot run; fail instead under CI."""
    reason = chromium_unavailable()
    if reason is not None:
        missing("the web page tests", reason)


class ServiceThread:
    """:func:`tests.stream.harness.serving` running in a thread with its own event loop."""

    def __init__(self, **overrides: Any) -> None:
        self._overrides = overrides
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._service: Service | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fakewatch-service", daemon=True)

    @property
    def service(self) -> Service:
        assert self._service is not None, "the service is not running"
        return self._service

    @property
    def base(self) -> str:
        return self.service.base

    def start(self, timeout: float = 60) -> ServiceThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"the service did not start within {timeout} s")
        if self._error is not None:
            raise RuntimeError("the service failed to start") from self._error
        return self

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run ``coroutine`` on the service's loop and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def close(self, timeout: float = 30) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # reported by start()
            self._error = error
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serving(**self._overrides) as service:
            self._service = service
            self._ready.set()
            await self._stop.wait()


class OpenBrowser(Protocol):
    def __call__(self, *arguments: str) -> Any: ...


@pytest.fixture
def browser() -> Iterator[OpenBrowser]:
    """``open(*chromium_arguments) -> WebDriver``: headless Chromium; all quit at teardown."""
    require_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    drivers: list[Any] = []

    def open_browser(*arguments: str) -> Any:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in (
            "--headless=new",
            "--no-sandbox",  # the tests may run as root
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--window-size=1280,900",
            "--no-first-run",
            *arguments,
        ):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(
            options=options, service=DriverService(executable_path=CHROMEDRIVER)
        )
        drivers.append(driver)
        return driver

    try:
        yield open_browser
    finally:
        for driver in drivers:
            driver.quit()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """``test-artifacts/`` at the repository root, for screenshots."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def browser_log(driver: Any) -> str:
    """The page's console messages so far, for assertion messages."""
    try:
        entries = driver.get_log("browser")
    except Exception as error:  # a driver without logs must not hide the real failure
        return f"(no browser log: {error})"
    return "\n".join(f"{e['level']} {e['message']}" for e in entries) or "(empty)"
