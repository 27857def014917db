"""WebRTC input the service cannot keep up with, and a peer that will not close.

* A WHIP publisher keeps sending 640x480 video at 15 fps while inference is paused (the
  engine call blocks): every frame is still read from aiortc (its receive queues stay
  short), superseded frames are counted, and RSS stays flat. ``FAKEWATCH_SOAK_S=300``
  makes it the 5-minute soak of BENCHMARKS.md.
* A WHIP session whose peer connection hangs in ``close()`` is abandoned within the
  source's close timeout (5 s): the DELETE answers and the stream is gone.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from tests.support.load import Figures, soak_seconds, webrtc_paused
from tests.support.media import face_clip
from tests.support.service import TOKEN, serving
from tests.support.webrtc import close_publisher, publish_whip

pytestmark = pytest.mark.reliability

FPS = 15.0
CLOSE_TIMEOUT_S = 5.0  # WebRTCSource's default, which the API uses


def test_webrtc_frames_keep_being_read_and_memory_stays_flat_while_inference_is_paused() -> None:
    seconds = soak_seconds(30.0)
    figures: Figures = asyncio.run(webrtc_paused(seconds, FPS, warm_up_s=10.0))
    print("\n" + figures.table())
    (stream,) = figures.per_stream
    (total,) = figures.totals
    mib = 1024**2
    print(
        f"RSS growth over {figures.seconds:.0f} s after warm-up: "
        f"{(figures.rss_end - figures.rss_warm) / mib:+.1f} MiB ({figures.rss_growth:+.1%}), "
        f"max {figures.rss_max_after_warm_up / mib:.0f} MiB; aiortc queues at most "
        f"{figures.aiortc_queue_max} frames; {stream.received} frames received, "
        f"{stream.analysed} analysed"
    )

    # the frames kept coming and were read, but none was analysed: inference was paused
    assert stream.received >= 0.5 * FPS * seconds
    assert stream.analysed == 0
    assert 0 <= total.unaccounted <= 3, total
    assert figures.aiortc_queue_max is not None and figures.aiortc_queue_max <= 10
    assert figures.rss_max_after_warm_up <= 1.05 * figures.rss_warm
    assert figures.rss_end <= 1.05 * figures.rss_warm


@pytest.fixture(scope="module")
def frames(astronaut: np.ndarray) -> list[np.ndarray]:
    return face_clip(astronaut, 30, (640, 480))


def test_a_peer_whose_close_hangs_is_abandoned_within_the_close_timeout(
    frames: list[np.ndarray],
) -> None:
    async def run() -> None:
        async with serving() as service:
            session = await publish_whip(
                f"{service.base}/api/whip?name=stuck", frames=frames, fps=FPS, token=TOKEN
            )
            assert session.location is not None
            stream = session.location.rsplit("/", 1)[1]
            source = service.pipeline.streams[stream].source
            pc = source._pc  # type: ignore[union-attr]
            close = pc.close
            hung = asyncio.Event()

            async def hang() -> None:
                hung.set()
                await asyncio.Event().wait()  # never set: close() never returns

            try:
                await service.wait_state(stream, lambda s: s["status"] == "up")
                pc.close = hang
                started = time.monotonic()
                async with service.http.delete(session.location) as response:
                    status = response.status
                took = time.monotonic() - started
                async with service.http.get(f"/api/streams/{stream}") as response:
                    after = response.status
            finally:
                pc.close = close
                await close()  # what the service abandoned
                await session.http.close()
                await close_publisher(session.pc)

        print(
            f"\npeer connection close() hanging: DELETE answered {status} after {took:.2f} s "
            f"(close timeout {CLOSE_TIMEOUT_S:g} s); the stream then answers {after}"
        )
        assert hung.is_set()
        assert status == 200
        assert took <= CLOSE_TIMEOUT_S + 1.5
        assert after == 404 and stream not in service.pipeline.streams

    asyncio.run(run())
