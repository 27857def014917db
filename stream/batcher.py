"""Crops from every stream, batched into one engine call at a time, off the event loop.

Each analysed frame submits its face crops as one job. The batcher takes jobs in
arrival order until ``max_batch`` crops are gathered or the oldest has waited
``max_wait_ms``, then runs the :class:`Segmenter` on the whole batch on its engine
thread (one call at a time, so the engine's own threads are the only inference
parallelism) and scores the masks there too. The queue is bounded in crops: a job that
would overflow it pushes out the oldest jobs, and jobs older than ``deadline_s`` are not
run. Every dropped job resolves to ``None`` and is counted with its reason.

Every engine call is bounded by ``infer_timeout_s``. A call that runs past it (a hung
engine), or ``restart_after_errors`` calls in a row that raise, make the batcher drop
that work (``engine_failed``) and restart the engine: the engine thread is abandoned
and replaced, a fresh segmenter is opened with ``segmenter_factory`` on the new thread
and warmed up, and batching goes on. A Python thread cannot be killed, so an abandoned
thread stays blocked in its call until the call returns, if ever; it is a daemon
thread, so it never keeps the process from exiting, and the segmenter it holds is
leaked with it. While the engine restarts, new work is dropped at once
(``engine_failed``) instead of queueing behind it. ``on_health`` hears of the failure
and of the recovery (the pipeline's readiness follows it).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any, ParamSpec, Protocol, TypeVar

import numpy as np

from fakewatch.engines.runtimes.base import Engine
from fakewatch.stream.frames import DropReason
from fakewatch.stream.logs import LOGGER_NAME, describe_error, log

logger = logging.getLogger(f"{LOGGER_NAME}.batcher")

P = ParamSpec("P")
T = TypeVar("T")


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
        scores, areas = self._scoring.score(masks, self._margin)
        return masks, scores, areas


class AbandonedError(RuntimeError):
    """Work that was still queued on a :class:`DaemonExecutor` when it was shut down."""


_WorkItem = tuple[Future[Any], Callable[[], Any]]


class DaemonExecutor(Executor):
    """A fixed set of daemon worker threads, for calls that may hang (engines, detectors).

    Unlike :class:`~concurrent.futures.ThreadPoolExecutor`, whose threads the interpreter
    joins at exit, a thread stuck here in a hung native call never keeps the process
    from exiting. ``shutdown(wait=False)`` abandons the threads: a busy one finishes its
    call (whenever that returns) and ends. Work not yet started fails with
    :class:`AbandonedError` instead of being cancelled, so a coroutine awaiting it sees
    an error rather than a ``CancelledError`` it would take for its own cancellation.
    """

    def __init__(self, workers: int = 1, name: str = "worker") -> None:
        self._work: queue.SimpleQueue[_WorkItem | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}-{index}", daemon=True)
            for index in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the executor is shut down")
            self._work.put((future, functools.partial(fn, *args, **kwargs)))
        return future

    def _serve(self) -> None:
        while (item := self._work.get()) is not None:
            future, work = item
            del item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = work()
            except BaseException as error:
                future.set_exception(error)
            else:
                future.set_result(result)
            del future, work  # keep neither the inputs nor the result alive while idle

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop taking work; queued work fails with :class:`AbandonedError` (whatever
        ``cancel_futures`` says). ``wait`` joins the threads, which a hung call blocks."""
        with self._lock:
            if not self._closed:
                self._closed = True
                while True:
                    try:
                        item = self._work.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None and item[0].set_running_or_notify_cancel():
                        item[0].set_exception(AbandonedError("its worker thread was abandoned"))
                for _ in self._threads:
                    self._work.put(None)
        if wait:
            for thread in self._threads:
                thread.join()

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds in all for the threads to end (after
        :meth:`shutdown`); whether they all did."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    async def drain(self, timeout: float) -> bool:
        """Shut down, then wait up to ``timeout`` seconds (off the event loop) for a call
        under way to end: a native call still running when the interpreter exits can
        abort the process. Whether the threads ended."""
        self.shutdown(wait=False)
        return await asyncio.get_running_loop().run_in_executor(None, self.join, timeout)


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
    restarts: int = 0


BatchObserver = Callable[[int, float], None]
"""Called after each engine call with the batch size and its seconds."""
DropObserver = Callable[[str, DropReason, int], None]
"""Called with the stream, the reason and the number of crops dropped."""
HealthObserver = Callable[[bool, str], None]
"""Called with ``False`` and why when the engine failed and is being restarted, and with
``True`` and a detail once a fresh engine has answered its warm-up inference."""

RESTART_BACKOFF_S = (0.5, 30.0)
"""First and longest delay between attempts to open a fresh engine."""


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
        self.segmenter = segmenter
        self.max_batch = max(1, min(max_batch, segmenter.max_batch))
        self.max_wait_s = max_wait_ms / 1000
        self.queue_size = max(queue_size, self.max_batch)
        self.deadline_s = deadline_s
        self.infer_timeout_s = infer_timeout_s
        self.restart_after_errors = max(1, restart_after_errors)
        self.restart_timeout_s = restart_timeout_s
        self.stats = BatchStats()
        self.restarting = False
        self._factory = segmenter_factory
        self._crop_shape: tuple[int, ...] | None = (
            None if crop_size is None else (crop_size, crop_size, 3)
        )
        self._on_batch = on_batch
        self._on_drop = on_drop
        self._on_health = on_health
        self._queue: collections.deque[_Job] = collections.deque()
        self._queued_crops = 0
        self._errors = 0  # engine calls in a row that raised
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._executor = DaemonExecutor(1, "engine")

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
        if self._crop_shape is not None:
            blank = np.zeros((1, *self._crop_shape), np.uint8)
            await self._call(self.segmenter.segment, blank, timeout=self.restart_timeout_s)

    async def stop(self, drain_s: float = 0.0) -> None:
        """Stop batching (queued work is dropped) and give an engine call under way up
        to ``drain_s`` seconds to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        while self._queue:
            self._drop(self._queue.popleft(), DropReason.QUEUE_FULL)
        if drain_s > 0:
            await self._executor.drain(drain_s)
        else:
            self._executor.shutdown(wait=False)

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

    async def _call(self, fn: Callable[..., T], *args: Any, timeout: float) -> T:
        """``fn(*args)`` on the engine thread, given up after ``timeout`` seconds (the
        thread is left running it: see :meth:`_restart`)."""
        call = functools.partial(fn, *args)
        async with asyncio.timeout(timeout):
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)

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
            masks, scores, areas = await self._call(
                self.segmenter.segment, crops, timeout=self.infer_timeout_s
            )
        except TimeoutError:  # hung: its thread is abandoned
            for job in batch:
                self._drop(job, DropReason.ENGINE_FAILED, queued=False)
            await self._restart(
                f"an engine call of {len(crops)} crops took longer than "
                f"batcher.infer_timeout_s ({self.infer_timeout_s:g} s)"
            )
            return
        except Exception as error:  # the engine failed: its work is dropped and counted
            for job in batch:
                self._drop(job, DropReason.ENGINE_FAILED, queued=False)
            self._errors += 1
            detail = describe_error(error)
            log(
                logger,
                logging.ERROR,
                "engine.error",
                error=detail,
                crops=len(crops),
                errors_in_a_row=self._errors,
                restart_after=self.restart_after_errors,
            )
            if self._errors >= self.restart_after_errors:
                await self._restart(f"{self._errors} engine calls in a row failed: {detail}")
            return
        self._errors = 0
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

    async def _restart(self, reason: str) -> None:
        """Abandon the engine thread and open, warm up and use a fresh engine; retried
        with a growing delay until one answers. Work queued or submitted meanwhile is
        dropped (``engine_failed``)."""
        self.restarting = True
        self.stats.restarts += 1
        started = time.monotonic()
        log(logger, logging.ERROR, "engine.failed", reason=reason, action="restarting the engine")
        if self._on_health is not None:
            self._on_health(False, reason)
        while self._queue:
            self._drop(self._queue.popleft(), DropReason.ENGINE_FAILED)
        delay, longest = RESTART_BACKOFF_S
        while True:
            old, self._executor = self._executor, DaemonExecutor(1, "engine")
            old.shutdown(wait=False)  # a hung call keeps its thread; it is not waited for
            try:
                segmenter = await self._call(self._open_engine, timeout=self.restart_timeout_s)
            except Exception as error:
                log(
                    logger,
                    logging.ERROR,
                    "engine.restart_failed",
                    error=describe_error(error),
                    retry_in_s=delay,
                )
                await asyncio.sleep(delay)
                delay = min(longest, delay * 2)
                continue
            break
        self.segmenter = segmenter
        self._errors = 0
        self.restarting = False
        seconds = time.monotonic() - started
        log(logger, logging.INFO, "engine.restarted", seconds=round(seconds, 3))
        if self._on_health is not None:
            self._on_health(True, f"engine restarted in {seconds:.2f} s")

    def _open_engine(self) -> Segmenter:
        """A fresh segmenter (or the same one) after one warm-up inference; runs on the
        new engine thread."""
        segmenter = self._factory() if self._factory is not None else self.segmenter
        if self._crop_shape is not None:
            segmenter.segment(np.zeros((1, *self._crop_shape), np.uint8))
        return segmenter
