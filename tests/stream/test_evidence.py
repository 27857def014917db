"""Alert evidence: written whole, served by the API, kept across restarts, pruned."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from fakewatch.engines.crop import Box, crop_face
from fakewatch.stream.analysis.events import Event, EventType, Evidence, WindowSummary
from fakewatch.stream.sinks.evidence import EvidenceStore
from tests.support.service import serving


def folders(path: Path) -> list[str]:
    """The alerts' folders in an evidence folder (beside its link key)."""
    return [p.name for p in path.iterdir() if not p.name.startswith(".")]


def suspected(frame: np.ndarray, score: float = 0.93) -> Event:
    face = Box(180.0, 60.0, 330.0, 240.0)
    crop = crop_face(frame, face, 224, 1.3)
    mask = np.zeros((224, 224), np.float32)
    mask[60:170, 50:170] = 0.9
    evidence = Evidence(frame, mask, crop.image, face, crop.box, score, time.time(), "t1")
    window = WindowSummary(0.9, (0.88, 0.92), (1.0, 1.2), 0.86, 0.83)
    return Event(EventType.SUSPECTED, "s1", "door", "rtsp://cam/live", track="t1",
                 window=window, evidence=evidence)  # fmt: skip


def test_evidence_is_written_whole_and_read_back(tmp_path: Path, astronaut: np.ndarray) -> None:
    store = EvidenceStore(tmp_path)
    event = suspected(astronaut)
    asyncio.run(store.emit(event))
    asyncio.run(store.emit(Event(EventType.STREAM_UP, "s1", "door", "x")))  # no evidence
    assert folders(tmp_path) == [event.id]
    assert (tmp_path / ".link-key").stat().st_mode & 0o777 == 0o600
    frame = cv2.imread(str(store.path(event.id, "frame.jpg")))
    assert frame.shape == astronaut.shape
    # the heatmap is drawn over the face and nowhere far from it
    difference = np.abs(frame.astype(int)[..., ::-1] - astronaut).sum(axis=2)
    assert difference[100:200, 220:300].mean() > 3 * difference[400:, :100].mean()
    mask = cv2.imread(str(store.path(event.id, "mask.png")), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == (224, 224) and mask.max() == round(0.9 * 255)
    assert json.loads((tmp_path / event.id / "event.json").read_text())["id"] == event.id
    assert store.recent()[0]["type"] == "deepfake.suspected"
    for bad in ("../../etc/passwd", event.id.upper(), "x" * 32):
        assert store.path(bad, "frame.jpg") is None
    assert store.path(event.id, "event.json") is None  # only the pictures are served


def test_retention_removes_the_oldest_first(tmp_path: Path, astronaut: np.ndarray) -> None:
    store = EvidenceStore(tmp_path, max_alerts=3)
    events = [suspected(astronaut) for _ in range(5)]
    start = time.time() - 100

    async def emit(event: Event) -> None:
        await store.emit(event)
        await store.close()  # the retention pass runs after the write, in the background

    for i, event in enumerate(events):
        asyncio.run(emit(event))  # prunes to the newest 3
        os.utime(tmp_path / event.id, (start + i, start + i))
    assert len(folders(tmp_path)) == 3
    store.prune()
    assert sorted(folders(tmp_path)) == sorted(e.id for e in events[2:])
    assert store.prune(now=start + 3 + store.max_age_s + 0.5) == 2  # two are now too old
    size = sum(f.stat().st_size for f in (tmp_path / events[4].id).iterdir())
    small = EvidenceStore(tmp_path, max_bytes=size)
    assert small.prune() == 0 and folders(tmp_path) == [events[4].id]


def test_the_api_serves_evidence_behind_the_token_and_after_a_restart(
    tmp_path: Path, astronaut: np.ndarray
) -> None:
    event = suspected(astronaut)

    async def run() -> None:
        async with serving(tmp_path) as service:
            for sink in service.pipeline.sinks:
                await sink.emit(event)
            async with service.http.get("/api/events") as response:
                listed = (await response.json())["events"][0]
            assert listed["id"] == event.id
            frame_url = listed["evidence_urls"]["frame"]
            assert frame_url == f"{service.base}/api/evidence/{event.id}/frame.jpg"
            async with service.http.get(frame_url) as response:
                assert response.status == 200 and response.content_type == "image/jpeg"
            async with service.http.get(f"/api/evidence/{event.id}/nope.jpg") as response:
                assert response.status == 404
        async with serving(tmp_path) as service:  # a restart on the same state folder
            async with service.http.get("/api/events") as response:
                listed = (await response.json())["events"]
            assert [e["id"] for e in listed] == [event.id]
            async with service.http.get(listed[0]["evidence_urls"]["crop"]) as response:
                assert response.status == 200
                crop = cv2.imdecode(np.frombuffer(await response.read(), np.uint8), 1)
            assert crop.shape == (224, 224, 3)

    asyncio.run(run())


@pytest.mark.parametrize("path", ["/api/events", "/api/evidence/0123/frame.jpg"])
def test_evidence_needs_the_token(path: str) -> None:
    import aiohttp

    async def run() -> None:
        async with (
            serving() as service,
            aiohttp.ClientSession(base_url=service.base) as anon,
            anon.get(path) as response,
        ):
            assert response.status == 401

    asyncio.run(run())


def test_alerts_written_during_a_retention_pass_are_counted_too(
    tmp_path: Path, astronaut: np.ndarray
) -> None:
    store = EvidenceStore(tmp_path, max_alerts=1)

    async def run() -> None:
        await asyncio.gather(*(store.emit(suspected(astronaut)) for _ in range(4)))
        await store.close()

    asyncio.run(run())
    assert len(folders(tmp_path)) == 1
