"""Structured logs: ``key=value`` text for people, one JSON object per line for machines.

Call sites log an event name as the message and put the details in ``extra={"fields":
{...}}``; :func:`log` does that in one call. Every handler carries a
:class:`~fakewatch.stream.redact.RedactingFilter`, so no credential reaches a log.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

from fakewatch.stream.redact import RedactingFilter, redact_text

LOGGER_NAME = "fakewatch"


def log(logger: logging.Logger, level: int, event: str, **fields: Any) -> None:
    """Log ``event`` with structured ``fields``."""
    logger.log(level, event, extra={"fields": fields})


def describe_error(error: BaseException) -> str:
    """``Type: message`` (or ``Type`` alone) of an exception, credentials redacted: what
    logs, stream states and outbox rows show of a failure."""
    message = str(error)
    return redact_text(f"{type(error).__name__}: {message}" if message else type(error).__name__)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update(getattr(record, "fields", None) or {})
        if record.exc_text:
            entry["error"] = record.exc_text
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        fields = getattr(record, "fields", None) or {}
        details = " ".join(f"{k}={_text(v)}" for k, v in fields.items())
        line = f"{stamp} {record.levelname.lower():7} {record.getMessage()} {details}".rstrip()
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    return json.dumps(text) if (" " in text or not text) else text


def configure_logging(
    level: str = "info", json_lines: bool = False, stream: TextIO | None = None
) -> None:
    """Send ``fakewatch`` logs to ``stream`` (stderr) in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    handler.addFilter(RedactingFilter())
    for name in (LOGGER_NAME, "aiohttp.access", "aiortc", "aioice"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
    logging.getLogger(LOGGER_NAME).setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiortc").setLevel(logging.WARNING)
    logging.getLogger("aioice").setLevel(logging.WARNING)
