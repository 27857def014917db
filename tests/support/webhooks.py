"""Webhook receivers: real HTTP servers that verify every delivery with
``standardwebhooks``, the reference library, and keep what came.

:class:`Receiver` runs on the test's event loop and answers as the test scripts it;
:class:`ThreadedReceiver` runs in a thread, for tests that drive the service
synchronously. The rest builds the service's webhook settings and events for them.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from fakewatch.engines.crop import Box
from fakewatch.stream.analysis.events import Event, EventType, Evidence, WindowSummary
from fakewatch.stream.sinks.outbox import Delivery
from tests.support.prometheus import metric
from tests.support.service import Service

SECRET = "whsec_" + base64.b64encode(b"fakewatch cluster tests key!").decode()
"""A fixed secret, for receivers the service is configured for before they start."""

FAST = {"webhooks.initial_backoff_s": 0.05, "webhooks.max_backoff_s": 0.5}


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


@dataclass(frozen=True)
class Reply:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    """What the receiver answered."""
    verified: tuple[bool, ...]
    """Whether the signature verified with each of the receiver's secrets."""
    time: float

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A webhook receiver on a free loopback port: answers from ``script`` first (in
    order), then ``fixed[path]``, then 204; records and verifies every request."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = secrets
        self.verifiers = [Webhook(s) for s in secrets]
        self.script: list[Reply] = []
        self.fixed: dict[str, Reply] = {}
        self.requests: list[Request] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        headers = {k.lower(): v for k, v in request.headers.items()}
        verified = []
        for verifier in self.verifiers:
            try:
                verifier.verify(body, headers)
                verified.append(True)
            except WebhookVerificationError:
                verified.append(False)
        reply = self.script.pop(0) if self.script else self.fixed.get(request.path, Reply())
        async with self._changed:
            self.requests.append(
                Request(request.path, headers, body, reply.status, tuple(verified), time.time())
            )
            self._changed.notify_all()
        await asyncio.sleep(reply.delay)
        return web.Response(status=reply.status, headers=reply.headers)

    def delivered(self, path: str | None = None) -> list[Request]:
        """The requests answered 2xx (to ``path``)."""
        return [
            r for r in self.requests if 200 <= r.status < 300 and (path is None or r.path == path)
        ]

    async def wait(self, check: Callable[[Receiver], bool], timeout: float = 15) -> None:
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: check(self))
        except TimeoutError:
            summary = [(r.path, r.id, r.status) for r in self.requests]
            raise AssertionError(f"timed out; requests so far: {summary}") from None


@contextlib.asynccontextmanager
async def receiving() -> AsyncIterator[Receiver]:
    """A started receiver with two live secrets."""
    receiver = Receiver([new_secret(), new_secret()])
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


def run(check: Callable[[Receiver], Awaitable[None]]) -> None:
    """Run ``check`` with a receiver on a fresh event loop."""

    async def main() -> None:
        async with receiving() as receiver:
            await check(receiver)

    asyncio.run(main())


def endpoint(receiver: Receiver, name: str = "ops", path: str = "/hook", **extra: Any) -> Any:
    return {
        "name": name,
        "url": receiver.url + path,
        "secrets": receiver.secrets,
        "allow_private": True,
        **extra,
    }


def hooks(*endpoints: Any, **settings: Any) -> dict[str, Any]:
    """``serving`` overrides: these endpoints, fast retries."""
    return {**FAST, "webhooks.endpoints": list(endpoints), **settings}


def health(kind: EventType = EventType.STREAM_UP, stream: str = "lobby") -> Event:
    return Event(kind, "s1", stream, "rtsp://***@cam.local/live", detail="640x360")


def alert() -> Event:
    """A suspected event with evidence, as the pipeline makes one."""
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)
    crop = np.ascontiguousarray(frame[40:168, 96:224])
    mask = np.zeros((128, 128), np.float32)
    mask[32:96, 32:96] = 0.95
    evidence = Evidence(
        frame=frame,
        mask=mask,
        crop=crop,
        face_box=Box(120.0, 60.0, 200.0, 150.0),
        crop_box=Box(96.0, 40.0, 224.0, 168.0),
        score=0.93,
        capture_time=time.time() - 0.5,
        track="t1",
    )
    window = WindowSummary(0.9, (0.88, 0.9, 0.93), (1.0, 1.2, 1.4), 0.86, 0.834)
    return Event(
        EventType.SUSPECTED,
        "s1",
        "lobby",
        "rtsp://***@cam.local/live",
        detail="window score 0.900 >= 0.860",
        track="t1",
        box=Box(120.0, 60.0, 200.0, 150.0),
        window=window,
        evidence=evidence,
        tracks={"t1": 0.9},
    )


async def emit(service: Service, *events: Event) -> None:
    """Hand events to every sink of the service, in the pipeline's order."""
    for event in events:
        for sink in service.pipeline.sinks:
            await sink.emit(event)


async def outbox_rows(service: Service) -> list[Delivery]:
    assert service.service.webhooks is not None
    return await service.service.webhooks.outbox.deliveries()


async def wait_rows(
    service: Service, check: Callable[[list[Delivery]], bool], timeout: float = 10
) -> list[Delivery]:
    deadline = time.monotonic() + timeout
    while True:
        rows = await outbox_rows(service)
        if check(rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; outbox: {rows}")
        await asyncio.sleep(0.05)


def outcomes(text: str, endpoint: str) -> dict[str, float]:
    """``fakewatch_webhook_deliveries_total`` of ``endpoint`` by outcome."""
    names = ("delivered", "retried", "failed", "disabled", "dropped")
    total = "fakewatch_webhook_deliveries_total"
    return {o: metric(text, total, endpoint=endpoint, outcome=o) for o in names}


class ThreadedReceiver:
    """An HTTP server in a thread that verifies each delivery's signature with ``secret``
    and keeps what came, for tests driving the service synchronously (the cluster's Ray
    driver); :class:`Receiver` is the asyncio one."""

    def __init__(self, secret: str = SECRET) -> None:
        self.deliveries: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        receiver = self
        self.secret = secret
        verifier = Webhook(secret)  # the Standard Webhooks reference library

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                message_id = self.headers.get("webhook-id", "")
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    verifier.verify(body, headers)
                    ok = True
                except WebhookVerificationError:
                    ok = False
                with receiver.lock:
                    receiver.deliveries.append({"id": message_id, "ok": ok, **json.loads(body)})
                self.send_response(204 if ok else 400)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def of(self, kind: str, stream: str) -> list[dict[str, Any]]:
        with self.lock:
            return [
                d
                for d in self.deliveries
                if d["type"] == kind and d["data"]["stream"]["name"] == stream
            ]

    def distinct(self, kind: str, stream: str) -> collections.Counter[str]:
        return collections.Counter(d["id"] for d in self.of(kind, stream))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
