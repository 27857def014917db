"""The service as a test runs it: the real pipeline and HTTP API on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from fakewatch.stream.config import load_config
from fakewatch.stream.events import MemorySink
from fakewatch.stream.pipeline import Pipeline
from fakewatch.stream.service import Service as HostedService
from fakewatch.stream.service import open_service, running

TOKEN = "test-token-0123456789abcdef"


@dataclass
class Service:
    pipeline: Pipeline
    events: MemorySink
    base: str
    http: aiohttp.ClientSession
    service: HostedService

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
async def serving(
    state: Path | None = None, token: str | None = TOKEN, **overrides: Any
) -> AsyncIterator[Service]:
    """The service with local files allowed, its stored state under ``state`` (a
    temporary folder by default) and ``overrides`` (dotted config keys)."""
    if state is None:
        with tempfile.TemporaryDirectory() as folder:
            async with serving(Path(folder), token, **overrides) as service:
                yield service
        return
    settings = {
        "server.port": 0,
        "server.token": token,
        "sources.allow_local_files": True,
        "evidence.folder": str(state / "evidence"),
        "webhooks.outbox": str(state / "outbox.sqlite3"),
    }
    config = load_config(environ={}, overrides={**settings, **overrides})
    events = MemorySink()
    service = open_service(config, [events])
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        running(service) as (_, base),
        aiohttp.ClientSession(base_url=base, headers=headers) as http,
    ):
        yield Service(service.pipeline, events, base, http, service)
