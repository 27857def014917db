"""The streams page's review buttons in headless Chromium: a click records the verdict
through the API, beside the alert's evidence."""

from __future__ import annotations

import json

import numpy as np
import pytest
from selenium.common.exceptions import StaleElementReferenceException

from tests.stream.test_evidence import suspected
from tests.support.browser import OpenBrowser, require_chromium
from tests.support.service import TOKEN, ServiceThread
from tests.web.test_pages import by_testid, enter_token, one, wait_for

pytestmark = pytest.mark.peer


def test_the_review_buttons_record_a_verdict(browser: OpenBrowser, astronaut: np.ndarray) -> None:
    require_chromium()
    alert = suspected(astronaut)
    service = ServiceThread().start()
    try:

        async def emit() -> None:
            for sink in service.service.pipeline.sinks:
                await sink.emit(alert)

        service.call(emit())
        driver = browser()
        driver.get(f"{service.base}/")
        enter_token(driver, TOKEN)
        selector = f'[data-testid="event"][data-event-id="{alert.id}"]'

        def verdict_shown() -> str | None:
            """The verdict the alert's item shows now (the list is redrawn as it polls)."""
            try:
                items = driver.find_elements("css selector", selector)
                badges = by_testid(driver, "event-review", items[0]) if items else []
                return badges[0].get_attribute("data-verdict") if badges else None
            except StaleElementReferenceException:
                return None

        def click(verdict: str) -> bool:
            try:
                item = driver.find_elements("css selector", selector)[0]
                one(driver, f"review-{verdict}", item).click()
            except (IndexError, StaleElementReferenceException):
                return False
            return True

        wait_for(lambda: verdict_shown() == "", 15, "the alert with its buttons", driver)
        wait_for(lambda: click("false_positive"), 10, "a click on False positive", driver)
        wait_for(lambda: verdict_shown() == "false_positive", 10, "the verdict shown", driver)
        folder = service.service.host.sinks.evidence.folder / alert.id
        assert json.loads((folder / "review.json").read_text())["verdict"] == "false_positive"
        # changing one's mind replaces the verdict
        wait_for(lambda: click("confirmed"), 10, "a click on Confirmed", driver)
        wait_for(lambda: verdict_shown() == "confirmed", 10, "the changed verdict", driver)
        assert json.loads((folder / "review.json").read_text())["verdict"] == "confirmed"
    finally:
        service.close()
