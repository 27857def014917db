"""Fixtures for the web page tests: headless Chromium and a folder for screenshots.

The service harness is async and Selenium is synchronous, so the tests run the service
in a background thread with its own event loop
(:class:`tests.support.service.ServiceThread`); the browser helpers are in
``tests/support/browser.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import CHROMEDRIVER, CHROMIUM, OpenBrowser, require_chromium
from tests.support.peers import REPO

ARTIFACTS = REPO / "test-artifacts"
"""Screenshots the tests take, kept for a person (and CI) to look at."""


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
