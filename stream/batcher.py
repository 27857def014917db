"""Crops from every stream, batched into one engine call at a time, off the event loop.

Each analysed frame submits its face crops as one job. The batcher takes jobs in
arrival order until ``max_batch`` crops are gathered or the oldest has waited
``max_wait_ms``, then runs the :class:`Segmenter` on the whole batch in a worker thread
(one at a time, so the engine's own threads are the only inference parallelism) and
scores the masks there too. The queue is bounded in crops: a job that would overflow it
pushes out the oldest jobs, and jobs older than ``deadline_s`` are not run. Every
dropped job resolves to ``None`` and is counted with its reason.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from fakewatch.engines.runtimes.base import Engine
from fakewatch.engines.scoring import score_masks
from fakewatch.stream.frames import DropReason


class Segmenter(Protocol):
    """What the pipeline runs crops through: a local engine today, a remote service later.

    ``segment`` takes a whole batch of RGB ``uint8 (N, S, S, 3)`` crops and returns
    ``(masks (N, S, S) float32 in 0..1, scores (N,), areas (N,))``. It is called from a
    worker thread, one call at a time.
    """

    max_batch: int

    def segment(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


class LocalSegmenter:
    """An :class:`Engine` in this process, scoring with its bundle's scoring rule."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.max_batch = engine.max_batch
        self._margin = engine.bundle.spec.crop_margin
        self._scoring = engine.bundle.manifest.scoring

    def segment(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        masks = self.engine.infer_batches(crops)
        scores, areas = score_masks(
            masks, self._margin, self._scoring.top_fraction, self._scoring.area_threshold
        )
        return masks, scores, areas


@dataclass
class Segmentation:
    """One job's result: a mask, score and area per crop, in the order submitted."""

    masks: np.ndarray
    scores: np.ndarray
    areas: np.ndarray


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
    ) -> None:
        self.segmenter = segmenter
        self.max_batch = max(1, min(max_batch, segmenter.max_batch))
        self.max_wait_s = max_wait_ms / 1000
        self.queue_size = max(queue_size, self.max_batch)
        self.deadline_s = deadline_s
        self.stats = BatchStats()
        self._on_batch = on_batch
        self._on_drop = on_drop
        self._queue: collections.deque[_Job] = collections.deque()
        self._queued_crops = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        """Crops waiting for inference."""
        return self._queued_crops

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="batcher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        while self._queue:
            self._drop(self._queue.popleft(), DropReason.QUEUE_FULL)

    async def segment(self, crops: np.ndarray, stream: str = "") -> Segmentation | None:
        """The masks and scores of one frame's ``crops``; ``None`` if the job was dropped."""
        if len(crops) == 0:
            empty = np.zeros((0,), np.float32)
            return Segmentation(np.zeros((0, *crops.shape[1:3]), np.float32), empty, empty)
        if len(crops) > self.queue_size:
            raise ValueError(f"{len(crops)} crops exceed the queue size {self.queue_size}")
        future: asyncio.Future[Segmentation | None] = asyncio.get_running_loop().create_future()
        while self._queued_crops + len(crops) > self.queue_size:
            self._drop(self._queue.popleft(), DropReason.QUEUE_FULL)
        self._queue.append(_Job(crops, time.monotonic(), future, stream))
        self._queued_crops += len(crops)
        self._wakeup.set()
        return await future

    def _drop(self, job: _Job, reason: DropReason) -> None:
        self._queued_crops -= len(job.crops)
        self.stats.dropped[reason] += len(job.crops)
        if not job.future.done():
            job.future.set_result(None)
        if self._on_drop is not None:
            self._on_drop(job.stream, reason, len(job.crops))

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
        started = time.perf_counter()
        try:
            masks, scores, areas = await asyncio.to_thread(self.segmenter.segment, crops)
        except Exception as error:  # the engine failed: every waiting frame learns why
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(error)
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
