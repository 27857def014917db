"""A small typed client of the API, async (:class:`AsyncClient`) and blocking
(:class:`Client`), that reads every answer through the API's own models
(:mod:`fakewatch.stream.http.schemas`)::

    with Client("http://127.0.0.1:8080", token="...") as api:
        for stream in api.streams():
            print(stream.name, stream.status)

An error answer raises :class:`ApiError` with its status and the service's message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
from pydantic import BaseModel

from fakewatch.stream.http.schemas import (
    Event,
    EventList,
    NewStream,
    ReviewRequest,
    StreamAdded,
    StreamList,
    StreamView,
    Verdict,
)

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class ApiError(Exception):
    """An error answer of the API (or no answer at all: ``status`` 0)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.message = message


class AsyncClient:
    """The API at ``url`` with ``token`` (``server.token``), on one aiohttp session."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 30) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._headers = headers
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(
        self,
        method: str,
        path: str,
        body: BaseModel | dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """The JSON answer of ``method path`` (``None`` for an empty one)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._headers, timeout=self._timeout)
        data = (
            body.model_dump(mode="json", exclude_unset=True)
            if isinstance(body, BaseModel)
            else body
        )
        try:
            async with self._session.request(
                method, self.url + path, json=data, params=params
            ) as response:
                text = await response.text()
                found = await response.json(content_type=None) if text else None
        except aiohttp.ClientError as error:
            raise ApiError(0, f"cannot reach {self.url}: {error}") from error
        except ValueError:
            raise ApiError(response.status, f"not a JSON answer: {text[:200]!r}") from None
        if response.status >= 400:
            message = found.get("error") if isinstance(found, dict) else None
            raise ApiError(response.status, str(message or text[:200] or response.reason))
        return found

    async def streams(self) -> list[StreamView]:
        return StreamList.model_validate(await self._call("GET", "/api/streams")).streams

    async def stream(self, key: str) -> StreamView:
        """A stream by id or name."""
        return StreamView.model_validate(await self._call("GET", f"/api/streams/{_part(key)}"))

    async def add_stream(self, url: str, name: str | None = None) -> StreamAdded:
        request = NewStream(url=url, name=name)
        return StreamAdded.model_validate(await self._call("POST", "/api/streams", request))

    async def remove_stream(self, key: str) -> None:
        await self._call("DELETE", f"/api/streams/{_part(key)}")

    async def update_stream(self, key: str, settings: dict[str, Any]) -> StreamView:
        """Change a stream's own settings (``PATCH``; ``None`` removes one); the stream as
        the service answers."""
        found = await self._call("PATCH", f"/api/streams/{_part(key)}", settings)
        return StreamView.model_validate(found)

    async def events(
        self, limit: int = 50, stream: str | None = None, after: str | None = None
    ) -> list[Event]:
        """Recent events, newest first; with ``after``, only those newer than that one."""
        params = {"limit": str(limit)}
        if stream is not None:
            params["stream"] = stream
        if after is not None:
            params["after"] = after
        return EventList.model_validate(
            await self._call("GET", "/api/events", params=params)
        ).events

    async def review(self, event_id: str, verdict: Verdict, note: str = "") -> Event:
        """Give a person's verdict on an alert; the event with its review."""
        request = ReviewRequest(verdict=verdict, note=note)
        found = await self._call("POST", f"/api/events/{_part(event_id)}/review", request)
        return Event.model_validate(found)


class Client:
    """:class:`AsyncClient` for code without an event loop: each call runs one."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 30) -> None:
        self.url, self._token, self._timeout_s = url, token, timeout_s

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    def _run(self, call: Callable[[AsyncClient], Awaitable[T]]) -> T:
        async def run() -> T:
            async with AsyncClient(self.url, self._token, self._timeout_s) as client:
                return await call(client)

        return asyncio.run(run())

    def streams(self) -> list[StreamView]:
        return self._run(lambda c: c.streams())

    def stream(self, key: str) -> StreamView:
        return self._run(lambda c: c.stream(key))

    def add_stream(self, url: str, name: str | None = None) -> StreamAdded:
        return self._run(lambda c: c.add_stream(url, name))

    def remove_stream(self, key: str) -> None:
        self._run(lambda c: c.remove_stream(key))

    def update_stream(self, key: str, settings: dict[str, Any]) -> StreamView:
        return self._run(lambda c: c.update_stream(key, settings))

    def events(
        self, limit: int = 50, stream: str | None = None, after: str | None = None
    ) -> list[Event]:
        return self._run(lambda c: c.events(limit, stream, after))

    def review(self, event_id: str, verdict: Verdict, note: str = "") -> Event:
        return self._run(lambda c: c.review(event_id, verdict, note))


def _part(text: str) -> str:
    """``text`` as one path segment."""
    return quote(text, safe="")
