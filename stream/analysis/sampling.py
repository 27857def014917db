"""The sampling loop of one stream: the newest frame at the analysis rate.

Every ``1 / fps`` seconds (the stream's own ``fps``, read again on every tick, so a
change applies at the next one) the loop counts what the source delivered, updates the
stream's rates and takes the newest frame from its slot (every frame not taken was
counted as dropped when it was replaced). A frame is analysed, unless the stream is calm
(:mod:`~fakewatch.stream.analysis.pace`) and the frame falls between two calm ones: it is
then dropped as ``calm``. No new frame lets the vote's window age. A source that cannot
come back by itself (a WebRTC session) and delivers nothing for
``sources.stall_timeout_s`` ends the loop: its publisher is gone. URL sources have their
own stall watchdog and reconnect.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time

from fakewatch.stream.analysis.analyser import FrameAnalyser
from fakewatch.stream.analysis.decisions import Decisions
from fakewatch.stream.analysis.state import StreamState, count_drop
from fakewatch.stream.logs import LOGGER_NAME, describe_error, log
from fakewatch.stream.metrics import PipelineMetrics
from fakewatch.stream.sources.frames import DropReason

logger = logging.getLogger(f"{LOGGER_NAME}.pipeline")

GONE = "no frame: the publisher is gone"
"""Why a stream whose source cannot come back went down when it stopped sending."""


class Sampler:
    """Runs the sampling loop of a stream; see the module docstring."""

    def __init__(
        self,
        analyser: FrameAnalyser,
        decisions: Decisions,
        metrics: PipelineMetrics,
        fps: float,
        stall_timeout_s: float,
    ) -> None:
        self.analyser = analyser
        self.decisions = decisions
        self.metrics = metrics
        self.interval = 1 / fps
        self.stall_timeout_s = stall_timeout_s

    def _interval(self, state: StreamState) -> float:
        return self.interval if state.tuning is None else 1 / state.tuning.fps

    async def watch(self, state: StreamState) -> None:
        """Take the newest frame at the analysis rate and analyse it, until cancelled or
        until a source that cannot come back stopped sending (then it returns)."""
        loop = asyncio.get_running_loop()
        interval = self._interval(state)
        # Each stream samples at its own phase of the interval, so that streams started
        # together (a restart, a batch of API calls) do not hand the face thread and the
        # batcher all their frames at the same instant, every tick.
        next_tick = loop.time() + random.Random(state.id).random() * interval
        while True:
            interval = self._interval(state)
            next_tick += interval
            delay = next_tick - loop.time()
            if delay < 0:  # analysis is slower than the rate: take the next frame at once
                next_tick, delay = loop.time(), 0.0
            await asyncio.sleep(delay)
            now = time.time()
            received = state.frames.received
            if received != state.counted_received:
                self.metrics.frames_received.labels(state.name).inc(
                    received - state.counted_received
                )
                state.counted_received = received
                state.last_frame_at = time.monotonic()
            elif self._gone(state):
                return
            state.fps_in.update(now, received)
            state.fps_analysed.update(now, state.analysed)
            frame = state.frames.take()
            if frame is None:
                await self.decisions.tick(state, now)
                continue
            if state.tuning is not None and not state.pace.due(loop.time(), state.tuning.pace):
                count_drop(state, DropReason.CALM, self.metrics)
                await self.decisions.tick(state, now)
                continue
            try:
                await self.analyser.analyse(state, frame)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # one bad frame must not end the stream
                log(
                    logger,
                    logging.ERROR,
                    "frame.error",
                    stream=state.name,
                    error=describe_error(error),
                )

    def _gone(self, state: StreamState) -> bool:
        """A source that cannot come back by itself, up before, and silent for the stall
        timeout."""
        source = state.source
        return (
            source is not None
            and not source.recovers
            and state.was_up
            and time.monotonic() - state.last_frame_at > self.stall_timeout_s
        )
