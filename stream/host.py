"""Hosting the service: the sinks in their one order, the HTTP API, listening, serving
and a bounded stop. ``fakewatch serve`` and the cluster's front are both hosts built
here.

:func:`open_sinks` builds the stores every host keeps, in the order events must reach
them: the recent events, then the evidence store, then the webhooks (a webhook's body
links to the evidence the evidence store has written by then). :class:`Host` serves the
HTTP API over a host's streams, runs its work (a pipeline in this process, or the
cluster's alert sender and supervisor) and stops it all. :func:`open_service`,
:func:`running` and :func:`serve` are ``fakewatch serve``: one pipeline for all streams.

A stop (SIGTERM, Ctrl-C, the end of ``--duration``, a cluster's planned shutdown) is
bounded by ``server.shutdown_timeout_s``: the listening sockets close first (no new
requests), then the work stops (every stream of a pipeline stops, and one still alerting
gets a final ``deepfake.cleared``, "service stopping", while the sinks are still open),
then the webhook workers stop (undelivered rows stay pending in the SQLite outbox and
are sent by the next start), then open HTTP connections close. A step that overruns
its share of the time is abandoned and logged (``service.stop_timeout``), so the process
always exits. A second signal during the stop is not caught: SIGTERM ends the process at
once, Ctrl-C raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from aiohttp import web

from fakewatch.stream.analysis.events import EventSink
from fakewatch.stream.analysis.factory import DetectorWrapper, SegmenterWrapper, open_pipeline
from fakewatch.stream.analysis.pipeline import Pipeline
from fakewatch.stream.analysis.saved_settings import SQLiteSavedSettings
from fakewatch.stream.config import ServerConfig, ServiceConfig
from fakewatch.stream.http.app import build_app
from fakewatch.stream.http.control import StreamControl
from fakewatch.stream.http.keys import BASE_URL
from fakewatch.stream.http.local import LocalStreams
from fakewatch.stream.http.routes import Route
from fakewatch.stream.logs import LOGGER_NAME, describe_error, log
from fakewatch.stream.metrics import PipelineMetrics
from fakewatch.stream.sinks.clips import ClipRecorder
from fakewatch.stream.sinks.evidence import EvidenceStore
from fakewatch.stream.sinks.links import LinkSigner, load_link_key
from fakewatch.stream.sinks.log import LogSink
from fakewatch.stream.sinks.recent import RecentEvents
from fakewatch.stream.sinks.webhooks import WebhookSink

logger = logging.getLogger(f"{LOGGER_NAME}.service")

HTTP_GRACE_S = 1.0
"""How long open HTTP requests may finish once a stop reaches the HTTP server."""
WEBHOOK_GRACE_S = 2.0
"""How long webhook requests under way may finish at a stop (within its time): one a
receiver has answered is recorded, and so not sent again by the next start."""
SAVED_SETTINGS_FILE = "stream-settings.sqlite3"
"""The SQLite file of the settings streams were given through the API."""
RECENT_FROM_EVIDENCE = 50
"""Alerts from before a restart, read back from the evidence store into the recent events."""


@dataclass
class Sinks:
    """The stores every host keeps: recent events, evidence, webhooks (when endpoints are
    configured)."""

    recent: RecentEvents
    evidence: EvidenceStore
    webhooks: WebhookSink | None = None

    def ordered(self) -> list[EventSink]:
        """The sinks in the one order events must reach them: the evidence before the
        webhooks, whose bodies link to what the evidence store wrote."""
        return [self.recent, self.evidence, *([self.webhooks] if self.webhooks else [])]

    async def start(self, base_url: str) -> None:
        """Start recording clips and delivering webhooks, with evidence links under
        ``base_url``."""
        if self.evidence.clips is not None:
            self.evidence.clips.start()
        if self.webhooks is not None:
            self.webhooks.set_base_url(base_url)
            await self.webhooks.start()


def open_sinks(config: ServiceConfig, metrics: PipelineMetrics, clips: bool = False) -> Sinks:
    """The stores of the events, as configured (the one place a host builds them). With
    ``clips`` (a host whose frames reach :attr:`EvidenceStore.clips`' observer) alerts
    get clips, unless ``evidence.clip_before_s`` is 0."""
    settings = config.evidence
    recorder = None
    if clips and settings.clip_before_s > 0:
        recorder = ClipRecorder(
            settings.clip_before_s, settings.clip_after_s, settings.clip_fps, settings.clip_height
        )
    key = settings.link_key
    evidence = EvidenceStore(
        settings.folder,
        max_alerts=settings.max_alerts,
        max_age_s=settings.max_age_days * 86400,
        max_bytes=round(settings.max_megabytes * 1024**2),
        clips=recorder,
        signer=LinkSigner(
            key.get_secret_value().encode() if key else load_link_key(settings.folder),
            settings.link_ttl_s,
        ),
    )
    recent = RecentEvents()
    recent.seed(evidence.recent(limit=RECENT_FROM_EVIDENCE)[::-1])  # alerts before a restart
    webhooks = None
    if config.webhooks.endpoints:
        webhooks = WebhookSink(config.webhooks, evidence, metrics)
    return Sinks(recent, evidence, webhooks)


class Work(Protocol):
    """What a host runs behind its API."""

    async def start(self) -> None:
        """Begin; called once the API listens and the webhooks deliver."""
        ...

    async def stop(self, drain_s: float) -> None:
        """End, giving a call under way up to ``drain_s`` seconds."""
        ...


def public_base_url(server: ServerConfig, port: int) -> str:
    """Where clients reach the API: ``server.public_url``, else the bound address (this
    machine's address when bound to every interface)."""
    if server.public_url:
        return server.public_url
    return listening_url(server.host, port)


def listening_url(host: str, port: int) -> str:
    """``http://host:port``, the address of this machine for ``0.0.0.0``."""
    if host == "0.0.0.0":
        with contextlib.suppress(OSError):
            host = socket.gethostbyname(socket.gethostname())
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


class Host:
    """The HTTP API over ``control``'s streams and ``sinks``, and ``work`` behind it:
    :meth:`start` listens, starts the webhooks and the work; :meth:`stop` ends it all
    within ``server.shutdown_timeout_s`` (see the module docstring). ``routes`` are the
    host's own, beside the shared ones."""

    def __init__(
        self,
        config: ServiceConfig,
        control: StreamControl,
        sinks: Sinks,
        work: Work,
        routes: Sequence[Route] = (),
    ) -> None:
        self.config = config
        self.sinks = sinks
        self.work = work
        self.app = build_app(config, control, sinks.evidence, sinks.recent, routes)
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=HTTP_GRACE_S)
        self.url: str | None = None
        """The address the API answers on, once listening."""

    async def start(self) -> str:
        """Listen, start the webhooks and the work; the address the API answers on. If
        the webhooks or the work fail to start, everything is stopped again."""
        server = self.config.server
        await self.runner.setup()
        await web.TCPSite(self.runner, server.host, server.port).start()
        port = next((address[1] for address in self.runner.addresses), server.port)
        self.url = listening_url(server.host, port)
        public = public_base_url(server, port)
        self.app[BASE_URL]["url"] = public
        try:
            await self.sinks.start(public)
            await self.work.start()
        except BaseException:
            await self.stop()
            raise
        log(logger, logging.INFO, "service.listening", url=self.url)
        return self.url

    async def stop(self) -> None:
        """Stop within ``server.shutdown_timeout_s``; see the module docstring."""
        timeout = self.config.server.shutdown_timeout_s
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + timeout
        reserve = min(3.0, timeout / 3)  # kept for the webhooks and the HTTP server
        log(logger, logging.INFO, "service.stopping", timeout_s=timeout)

        async def stop_listening() -> None:
            for site in list(self.runner.sites):
                await site.stop()

        async def stop_work() -> None:
            drain = max(0.0, deadline - reserve - loop.time() - 0.5)
            await self.work.stop(min(drain, 5.0))

        await _step("listen", stop_listening, deadline - reserve)
        await _step("streams", stop_work, deadline - reserve)
        if (hooks := self.sinks.webhooks) is not None:  # after the work: final events queued
            until = deadline - reserve / 3
            grace = max(0.0, min(WEBHOOK_GRACE_S, until - loop.time() - 1.0))
            await _step("webhooks", lambda: hooks.close(grace), until)
        await _step("evidence", self.sinks.evidence.close, deadline - reserve / 3)
        await _step("http", self.runner.cleanup, deadline)
        log(logger, logging.INFO, "service.stopped", seconds=round(loop.time() - started, 3))


async def _step(name: str, work: Callable[[], Awaitable[None]], until: float) -> None:
    """One step of a stop, abandoned at ``until`` (loop time); errors are logged."""
    try:
        async with asyncio.timeout_at(until):
            await work()
    except TimeoutError:
        log(
            logger,
            logging.WARNING,
            "service.stop_timeout",
            step=name,
            detail="abandoned to stop within server.shutdown_timeout_s",
        )
    except Exception as error:  # the next steps must run all the same
        log(logger, logging.ERROR, "service.stop_error", step=name, error=describe_error(error))


# ``fakewatch serve``: one pipeline in this process


@dataclass
class Service:
    """What ``fakewatch serve`` runs: the pipeline and the stores around it."""

    config: ServiceConfig
    pipeline: Pipeline
    sinks: Sinks

    @property
    def evidence(self) -> EvidenceStore:
        return self.sinks.evidence

    @property
    def recent(self) -> RecentEvents:
        return self.sinks.recent

    @property
    def webhooks(self) -> WebhookSink | None:
        return self.sinks.webhooks

    async def start(self) -> None:
        """Start the pipeline and the configured streams."""
        await self.pipeline.start()
        for entry in self.config.streams:
            await self.pipeline.add_url(entry.url, entry.name, configured=entry.settings())

    async def stop(self, drain_s: float) -> None:
        await self.pipeline.close(drain_s=drain_s)


def open_service(
    config: ServiceConfig,
    sinks: list[EventSink] | None = None,
    *,
    wrap_segmenter: SegmenterWrapper | None = None,
    wrap_detector: DetectorWrapper | None = None,
) -> Service:
    """The pipeline with its event sinks: the log, then the stores (:func:`open_sinks`),
    then ``sinks``; the wrappers go to
    :func:`~fakewatch.stream.analysis.factory.open_pipeline`."""
    metrics = PipelineMetrics()
    stores = open_sinks(config, metrics, clips=True)
    pipeline = open_pipeline(
        config,
        [LogSink(), *stores.ordered(), *(sinks or [])],
        metrics,
        wrap_segmenter=wrap_segmenter,
        wrap_detector=wrap_detector,
        saved_settings=SQLiteSavedSettings(saved_settings_path(config)),
    )
    if stores.evidence.clips is not None:
        pipeline.observers.append(stores.evidence.clips.observe)
    return Service(config, pipeline, stores)


def saved_settings_path(config: ServiceConfig) -> Path:
    """Where the settings streams are given through the API are kept: beside the webhook
    outbox, in the service's state folder."""
    return config.webhooks.outbox.parent / SAVED_SETTINGS_FILE


@contextlib.asynccontextmanager
async def running(service: Service) -> AsyncIterator[tuple[Host, str]]:
    """The pipeline started behind the HTTP API with the configured streams; yields the
    host and the address the API answers on."""
    host = Host(service.config, LocalStreams(service.pipeline), service.sinks, service)
    base = await host.start()
    try:
        yield host, base
    finally:
        await host.stop()


async def serve(
    service: Service,
    duration_s: float | None = None,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (or ``duration_s``), then stop within
    ``server.shutdown_timeout_s``; ``on_listening`` gets the API's URL. A second signal
    is left to its default action (SIGTERM ends the process, Ctrl-C raises
    ``KeyboardInterrupt``)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def on_signal(sig: signal.Signals) -> None:
        log(
            logger,
            logging.INFO,
            "service.signal",
            signal=sig.name,
            detail="stopping; the same signal again stops at once",
        )
        stop.set()
        for each in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(each)

    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal, sig)
    async with running(service) as (_, base):
        if on_listening is not None:
            on_listening(base)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration_s)
