"""A hung or failing engine or detector: noticed, its work dropped and counted, the
component restarted, ``/readyz`` following it, and no stream stopped for good.

The service is the real one (``open_service`` + ``running``) watching a looping local
file of a real face at 640x480. The faults are ones nothing else can make on demand: a
wrapper around the real segmenter (or detector) that the service opens, at start and at
every restart, whose call really blocks on a ``threading.Event`` (a hang the pipeline
must abandon) or raises. The wrappers share one switch, so a fault fires once however
many engines the restarts open.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from fakewatch.engines.faces import Face, FaceDetector
from fakewatch.stream.analysis.pipeline import Pipeline
from fakewatch.stream.analysis.segmenter import Segmenter
from fakewatch.stream.config import load_config
from fakewatch.stream.host import open_service, running
from fakewatch.stream.sources.frames import DropReason
from tests.support.media import face_clip, write_video
from tests.support.prometheus import metric

TOKEN = "stall-test-token-0123456789"
TIMEOUT_S = 1.5  # batcher.infer_timeout_s and analysis.detect_timeout_s in these tests


@dataclass
class Fault:
    """A switch shared by every wrapped engine or detector: ``hangs`` calls block until
    ``release`` is set, then ``raises`` calls raise."""

    hangs: int = 0
    raises: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    hung_at: list[float] = field(default_factory=list)
    raised_at: list[float] = field(default_factory=list)
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def strike(self) -> None:
        """Called at the start of every wrapped call, on its worker thread."""
        with self._lock:
            self.calls += 1
            hang = self.hangs > 0
            self.hangs -= hang
            fail = not hang and self.raises > 0
            self.raises -= fail
        if hang:
            self.hung_at.append(time.monotonic())
            self.release.wait()  # a real hang: this thread is stuck until the test ends
        if fail:
            self.raised_at.append(time.monotonic())
            raise RuntimeError("injected engine fault")


class FaultySegmenter:
    """The real segmenter, behind a :class:`Fault`."""

    def __init__(self, inner: Segmenter, fault: Fault) -> None:
        self.inner, self.fault = inner, fault
        self.max_batch = inner.max_batch

    def segment(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.fault.strike()
        return self.inner.segment(crops)


class FaultyDetector:
    """The real face detector, behind a :class:`Fault`."""

    def __init__(self, inner: FaceDetector, fault: Fault) -> None:
        self.inner, self.fault = inner, fault

    def detect(self, frame: np.ndarray) -> list[Face]:
        self.fault.strike()
        return self.inner.detect(frame)


@dataclass
class Running:
    pipeline: Pipeline
    http: aiohttp.ClientSession

    async def ready(self) -> tuple[int, str]:
        async with self.http.get("/readyz") as response:
            body = await response.json()
            return response.status, str(body.get("error", body.get("status")))

    async def state(self, stream: str) -> dict[str, Any]:
        async with self.http.get(f"/api/streams/{stream}") as response:
            assert response.status == 200
            return dict(await response.json())

    async def metric(self, name: str, **labels: str) -> float:
        async with self.http.get("/metrics") as response:
            return metric(await response.text(), name, **labels)

    async def wait_state(self, stream: str, check: Any, timeout: float = 20) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            state = await self.state(stream)
            if check(state):
                return state
            assert time.monotonic() < deadline, f"timed out waiting; last state: {state}"
            await asyncio.sleep(0.1)


@contextlib.asynccontextmanager
async def serving(
    fault: Fault, component: str, **overrides: Any
) -> AsyncIterator[tuple[Running, Fault]]:
    """The real service with the ``component`` ("engine" or "detector") behind ``fault``."""
    with tempfile.TemporaryDirectory() as folder:
        settings = {
            "server.port": 0,
            "server.token": TOKEN,
            "sources.allow_local_files": True,
            "evidence.folder": str(Path(folder) / "evidence"),
            "webhooks.outbox": str(Path(folder) / "outbox.sqlite3"),
            "batcher.infer_timeout_s": TIMEOUT_S,
            "analysis.detect_timeout_s": TIMEOUT_S,
            "analysis.detect_every": 1,  # every analysed frame reaches the detector
        }
        config = load_config(environ={}, overrides={**settings, **overrides})
        if component == "engine":
            service = open_service(config, wrap_segmenter=lambda s: FaultySegmenter(s, fault))
        else:
            service = open_service(config, wrap_detector=lambda d: FaultyDetector(d, fault))
        headers = {"Authorization": f"Bearer {TOKEN}"}
        try:
            async with (
                running(service) as (_, base),
                aiohttp.ClientSession(base_url=base, headers=headers) as http,
            ):
                yield Running(service.pipeline, http), fault
        finally:
            fault.release.set()  # let the abandoned thread finish its call and end


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, astronaut: np.ndarray) -> Path:
    """Six seconds of a real face at 640x480 (a local file the source loops)."""
    path = tmp_path_factory.mktemp("stall") / "face.mp4"
    return write_video(path, face_clip(astronaut, 60, (640, 480)))


@pytest.fixture
def fault() -> Iterator[Fault]:
    fault = Fault()
    yield fault
    fault.release.set()


async def add_stream(service: Running, clip: Path) -> str:
    async with service.http.post("/api/streams", json={"url": str(clip), "name": "cam"}) as r:
        assert r.status == 201, await r.text()
        return str((await r.json())["id"])


async def watch_readiness(
    service: Running, since: float, timeout: float = 30
) -> tuple[float, float, str]:
    """Poll ``/readyz`` until it has gone 503 and back to 200: the seconds from ``since``
    to each, and the 503's reason."""
    deadline = time.monotonic() + timeout
    noticed: float | None = None
    reason = ""
    while time.monotonic() < deadline:
        status, detail = await service.ready()
        now = time.monotonic()
        if status == 503 and noticed is None:
            noticed, reason = now - since, detail
        elif status == 200 and noticed is not None:
            return noticed, now - since, reason
        await asyncio.sleep(0.02)
    raise AssertionError(f"/readyz did not go 503 and back within {timeout} s (noticed={noticed})")


def assert_stream_alive(service: Running, stream: str) -> None:
    state = service.pipeline.streams[stream]
    assert state.task is not None and not state.task.done(), "the stream's task ended"


@pytest.mark.reliability
@pytest.mark.parametrize("mode", ["hang", "errors"])
def test_a_hung_or_failing_engine_is_restarted_and_the_stream_goes_on(
    clip: Path, fault: Fault, mode: str
) -> None:
    async def check() -> None:
        async with serving(fault, "engine") as (service, _):
            stream = await add_stream(service, clip)
            await service.wait_state(stream, lambda s: s["faces_analysed"] >= 3)
            assert (await service.ready())[0] == 200
            if mode == "hang":
                fault.hangs = 1
            else:
                fault.raises = service.pipeline.config.batcher.restart_after_errors
            armed = time.monotonic()
            noticed, recovered, reason = await watch_readiness(service, armed)
            first = (fault.hung_at or fault.raised_at)[0]
            noticed_after = noticed - (first - armed)
            before = await service.state(stream)
            after = await service.wait_state(
                stream, lambda s: s["faces_analysed"] >= before["faces_analysed"] + 5
            )
            dropped = after["frames_dropped"].get(DropReason.ENGINE_FAILED, 0)
            restarts = await service.metric("fakewatch_engine_restarts_total", component="engine")
            failed_crops = await service.metric(
                "fakewatch_frames_dropped_total", stream="cam", reason="engine_failed"
            )
            print(
                f"\nengine {mode}: noticed after {noticed_after:.2f} s "
                f"(infer_timeout_s={TIMEOUT_S}), /readyz 503 for {recovered - noticed:.2f} s "
                f"({reason!r}), recovered {recovered - (first - armed):.2f} s after the fault; "
                f"{dropped} jobs dropped as engine_failed, {restarts:.0f} restart, "
                f"faces analysed {before['faces_analysed']} -> {after['faces_analysed']}"
            )
            assert "inference engine is restarting" in reason
            assert restarts == 1
            assert dropped >= 1 and failed_crops >= 1
            assert after["status"] == "up"
            assert_stream_alive(service, stream)
            assert (await service.ready())[0] == 200
            assert await service.metric("fakewatch_ready") == 1
            if mode == "hang":
                assert noticed_after < TIMEOUT_S + 1.0
                assert fault.release.is_set() is False  # the hung call is still hung
                assert service.pipeline.batcher.segmenter is not None

    asyncio.run(check())


@pytest.mark.reliability
def test_a_hung_detector_is_restarted_and_the_stream_goes_on(clip: Path, fault: Fault) -> None:
    async def check() -> None:
        async with serving(fault, "detector") as (service, _):
            stream = await add_stream(service, clip)
            await service.wait_state(stream, lambda s: s["faces_analysed"] >= 3)
            fault.hangs = 1
            armed = time.monotonic()
            noticed, recovered, reason = await watch_readiness(service, armed)
            noticed_after = noticed - (fault.hung_at[0] - armed)
            before = await service.state(stream)
            after = await service.wait_state(
                stream, lambda s: s["faces_analysed"] >= before["faces_analysed"] + 5
            )
            dropped = after["frames_dropped"].get(DropReason.DETECTOR_FAILED, 0)
            restarts = await service.metric("fakewatch_engine_restarts_total", component="detector")
            print(
                f"\ndetector hang: noticed after {noticed_after:.2f} s "
                f"(detect_timeout_s={TIMEOUT_S}), /readyz 503 for {recovered - noticed:.2f} s, "
                f"recovered {recovered - (fault.hung_at[0] - armed):.2f} s after the hang; "
                f"{dropped} frames dropped as detector_failed, {restarts:.0f} restart, "
                f"faces analysed {before['faces_analysed']} -> {after['faces_analysed']}"
            )
            assert "face detector is restarting" in reason
            assert restarts == 1 and dropped >= 1
            assert noticed_after < TIMEOUT_S + 1.0
            assert_stream_alive(service, stream)
            assert (await service.ready())[0] == 200

    asyncio.run(check())
