"""An event sink that keeps every event and lets a test wait for one."""

from __future__ import annotations

import asyncio

from fakewatch.stream.analysis.events import Event, EventType


class MemorySink:
    """Keeps events in a list, and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Condition()

    async def emit(self, event: Event) -> None:
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    def of_type(self, kind: EventType, stream_id: str | None = None) -> list[Event]:
        return [e for e in self.events if e.type == kind and stream_id in (None, e.stream_id)]

    async def wait_for(
        self, kind: EventType, stream_id: str | None = None, count: int = 1, timeout: float = 30
    ) -> list[Event]:
        """The first ``count`` events of ``kind``; :class:`TimeoutError` after ``timeout``."""

        async def enough() -> list[Event]:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.of_type(kind, stream_id)) >= count)
            return self.of_type(kind, stream_id)[:count]

        return await asyncio.wait_for(enough(), timeout)
