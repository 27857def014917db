"""Headless Chromium for the web page tests: Debian's ``chromium`` driven through
``chromium-driver`` (no browser download). Without them the tests are skipped, or fail
when ``CI`` is set: CI must run them."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Protocol

from tests.support.peers import missing

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
DEBIAN_PACKAGES = "chromium chromium-driver"


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


class OpenBrowser(Protocol):
    def __call__(self, *arguments: str) -> Any: ...


def browser_log(driver: Any) -> str:
    """The page's console messages so far, for assertion messages."""
    try:
        entries = driver.get_log("browser")
    except Exception as error:  # a driver without logs must not hide the real failure
        return f"(no browser log: {error})"
    return "\n".join(f"{e['level']} {e['message']}" for e in entries) or "(empty)"
