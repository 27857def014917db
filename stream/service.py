"""Hosting a pipeline: the engine and detector it runs, the HTTP API, the initial streams.

:func:`open_pipeline` builds a :class:`~fakewatch.stream.pipeline.Pipeline` from a
configuration (the bundle, its runtime, the face detector, the vote thresholds from
the bundle's calibration); :func:`serve` runs it behind the HTTP API until stopped.

A stop (SIGTERM, Ctrl-C, the end of ``--duration``) is bounded by
``server.shutdown_timeout_s``: the listening sockets close first (no new requests),
then every stream stops (a stream still alerting gets a final ``deepfake.cleared``,
"service stopping", while the sinks are still open), then the webhook workers stop
(undelivered rows stay pending in the SQLite outbox and are sent by the next start),
then open HTTP connections close. A step that overruns its share of the time is
abandoned and logged (``service.stop_timeout``), so the process always exits. A
second signal during the stop is not caught: SIGTERM ends the process at once, Ctrl-C
raises ``KeyboardInterrupt``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from fakewatch.engines.bundle import EngineBundle
from fakewatch.engines.defaults import default_bundle_path, installed_version
from fakewatch.engines.faces import FaceDetector, RetinaFaceDetector
from fakewatch.engines.runtimes import open_engine
from fakewatch.stream.api import BASE_URL, build_app
from fakewatch.stream.batcher import LocalSegmenter, Segmenter
from fakewatch.stream.config import ServiceConfig, VoteConfig
from fakewatch.stream.events import EventSink, LogSink, RecentEvents
from fakewatch.stream.evidence import EvidenceStore
from fakewatch.stream.logs import LOGGER_NAME, describe_error, log
from fakewatch.stream.metrics import PipelineMetrics
from fakewatch.stream.pipeline import UNCALIBRATED, Pipeline, Thresholds
from fakewatch.stream.webhooks import WebhookSink

logger = logging.getLogger(f"{LOGGER_NAME}.service")

HTTP_GRACE_S = 1.0
"""How long open HTTP requests may finish once a stop reaches the HTTP server."""
WEBHOOK_GRACE_S = 2.0
"""How long webhook requests under way may finish at a stop (within its time): one a
receiver has answered is recorded, and so not sent again by the next start."""

SegmenterWrapper = Callable[[Segmenter], Segmenter]
"""Wraps every segmenter the service opens (at start and at each engine restart)."""
DetectorWrapper = Callable[[FaceDetector], FaceDetector]
"""Wraps every face detector the service opens."""


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


def open_local_segmenter(config: ServiceConfig, bundle: EngineBundle) -> LocalSegmenter:
    """The bundle's engine in this process, with the configured backend and precision."""
    engine = open_engine(
        bundle,
        config.engine.backend,
        config.engine.device,
        config.engine.precision,
        threads=config.engine.threads,
    )
    return LocalSegmenter(engine)


def open_pipeline(
    config: ServiceConfig,
    sinks: list[EventSink] | None = None,
    metrics: PipelineMetrics | None = None,
    *,
    wrap_segmenter: SegmenterWrapper | None = None,
    wrap_detector: DetectorWrapper | None = None,
    remote_segmenter: Callable[[], Segmenter] | None = None,
) -> Pipeline:
    """A pipeline on the configured engine (the shipped one by default); not started.

    The pipeline gets factories that open the engine and the detector again, for its
    restarts after a hang; ``wrap_segmenter`` and ``wrap_detector`` wrap every one
    opened (fault injection in tests, instrumentation). With ``remote_segmenter`` the
    crops go to the segmenter it opens (a cluster's shared one) instead of a local engine;
    the bundle still gives the crop rule and the thresholds."""
    bundle = EngineBundle.load(config.engine.bundle or default_bundle_path())
    analysis, limits = config.analysis, config.limits

    def open_unwrapped() -> Segmenter:
        if remote_segmenter is not None:
            return remote_segmenter()
        return open_local_segmenter(config, bundle)

    def wrap(segmenter: Segmenter) -> Segmenter:
        return wrap_segmenter(segmenter) if wrap_segmenter is not None else segmenter

    def open_segmenter() -> Segmenter:
        return wrap(open_unwrapped())

    def open_detector() -> FaceDetector:
        detector: FaceDetector = RetinaFaceDetector(
            score_threshold=analysis.detector_threshold,
            detect_size=analysis.detect_size,
            min_face=limits.min_face,
            max_faces=limits.max_faces,
        )
        return wrap_detector(detector) if wrap_detector is not None else detector

    first = open_unwrapped()
    pipeline = Pipeline(
        config,
        wrap(first),
        open_detector(),
        bundle.spec.input_size,
        bundle.spec.crop_margin,
        vote_thresholds(bundle, config.vote),
        sinks=[LogSink(), *(sinks or [])],
        metrics=metrics,
        segmenter_factory=open_segmenter,
        detector_factory=open_detector,
    )
    label, backend = ("remote", "remote")
    if isinstance(first, LocalSegmenter):
        label, backend = first.engine.info.label, first.engine.info.backend
    pipeline.metrics.info.info(
        {
            "version": installed_version(),
            "engine": label,
            "backend": backend,
            "model": bundle.manifest.name,
            "model_sha256": bundle.model_sha256[:16],
        }
    )
    log(logger, logging.INFO, "engine.opened", engine=label, bundle=str(bundle.folder))
    return pipeline


@dataclass
class Service:
    """What ``fakewatch serve`` runs: the pipeline and the stores around it."""

    config: ServiceConfig
    pipeline: Pipeline
    evidence: EvidenceStore
    recent: RecentEvents
    webhooks: WebhookSink | None = None


def open_service(
    config: ServiceConfig,
    sinks: list[EventSink] | None = None,
    *,
    wrap_segmenter: SegmenterWrapper | None = None,
    wrap_detector: DetectorWrapper | None = None,
) -> Service:
    """The pipeline with its event sinks: log, recent events, evidence, webhooks (when
    endpoints are configured), then ``sinks``; the wrappers go to :func:`open_pipeline`."""
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
    pipeline = open_pipeline(
        config,
        [recent, evidence, *hooks, *(sinks or [])],
        metrics,
        wrap_segmenter=wrap_segmenter,
        wrap_detector=wrap_detector,
    )
    return Service(config, pipeline, evidence, recent, webhooks)


@contextlib.asynccontextmanager
async def running(service: Service) -> AsyncIterator[tuple[web.AppRunner, str]]:
    """The pipeline started behind the HTTP API with the configured streams; yields the
    runner and the base URL the API answers on."""
    config, pipeline = service.config, service.pipeline
    app = build_app(service)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=HTTP_GRACE_S)
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
        await shut_down(service, runner)


async def shut_down(service: Service, runner: web.AppRunner) -> None:
    """Stop the service within ``server.shutdown_timeout_s``; see the module docstring."""
    timeout = service.config.server.shutdown_timeout_s
    loop = asyncio.get_running_loop()
    started = loop.time()
    deadline = started + timeout
    reserve = min(3.0, timeout / 3)  # kept for the webhooks and the HTTP server
    log(logger, logging.INFO, "service.stopping", timeout_s=timeout)

    async def step(name: str, work: Callable[[], Awaitable[None]], until: float) -> None:
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
            log(
                logger,
                logging.ERROR,
                "service.stop_error",
                step=name,
                error=describe_error(error),
            )

    async def stop_listening() -> None:
        for site in list(runner.sites):
            await site.stop()

    async def stop_streams() -> None:
        drain = max(0.0, deadline - reserve - loop.time() - 0.5)
        await service.pipeline.close(drain_s=min(drain, 5.0))

    await step("listen", stop_listening, deadline - reserve)
    await step("streams", stop_streams, deadline - reserve)
    if (hooks := service.webhooks) is not None:  # after the streams: final events are queued
        until = deadline - reserve / 3
        grace = max(0.0, min(WEBHOOK_GRACE_S, until - loop.time() - 1.0))
        await step("webhooks", lambda: hooks.close(grace), until)
    await step("evidence", service.evidence.close, deadline - reserve / 3)
    await step("http", runner.cleanup, deadline)
    log(logger, logging.INFO, "service.stopped", seconds=round(loop.time() - started, 3))


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
