"""The streaming pipeline as a library object: streams in, events out.

``fakewatch serve`` hosts one :class:`Pipeline` for all its streams; anything else (a
scan of a live URL, a test, a cluster shard) can host one too. Per stream, a task takes
the newest frame at the analysis rate (:mod:`~fakewatch.stream.analysis.sampling`),
finds and crops its faces (:mod:`~fakewatch.stream.analysis.faces`), asks the shared
:class:`~fakewatch.stream.analysis.batcher.CropBatcher` for the whole frame's masks and
feeds the scores to a sliding-window vote per stream and per face track
(:mod:`~fakewatch.stream.analysis.analyser`). The stream's vote decides; its decisions
and the sources' health changes become events handed to every sink
(:mod:`~fakewatch.stream.analysis.decisions`). The streams themselves are kept by the
:class:`~fakewatch.stream.analysis.registry.StreamRegistry`.

Blocking work never runs on the event loop: decoding in each source's thread, face
detection and cropping on the detector's threads, inference on the engine's thread.

Neither the detector nor the engine can stop a stream for good. Each runs under a
:class:`~fakewatch.stream.analysis.supervision.Supervisor`: a call that hangs past its
timeout (``analysis.detect_timeout_s``, ``batcher.infer_timeout_s``), or a run of calls
that raise (``restart_after_errors``), drops its frame (``detector_failed`` /
``engine_failed``), marks the pipeline not ready (``/readyz`` says why,
``fakewatch_ready`` is 0), and restarts the component with the factory the host passed;
once the fresh one has answered a warm-up call the pipeline is ready again
(``fakewatch_engine_restarts_total{component}`` counts restarts). Streams go on sampling
throughout; their frames are dropped and counted while a component restarts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from fakewatch.engines.baseline import BaselineSettings
from fakewatch.engines.faces import FaceDetector
from fakewatch.stream.analysis.analyser import FrameAnalyser
from fakewatch.stream.analysis.batcher import CropBatcher
from fakewatch.stream.analysis.decisions import STOPPING, Decisions
from fakewatch.stream.analysis.events import EventSink
from fakewatch.stream.analysis.faces import FaceStage
from fakewatch.stream.analysis.observers import FrameObserver
from fakewatch.stream.analysis.readiness import Readiness
from fakewatch.stream.analysis.registry import StreamRegistry
from fakewatch.stream.analysis.sampling import Sampler
from fakewatch.stream.analysis.saved_settings import MemorySavedSettings, SavedSettings
from fakewatch.stream.analysis.segmenter import Segmenter
from fakewatch.stream.analysis.state import StreamState
from fakewatch.stream.analysis.supervision import HealthObserver
from fakewatch.stream.analysis.tuning import Tuner
from fakewatch.stream.analysis.vote import SlidingWindowVote, Thresholds, new_vote
from fakewatch.stream.config import ServiceConfig
from fakewatch.stream.logs import LOGGER_NAME, log
from fakewatch.stream.metrics import PipelineMetrics
from fakewatch.stream.sources.frames import DropReason
from fakewatch.stream.sources.source import SourceFactory

logger = logging.getLogger(f"{LOGGER_NAME}.pipeline")


class Pipeline:
    """Streams in, events out; see the module docstring."""

    def __init__(
        self,
        config: ServiceConfig,
        segmenter: Segmenter,
        detector: FaceDetector,
        crop_size: int,
        crop_margin: float,
        thresholds: Thresholds,
        sinks: list[EventSink] | None = None,
        metrics: PipelineMetrics | None = None,
        *,
        segmenter_factory: Callable[[], Segmenter] | None = None,
        detector_factory: Callable[[], FaceDetector] | None = None,
        bundle_baseline: BaselineSettings | None = None,
        saved_settings: SavedSettings | None = None,
    ) -> None:
        """``sinks`` receive every event, in their order. ``segmenter_factory`` and
        ``detector_factory`` open a fresh engine or detector when one hung or kept
        failing; without them the same object is reused on fresh threads.
        ``bundle_baseline`` is the bundle's baseline, for streams that turn
        ``use_baseline`` on; ``saved_settings`` keeps the settings streams are given
        through the API (in memory without it)."""
        self.config = config
        self.thresholds = thresholds
        self.tuner = Tuner(config, thresholds, bundle_baseline)
        self.metrics = metrics or PipelineMetrics()
        self.restarts = self.metrics.restarts
        self.readiness = Readiness(self.metrics.ready)
        batch, analysis = config.batcher, config.analysis
        self.batcher = CropBatcher(
            segmenter,
            max_batch=batch.max_batch,
            max_wait_ms=batch.max_wait_ms,
            queue_size=batch.queue_size,
            deadline_s=batch.deadline_s,
            on_batch=self._count_batch,
            on_drop=self._count_batch_drop,
            infer_timeout_s=batch.infer_timeout_s,
            restart_after_errors=batch.restart_after_errors,
            restart_timeout_s=batch.restart_timeout_s,
            segmenter_factory=segmenter_factory,
            crop_size=crop_size,
            on_health=self._health("engine", "the inference engine"),
        )
        self.faces = FaceStage(
            detector,
            analysis,
            config.limits,
            crop_size,
            crop_margin,
            detector_factory=detector_factory,
            on_health=self._health("detector", "the face detector"),
        )
        self.decisions = Decisions(self.metrics, list(sinks or []))
        self.analyser = FrameAnalyser(
            self.faces,
            self.batcher,
            self.decisions,
            self.metrics,
            analysis.detect_every,
        )
        sampler = Sampler(
            self.analyser,
            self.decisions,
            self.metrics,
            analysis.fps,
            config.sources.stall_timeout_s,
        )
        self.registry = StreamRegistry(
            config,
            self.metrics,
            self.decisions,
            self._new_vote,
            sampler.watch,
            self.tuner,
            saved_settings or MemorySavedSettings(),
        )
        self.metrics.queue.set_function(lambda: self.batcher.queued)

    # what hosts read

    @property
    def streams(self) -> dict[str, StreamState]:
        """The streams watched, by id."""
        return self.registry.streams

    @property
    def sinks(self) -> list[EventSink]:
        """Every event goes to these, in order."""
        return self.decisions.sinks

    @property
    def observers(self) -> list[FrameObserver]:
        """Called with every analysed frame."""
        return self.analyser.observers

    @property
    def segmenter(self) -> Segmenter:
        return self.batcher.segmenter

    @property
    def detector(self) -> FaceDetector:
        return self.faces.detector

    @property
    def ready(self) -> bool:
        return self.readiness.ready

    @property
    def not_ready_reason(self) -> str:
        """Why the pipeline is not ready (empty when it is)."""
        return self.readiness.reason

    # lifecycle

    async def start(self) -> None:
        """Start the batcher and warm the detector and engine up; then ``ready`` is True."""
        self.registry.loop = asyncio.get_running_loop()
        self.batcher.start()
        await self.faces.warm_up()
        await self.batcher.warm_up()
        self.metrics.threshold.labels("enter").set(self.thresholds.enter)
        self.metrics.threshold.labels("exit").set(self.thresholds.exit)
        self.readiness.ready_again("start")
        log(
            logger,
            logging.INFO,
            "pipeline.ready",
            enter=self.thresholds.enter,
            exit=self.thresholds.exit,
            calibrated=self.thresholds.calibrated,
        )

    async def close(self, detail: str = STOPPING, drain_s: float = 5.0) -> None:
        """Remove every stream and stop the batcher. Every stream's analysis stops
        first; a stream still alerting then gets a final ``deepfake.cleared`` with
        ``detail``, so no alert stays open in the sinks (call this before closing them);
        then the sources are stopped, each within its own bound, and a detection or
        engine call under way gets up to ``drain_s`` seconds to end (a native call still
        running as the interpreter exits can abort the process)."""
        self.readiness.unready("stopping", "the service is stopping")
        states = list(self.streams.values())
        tasks = [s.task for s in states if s.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for state in states:
            await self.decisions.close_alert(state, time.time(), detail)
        await asyncio.gather(
            *(self.remove(state.id) for state in states),
            self.batcher.stop(drain_s),
            self.faces.close(drain_s),
        )
        await self.registry.saved.close()

    # streams

    async def add_url(
        self,
        url: str,
        name: str | None = None,
        stream_id: str | None = None,
        *,
        configured: dict[str, Any] | None = None,
        given: dict[str, Any] | None = None,
    ) -> StreamState:
        """Start watching a URL; see :meth:`StreamRegistry.add_url`."""
        return await self.registry.add_url(url, name, stream_id, configured=configured, given=given)

    async def add_source(
        self,
        factory: SourceFactory,
        name: str | None = None,
        stream_id: str | None = None,
        *,
        given: dict[str, Any] | None = None,
    ) -> StreamState:
        """Start watching the source ``factory`` builds; the new stream's state."""
        return await self.registry.add_source(factory, name, stream_id, given=given)

    async def change_settings(self, state: StreamState, changes: dict[str, Any]) -> None:
        """Change a running stream's own settings; see :meth:`StreamRegistry.change`."""
        await self.registry.change(state, changes)

    async def remove(self, stream_id: str) -> bool:
        """Stop watching a stream; False if there is no such stream."""
        return await self.registry.remove(stream_id)

    def find(self, key: str) -> StreamState | None:
        """A stream by id or by name."""
        return self.registry.find(key)

    # the work's bookkeeping

    def _new_vote(self, thresholds: Thresholds | None = None) -> SlidingWindowVote[Any]:
        return new_vote(self.config.vote, thresholds or self.thresholds)

    def _health(self, component: str, what: str) -> HealthObserver:
        """Readiness and the restart counter following a supervised component."""

        def follow(healthy: bool, detail: str) -> None:
            if healthy:
                self.readiness.ready_again(component)
            else:
                self.restarts.labels(component).inc()
                self.readiness.unready(component, f"{what} is restarting: {detail}")

        return follow

    def _count_batch(self, size: int, seconds: float) -> None:
        self.metrics.batch_size.observe(size)
        self.metrics.inference.observe(seconds)

    def _count_batch_drop(self, stream: str, reason: DropReason, crops: int) -> None:
        state = next((s for s in self.streams.values() if s.name == stream), None)
        if state is not None:
            state.dropped[reason] += 1
        self.metrics.frames_dropped.labels(stream, str(reason)).inc()
