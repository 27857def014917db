"""The Standard Webhooks message: its id, its time stamp and its signatures.

``webhook-id`` is ``msg_<event id>``, the same on every attempt (receivers drop
repeats); ``webhook-timestamp`` is the attempt's time in seconds; ``webhook-signature``
is one ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` per live secret,
separated by spaces (rotation).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

from fakewatch.stream.analysis.events import Event


def webhook_id(event: Event) -> str:
    """The Standard Webhooks message id of ``event``: the same for every attempt."""
    return f"msg_{event.id}"


def iso_time(seconds: float) -> str:
    """``seconds`` since the epoch as ISO 8601 in UTC, to the millisecond."""
    stamp = datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def sign(keys: list[bytes], message_id: str, timestamp: str, body: str) -> str:
    """The ``webhook-signature`` header: ``v1,<base64>`` for each key, space-separated."""
    content = f"{message_id}.{timestamp}.{body}".encode()
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()
        for key in keys
    )
