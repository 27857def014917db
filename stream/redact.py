"""Credentials never leave the process: URLs are shown with their secrets replaced.

A stream URL such as ``rtsp://admin:hunter2@cam/live?token=abc`` is shown as
``rtsp://***@cam/live?token=***`` in logs, API answers, events and metric labels.
:class:`RedactingFilter` applies the same rule to every log record, as a last line
of defence for messages that quote a URL (an FFmpeg error, say).
"""

from __future__ import annotations

import logging
import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
SECRET_PARAMS = re.compile(
    r"(pass|pwd|secret|token|key|auth|sig|signature|credential|session)", re.IGNORECASE
)
# userinfo in any scheme://user:pass@host, anywhere in a text
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s]+)@")
_QUERY_SECRET = re.compile(
    r"(?P<key>[?&;][^=&\s]*(?:pass|pwd|secret|token|key|auth|sig|credential|session)"
    r"[^=&\s]*=)(?P<value>[^&\s\"']+)",
    re.IGNORECASE,
)


def redact_url(url: str) -> str:
    """``url`` with its user info and secret-looking query values replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, MASK if SECRET_PARAMS.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """Every URL-like credential inside free text replaced by ``***``."""
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    return _QUERY_SECRET.sub(lambda m: f"{m['key']}{MASK}", text)


class RedactingFilter(logging.Filter):
    """Rewrites each record's message (and arguments) with :func:`redact_text`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact_text(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            record.fields = {
                k: redact_text(v) if isinstance(v, str) else v for k, v in fields.items()
            }
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact_text(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True
