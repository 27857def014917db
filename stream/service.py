"""Hosting a pipeline: the engine and detector it runs, the HTTP API, the initial streams.

:func:`open_pipeline` builds a :class:`~fakewatch.stream.pipeline.Pipeline` from a
configuration (the bundle, its runtime, the face detector, the vote thresholds from
the bundle's calibration); :func:`serve` runs it behind the HTTP API until stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiohttp import web

from fakewatch.engines.bundle import EngineBundle
from fakewatch.engines.defaults import default_bundle_path, installed_version
from fakewatch.engines.faces import RetinaFaceDetector
from fakewatch.engines.runtimes import open_engine
from fakewatch.stream.api import BASE_URL, build_app
from fakewatch.stream.batcher import LocalSegmenter
from fakewatch.stream.config import ServiceConfig, VoteConfig
from fakewatch.stream.events import EventSink, LogSink, RecentEvents
from fakewatch.stream.evidence import EvidenceStore
from fakewatch.stream.logs import LOGGER_NAME, log
from fakewatch.stream.metrics import PipelineMetrics
from fakewatch.stream.pipeline import UNCALIBRATED, Pipeline, Thresholds
from fakewatch.stream.webhooks import WebhookSink

logger = logging.getLogger(f"{LOGGER_NAME}.service")


def vote_thresholds(bundle: EngineBundle, vote: VoteConfig) -> Thresholds:
    """Enter and exit thresholds: the configured ones, else the bundle's calibration
    (``suspect`` and ``clear``), else 0.5 and 0.45 marked uncalibrated."""
    calibrated = bundle.manifest.thresholds
    suspect, clear = calibrated.get("suspect"), calibrated.get("clear")
    enter = vote.enter_threshold or (suspect.value if suspect else UNCALIBRATED[0])
    exit_ = vote.exit_threshold or (clear.value if clear else min(enter, UNCALIBRATED[1]))
    return Thresholds(
        enter=enter,
        exit=min(exit_, enter),
        calibrated=vote.enter_threshold is not None or suspect is not None,
    )


def open_pipeline(
    config: ServiceConfig,
    sinks: list[EventSink] | None = None,
    metrics: PipelineMetrics | None = None,
) -> Pipeline:
    """A pipeline on the configured engine (the shipped one by default); not started."""
    bundle = EngineBundle.load(config.engine.bundle or default_bundle_path())
    engine = open_engine(
        bundle,
        config.engine.backend,
        config.engine.device,
        config.engine.precision,
        threads=config.engine.threads,
    )
    analysis, limits = config.analysis, config.limits
    detector = RetinaFaceDetector(
        score_threshold=analysis.detector_threshold,
        detect_size=analysis.detect_size,
        min_face=limits.min_face,
        max_faces=limits.max_faces,
    )
    pipeline = Pipeline(
        config,
        LocalSegmenter(engine),
        detector,
        bundle.spec.input_size,
        bundle.spec.crop_margin,
        vote_thresholds(bundle, config.vote),
        sinks=[LogSink(), *(sinks or [])],
        metrics=metrics,
    )
    pipeline.metrics.info.info(
        {
            "version": installed_version(),
            "engine": engine.info.label,
            "backend": engine.info.backend,
            "model": bundle.manifest.name,
            "model_sha256": bundle.model_sha256[:16],
        }
    )
    log(logger, logging.INFO, "engine.opened", engine=engine.info.label, bundle=str(bundle.folder))
    return pipeline


@dataclass
class Service:
    """What ``fakewatch serve`` runs: the pipeline and the stores around it."""

    config: ServiceConfig
    pipeline: Pipeline
    evidence: EvidenceStore
    recent: RecentEvents
    webhooks: WebhookSink | None = None


def open_service(config: ServiceConfig, sinks: list[EventSink] | None = None) -> Service:
    """The pipeline with its event sinks: log, recent events, evidence, webhooks (when
    endpoints are configured), then ``sinks``."""
    settings = config.evidence
    evidence = EvidenceStore(
        settings.folder,
        max_alerts=settings.max_alerts,
        max_age_s=settings.max_age_days * 86400,
        max_bytes=round(settings.max_megabytes * 1024**2),
    )
    recent = RecentEvents()
    recent.seed(evidence.recent(limit=50)[::-1])  # alerts from before a restart
    metrics = PipelineMetrics()
    webhooks = None
    if config.webhooks.endpoints:  # after the evidence store: its links exist when sent
        webhooks = WebhookSink(config.webhooks, evidence, metrics)
    hooks: list[EventSink] = [webhooks] if webhooks else []
    pipeline = open_pipeline(config, [recent, evidence, *hooks, *(sinks or [])], metrics)
    return Service(config, pipeline, evidence, recent, webhooks)


@contextlib.asynccontextmanager
async def running(service: Service) -> AsyncIterator[tuple[web.AppRunner, str]]:
    """The pipeline started behind the HTTP API with the configured streams; yields the
    runner and the base URL the API answers on."""
    config, pipeline = service.config, service.pipeline
    app = build_app(service)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.server.host, config.server.port)
    await site.start()
    port = config.server.port
    for address in runner.addresses:  # the bound port when 0 was asked
        port = address[1]
        break
    host = config.server.host if ":" not in config.server.host else f"[{config.server.host}]"
    base = f"http://{host}:{port}"
    app[BASE_URL]["url"] = config.server.public_url or base
    try:
        if service.webhooks is not None:
            service.webhooks.set_base_url(app[BASE_URL]["url"])
            await service.webhooks.start()
        await pipeline.start()
        for entry in config.streams:
            await pipeline.add_url(entry.url, entry.name)
        log(logger, logging.INFO, "service.listening", url=base)
        yield runner, base
    finally:
        await pipeline.close()
        if service.webhooks is not None:
            await service.webhooks.close()
        await runner.cleanup()


async def serve(
    service: Service,
    duration_s: float | None = None,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (or ``duration_s``); ``on_listening`` gets the API's URL."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    async with running(service) as (_, base):
        if on_listening is not None:
            on_listening(base)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration_s)
    log(logger, logging.INFO, "service.stopped")
