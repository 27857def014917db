"""Crops from every stream, batched into one engine call at a time, off the event loop.

Each analysed frame submits its face crops as one job. The batcher takes jobs in
arrival order until ``max_batch`` crops are gathered or the oldest has waited
``max_wait_ms``, then runs the :class:`~fakewatch.stream.analysis.segmenter.Segmenter` on
the whole batch on its engine thread (one call at a time, so the engine's own threads
are the only inference parallelism) and scores the masks there too. The queue is bounded
in crops: a job that would overflow it pushes out the oldest jobs, and jobs older than
``deadline_s`` are not run. Every dropped job resolves to ``None`` and is counted with
its reason.

The engine is run by a :class:`~fakewatch.stream.analysis.supervision.Supervisor`: every
call is bounded by ``infer_timeout_s``, and a call that runs past it (a hung engine), or
``restart_after_errors`` calls in a row that raise, drop that work (``engine_failed``)
and restart the engine with ``segmenter_factory``. While the engine restarts, queued and
new work is dropped at once (``engine_failed``) instead of queueing behind it.
``on_health`` hears of the failure and of the recovery (the pipeline's readiness follows
it).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fakewatch.stream.analysis.segmenter import Segmentation, Segmenter
from fakewatch.stream.analysis.supervision import ComponentFailed, HealthObserver, Supervisor
from fakewatch.stream.logs import LOGGER_NAME
from fakewatch.stream.sources.frames import DropReason

logger = logging.getLogger(f"{LOGGER_NAME}.batcher")


@dataclass
class _Job:
    crops: np.ndarray
    submitted: float
    future: asyncio.Future[Segmentation | None]
    stream: str = field(default="")


@dataclass
class BatchStats:
    """Running totals, read by the metrics and the API."""

    batches: int = 0
    crops: int = 0
    inference_seconds: float = 0.0
    dropped: collections.Counter[str] = field(default_factory=collections.Counter)
    restarts: int = 0


BatchObserver = Callable[[int, float], None]
"""Called after each engine call with the batch size and its seconds."""
DropObserver = Callable[[str, DropReason, int], None]
"""Called with the stream, the reason and the number of crops dropped."""


class CropBatcher:
    """Cross-stream batching in front of a :class:`Segmenter`; see the module docstring."""

    def __init__(
        self,
        segmenter: Segmenter,
        max_batch: int = 8,
        max_wait_ms: float = 20.0,
        queue_size: int = 64,
        deadline_s: float = 5.0,
        on_batch: BatchObserver | None = None,
        on_drop: DropObserver | None = None,
        *,
        infer_timeout_s: float = 10.0,
        restart_after_errors: int = 3,
        restart_timeout_s: float = 60.0,
        segmenter_factory: Callable[[], Segmenter] | None = None,
        crop_size: int | None = None,
        on_health: HealthObserver | None = None,
    ) -> None:
        """``segmenter_factory`` opens a fresh segmenter when the engine is restarted
        (without one the same segmenter is reused on a fresh thread); ``crop_size`` is
        the side of the blank crop of the warm-up inference."""
        self.max_batch = max(1, min(max_batch, segmenter.max_batch))
        self.max_wait_s = max_wait_ms / 1000
        self.queue_size = max(queue_size, self.max_batch)
        self.deadline_s = deadline_s
        self.stats = BatchStats()
        self._crop_shape: tuple[int, ...] | None = (
            None if crop_size is None else (crop_size, crop_size, 3)
        )
        self._on_batch = on_batch
        self._on_drop = on_drop
        self._on_health = on_health
        self._queue: collections.deque[_Job] = collections.deque()
        self._queued_crops = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.engine: Supervisor[Segmenter] = Supervisor(
            segmenter,
            name="engine",
            calls="engine calls",
            timeout_key="batcher.infer_timeout_s",
            logger=logger,
            warm_up=self._warm,
            reopen=segmenter_factory,
            call_timeout_s=infer_timeout_s,
            restart_after_errors=restart_after_errors,
            restart_timeout_s=restart_timeout_s,
            on_health=self._health,
        )

    @property
    def segmenter(self) -> Segmenter:
        """The segmenter the engine calls go to (a fresh one after each restart)."""
        return self.engine.component

    @segmenter.setter
    def segmenter(self, segmenter: Segmenter) -> None:
        self.engine.component = segmenter

    @property
    def restarting(self) -> bool:
        """Whether the engine is being restarted."""
        return self.engine.restarting

    @property
    def queued(self) -> int:
        """Crops waiting for inference."""
        return self._queued_crops

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def warm_up(self) -> None:
        """One inference on a blank crop (the first is often the slowest), bounded by
        ``restart_timeout_s``; raises what the engine raised, or :class:`TimeoutError`."""
        await self.engine.warm_up()

    async def stop(self, drain_s: float = 0.0) -> None:
        """Stop batching (queued work is dropped) and give an engine call under way up
        to ``drain_s`` seconds to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        while self._queue:
            self._drop(self._queue.popleft(), DropReason.QUEUE_FULL)
        await self.engine.close(drain_s)

    async def segment(self, crops: np.ndarray, stream: str = "") -> Segmentation | None:
        """The masks and scores of one frame's ``crops``; ``None`` if the job was dropped."""
        if len(crops) == 0:
            empty = np.zeros((0,), np.float32)
            return Segmentation(np.zeros((0, *crops.shape[1:3]), np.float32), empty, empty)
        if len(crops) > self.queue_size:
            raise ValueError(f"{len(crops)} crops exceed the queue size {self.queue_size}")
        if self.restarting:  # nothing to run it on: say so now rather than queue it
            self._count(stream, DropReason.ENGINE_FAILED, len(crops))
            return None
        future: asyncio.Future[Segmentation | None] = asyncio.get_running_loop().create_future()
        while self._queued_crops + len(crops) > self.queue_size:
            self._drop(self._queue.popleft(), DropReason.QUEUE_FULL)
        self._queue.append(_Job(crops, time.monotonic(), future, stream))
        self._queued_crops += len(crops)
        self._wakeup.set()
        return await future

    def _drop(self, job: _Job, reason: DropReason, queued: bool = True) -> None:
        if queued:
            self._queued_crops -= len(job.crops)
        if not job.future.done():
            job.future.set_result(None)
        self._count(job.stream, reason, len(job.crops))

    def _count(self, stream: str, reason: DropReason, crops: int) -> None:
        self.stats.dropped[reason] += crops
        if self._on_drop is not None:
            self._on_drop(stream, reason, crops)

    def _warm(self, segmenter: Segmenter) -> None:
        """One inference on a blank crop of the last size seen; runs on the engine thread."""
        if self._crop_shape is not None:
            segmenter.segment(np.zeros((1, *self._crop_shape), np.uint8))

    def _health(self, healthy: bool, detail: str) -> None:
        if not healthy:  # the engine is restarting: what waits for it is dropped
            self.stats.restarts += 1
            while self._queue:
                self._drop(self._queue.popleft(), DropReason.ENGINE_FAILED)
        if self._on_health is not None:
            self._on_health(healthy, detail)

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch = await self._gather()
                if batch:
                    await self._infer(batch)

    async def _gather(self) -> list[_Job]:
        """Jobs for one engine call: up to ``max_batch`` crops or ``max_wait_s`` of waiting."""
        deadline = self._queue[0].submitted + self.max_wait_s
        while self._queued_crops < self.max_batch and (wait := deadline - time.monotonic()) > 0:
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), wait)
            except TimeoutError:
                break
        batch: list[_Job] = []
        size = 0
        now = time.monotonic()
        while self._queue:
            job = self._queue[0]
            if job.future.done():  # its frame was abandoned (stream removed)
                self._queued_crops -= len(self._queue.popleft().crops)
                continue
            if now - job.submitted > self.deadline_s:
                self._drop(self._queue.popleft(), DropReason.STALE)
                continue
            if batch and size + len(job.crops) > self.max_batch:
                break
            batch.append(self._queue.popleft())
            self._queued_crops -= len(job.crops)
            size += len(job.crops)
        return batch

    async def _infer(self, batch: list[_Job]) -> None:
        crops = np.concatenate([job.crops for job in batch])
        self._crop_shape = crops.shape[1:]
        started = time.perf_counter()
        try:
            masks, scores, areas = await self.engine.call(
                lambda segmenter: segmenter.segment(crops),
                what=f"an engine call of {len(crops)} crops",
                crops=len(crops),
            )
        except ComponentFailed:  # hung, raised or restarting: the work is dropped, counted
            for job in batch:
                self._drop(job, DropReason.ENGINE_FAILED, queued=False)
            return
        seconds = time.perf_counter() - started
        self.stats.batches += 1
        self.stats.crops += len(crops)
        self.stats.inference_seconds += seconds
        if self._on_batch is not None:
            self._on_batch(len(crops), seconds)
        start = 0
        for job in batch:
            end = start + len(job.crops)
            if not job.future.done():
                job.future.set_result(
                    Segmentation(masks[start:end], scores[start:end], areas[start:end])
                )
            start = end
