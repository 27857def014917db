"""The service as a test runs it: the real pipeline and HTTP API on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from fakewatch.stream.config import load_config
from fakewatch.stream.events import MemorySink
from fakewatch.stream.pipeline import Pipeline
from fakewatch.stream.service import open_pipeline, running

TOKEN = "test-token-0123456789abcdef"


@dataclass
class Service:
    pipeline: Pipeline
    events: MemorySink
    base: str
    http: aiohttp.ClientSession

    async def add(self, url: str, name: str) -> str:
        async with self.http.post("/api/streams", json={"url": url, "name": name}) as response:
            body = await response.json()
            assert response.status == 201, body
            return str(body["id"])

    async def state(self, stream: str) -> dict[str, Any]:
        async with self.http.get(f"/api/streams/{stream}") as response:
            assert response.status == 200
            return dict(await response.json())

    async def wait_state(
        self, stream: str, check: Callable[[dict[str, Any]], bool], timeout: float = 30
    ) -> dict[str, Any]:
        """Poll the stream's API state until ``check`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            state = await self.state(stream)
            if check(state):
                return state
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting; last state: {state}")
            await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def serving(token: str | None = TOKEN, **overrides: Any) -> AsyncIterator[Service]:
    """The service with local files allowed and ``overrides`` (dotted config keys)."""
    settings = {"server.port": 0, "server.token": token, "sources.allow_local_files": True}
    config = load_config(environ={}, overrides={**settings, **overrides})
    events = MemorySink()
    pipeline = open_pipeline(config, [events])
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        running(config, pipeline) as (_, base),
        aiohttp.ClientSession(base_url=base, headers=headers) as http,
    ):
        yield Service(pipeline, events, base, http)
