"""Credentials in stream URLs never reach logs, API answers or metrics."""

from __future__ import annotations

import io
import json
import logging

from fakewatch.stream.logs import configure_logging, log
from fakewatch.stream.redact import redact_text, redact_url


def test_userinfo_and_secret_parameters_are_masked() -> None:
    url = "rtsp://admin:hunter2@10.0.0.5:554/live?channel=1&token=abc123&Password=x"
    shown = redact_url(url)
    assert "hunter2" not in shown and "admin" not in shown and "abc123" not in shown
    assert shown.startswith("rtsp://***@10.0.0.5:554/live?channel=1&token=***")
    assert redact_url("rtsp://cam.local/live") == "rtsp://cam.local/live"


def test_urls_inside_text_are_masked() -> None:
    text = "open failed for srt://u:p4ss@host:9000?passphrase=s3cret: Connection refused"
    cleaned = redact_text(text)
    assert "p4ss" not in cleaned and "s3cret" not in cleaned
    assert "Connection refused" in cleaned


def test_log_lines_are_redacted_in_both_formats() -> None:
    for json_lines in (False, True):
        out = io.StringIO()
        configure_logging("info", json_lines=json_lines, stream=out)
        logger = logging.getLogger("fakewatch.test")
        log(logger, logging.WARNING, "source.error", url="rtsp://bob:pw123@cam/live")
        logger.warning("plain message about rtmp://bob:pw123@cam/app")
        try:
            raise OSError("cannot reach http://bob:pw123@cam/x")
        except OSError:
            logger.exception("boom")
        text = out.getvalue()
        assert "pw123" not in text and "bob" not in text, text
        if json_lines:
            first = json.loads(text.splitlines()[0])
            assert first["event"] == "source.error" and first["url"] == "rtsp://***@cam/live"
