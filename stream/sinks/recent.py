"""The recent events, kept in memory for the API and the web page."""

from __future__ import annotations

import collections
from typing import Any

from fakewatch.stream.analysis.events import Event


class RecentEvents:
    """The last ``size`` events as dictionaries, for the API and the web page."""

    def __init__(self, size: int = 200) -> None:
        self.size = size
        self._events: collections.deque[dict[str, Any]] = collections.deque(maxlen=size)

    async def emit(self, event: Event) -> None:
        self._events.append(event.to_dict())

    def seed(self, events: list[dict[str, Any]]) -> None:
        """Older events (oldest first) known from before a restart."""
        for event in events:
            self._events.append(event)

    def latest(self, limit: int = 50, stream: str | None = None) -> list[dict[str, Any]]:
        """Newest first, optionally of one stream (id or name)."""
        chosen = [
            e
            for e in reversed(self._events)
            if stream is None or stream in (e["stream"]["id"], e["stream"]["name"])
        ]
        return chosen[:limit]
