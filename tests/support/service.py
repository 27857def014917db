"""The service as a test runs it: the real pipeline and HTTP API on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from fakewatch.stream.analysis.pipeline import Pipeline
from fakewatch.stream.config import load_config
from fakewatch.stream.host import Host, open_service, running
from fakewatch.stream.host import Service as HostedService
from tests.support.events import MemorySink

TOKEN = "test-token-0123456789abcdef"

T = TypeVar("T")


@dataclass
class Service:
    pipeline: Pipeline
    events: MemorySink
    base: str
    http: aiohttp.ClientSession
    service: HostedService
    host: Host

    async def add(self, url: str, name: str) -> str:
        async with self.http.post("/api/streams", json={"url": url, "name": name}) as response:
            body = await response.json()
            assert response.status == 201, body
            return str(body["id"])

    async def state(self, stream: str) -> dict[str, Any]:
        async with self.http.get(f"/api/streams/{stream}") as response:
            assert response.status == 200
            return dict(await response.json())

    async def metrics_text(self) -> str:
        """What ``/metrics`` answers now."""
        async with self.http.get("/metrics") as response:
            return await response.text()

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
        running(service) as (host, base),
        aiohttp.ClientSession(base_url=base, headers=headers) as http,
    ):
        yield Service(service.pipeline, events, base, http, service, host)


class ServiceThread:
    """:func:`tests.support.service.serving` running in a thread with its own event loop."""

    def __init__(self, **overrides: Any) -> None:
        self._overrides = overrides
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._service: Service | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fakewatch-service", daemon=True)

    @property
    def service(self) -> Service:
        assert self._service is not None, "the service is not running"
        return self._service

    @property
    def base(self) -> str:
        return self.service.base

    def start(self, timeout: float = 60) -> ServiceThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"the service did not start within {timeout} s")
        if self._error is not None:
            raise RuntimeError("the service failed to start") from self._error
        return self

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        """Run ``coroutine`` on the service's loop and return its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def close(self, timeout: float = 30) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as error:  # reported by start()
            self._error = error
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serving(**self._overrides) as service:
            self._service = service
            self._ready.set()
            await self._stop.wait()
