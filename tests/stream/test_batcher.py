"""Cross-stream batching: full batches, the wait limit, bounded queue, deadlines, errors."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np

from fakewatch.stream.analysis.batcher import CropBatcher
from fakewatch.stream.sources.frames import DropReason


class MeanSegmenter:
    """Masks filled with each crop's mean / 255, so results can be traced to their crop."""

    def __init__(self, max_batch: int = 64, delay_s: float = 0.0) -> None:
        self.max_batch = max_batch
        self.delay_s = delay_s
        self.calls: list[int] = []
        self.threads: set[str] = set()
        self.release = threading.Event()
        self.release.set()

    def segment(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.release.wait(5)
        self.calls.append(len(crops))
        self.threads.add(threading.current_thread().name)
        time.sleep(self.delay_s)
        values = crops.reshape(len(crops), -1).mean(axis=1) / 255
        masks = np.broadcast_to(values[:, None, None], crops.shape[:3]).astype(np.float32)
        return masks, values.astype(np.float32), np.zeros(len(crops), np.float32)


def crops(value: int, count: int = 1) -> np.ndarray:
    return np.full((count, 8, 8, 3), value, np.uint8)


def test_frames_from_many_streams_share_one_engine_call() -> None:
    async def run() -> None:
        segmenter = MeanSegmenter()
        batcher = CropBatcher(segmenter, max_batch=8, max_wait_ms=200)
        batcher.start()
        results = await asyncio.gather(
            *(batcher.segment(crops(10 * i, 2), f"s{i}") for i in range(4))
        )
        await batcher.stop()
        assert segmenter.calls == [8]
        for i, result in enumerate(results):
            assert result is not None
            np.testing.assert_allclose(result.scores, [10 * i / 255] * 2, rtol=1e-6)
        assert threading.current_thread().name not in segmenter.threads

    asyncio.run(run())


def test_a_lone_frame_waits_at_most_max_wait() -> None:
    async def run() -> float:
        batcher = CropBatcher(MeanSegmenter(), max_batch=8, max_wait_ms=50)
        batcher.start()
        started = time.perf_counter()
        assert await batcher.segment(crops(1)) is not None
        await batcher.stop()
        return time.perf_counter() - started

    assert asyncio.run(run()) < 1.0


def test_overload_drops_the_oldest_and_counts_it() -> None:
    async def run() -> None:
        segmenter = MeanSegmenter()
        segmenter.release.clear()  # the engine is busy
        drops: list[tuple[str, DropReason, int]] = []
        batcher = CropBatcher(
            segmenter, max_batch=2, max_wait_ms=0, queue_size=4,
            on_drop=lambda s, r, n: drops.append((s, r, n)),
        )  # fmt: skip
        batcher.start()
        first = asyncio.ensure_future(batcher.segment(crops(1, 2), "a"))
        await asyncio.sleep(0.05)  # taken by the worker, which blocks
        waiting = [asyncio.ensure_future(batcher.segment(crops(2 + i, 2), "b")) for i in range(3)]
        await asyncio.sleep(0.05)
        segmenter.release.set()
        results = await asyncio.gather(first, *waiting)
        await batcher.stop()
        assert results[0] is not None
        assert results[1] is None  # the oldest waiting job made room for the newest
        assert results[2] is not None and results[3] is not None
        assert drops == [("b", DropReason.QUEUE_FULL, 2)]
        assert batcher.stats.dropped[DropReason.QUEUE_FULL] == 2

    asyncio.run(run())


def test_work_past_its_deadline_is_not_run() -> None:
    async def run() -> None:
        segmenter = MeanSegmenter()
        segmenter.release.clear()
        batcher = CropBatcher(segmenter, max_batch=1, max_wait_ms=0, deadline_s=0.1)
        batcher.start()
        first = asyncio.ensure_future(batcher.segment(crops(1)))
        await asyncio.sleep(0.05)
        late = asyncio.ensure_future(batcher.segment(crops(2)))
        await asyncio.sleep(0.3)
        segmenter.release.set()
        assert await first is not None
        assert await late is None
        assert batcher.stats.dropped[DropReason.STALE] == 1
        await batcher.stop()

    asyncio.run(run())


def test_an_engine_error_drops_every_waiting_frame_and_the_batcher_goes_on() -> None:
    class FailsOnce(MeanSegmenter):
        def segment(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            if not self.calls:
                self.calls.append(-1)
                raise RuntimeError("engine exploded")
            return super().segment(crops)

    async def run() -> None:
        batcher = CropBatcher(FailsOnce(), max_batch=4, max_wait_ms=50)
        batcher.start()
        results = await asyncio.gather(batcher.segment(crops(1)), batcher.segment(crops(2)))
        assert results == [None, None]  # dropped and counted, not raised into the frames
        assert batcher.stats.dropped[DropReason.ENGINE_FAILED] == 2
        assert batcher.stats.restarts == 0  # one error is not a run of them
        assert await asyncio.wait_for(batcher.segment(crops(3)), 5) is not None
        await batcher.stop()

    asyncio.run(run())
