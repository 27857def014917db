"""The alerts stream and the desired state against a real redis-server (no Ray)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fakewatch.cluster.alerts import (
    GROUP,
    AlertPublisher,
    AlertSender,
    decode_event,
    encode_event,
    window_event_id,
)
from fakewatch.cluster.config import ClusterConfig
from fakewatch.cluster.shard import restore_tracks, saved_window, shifted
from fakewatch.cluster.state import ClusterState, connect, shard_of
from fakewatch.engines.crop import Box
from fakewatch.engines.faces import Face
from fakewatch.stream.analysis.events import Event, EventType, Evidence, WindowSummary
from fakewatch.stream.analysis.registry import StreamLimitError, StreamNameError
from fakewatch.stream.analysis.state import StreamState, TrackVote
from fakewatch.stream.analysis.tracker import FaceTracker
from fakewatch.stream.analysis.vote import SlidingWindowVote
from fakewatch.stream.sources.frames import LatestFrame
from tests.support.cluster import RedisServer, flush
from tests.support.events import MemorySink
from tests.support.peers import free_port

pytestmark = pytest.mark.cluster


def alert(stream: str = "abc123", start: float = 1000.0) -> Event:
    rng = np.random.default_rng(0)
    evidence = Evidence(
        frame=rng.integers(0, 255, (72, 128, 3), dtype=np.uint8),
        mask=rng.random((32, 32), dtype=np.float32),
        crop=rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
        face_box=Box(10, 12, 40, 50),
        crop_box=Box(5, 6, 45, 55),
        score=0.93,
        capture_time=start + 0.2,
        track="t1",
    )
    window = WindowSummary(0.91, (0.9, 0.93), (start, start + 0.2), 0.86, 0.83)
    return Event(
        EventType.SUSPECTED,
        stream,
        "lobby",
        "rtsp://cam/live",
        detail="window score 0.910 >= 0.860",
        track="t1",
        window=window,
        evidence=evidence,
        tracks={"t1": 0.91},
        time=start + 0.2,
    )


def state_for(url: str, **settings: Any) -> ClusterState:
    config = ClusterConfig(redis_url=url, **settings)
    return ClusterState(connect(config), config)


def test_an_event_survives_the_stream_with_its_evidence() -> None:
    event = alert()
    back = decode_event({k.encode(): v for k, v in encode_event(event).items()})
    assert back.to_dict() == event.to_dict()
    assert back.evidence is not None and event.evidence is not None
    for name in ("frame", "mask", "crop"):
        assert np.array_equal(getattr(back.evidence, name), getattr(event.evidence, name))


def test_a_decision_s_id_is_its_stream_track_and_window() -> None:
    assert window_event_id(alert()) == window_event_id(alert())
    assert window_event_id(alert()) != window_event_id(alert(start=1001.0))
    assert window_event_id(alert()) != window_event_id(alert(stream="other"))
    # two faces of one stream deciding on the same frames: two alerts, two evidence folders
    assert window_event_id(alert()) != window_event_id(replace(alert(), track="t2"))


def test_each_face_track_s_window_and_box_come_back_and_the_tracker_carries_on() -> None:
    def stream() -> StreamState:
        return StreamState(
            id="abc123",
            name="lobby",
            kind="url",
            frames=LatestFrame(),
            new_vote=lambda: SlidingWindowVote(0.8, 0.7, 8, 4.0, 3, 10.0),
            tracker=FaceTracker(),
        )

    before = stream()
    boxes = {"t2": Box(300, 20, 400, 140), "t5": Box(10, 20, 110, 140)}
    for track, score in (("t2", 0.9), ("t5", 0.1)):
        before.track_votes[track] = TrackVote(before.new_vote(), boxes[track])
        for i in range(4):
            before.track_votes[track].vote.add(100.0 + i * 0.2, score)
    assert list(before.alerts) == ["t2"]
    saved = json.loads(json.dumps(saved_window(before)))  # what Redis keeps
    after = stream()
    restore_tracks(after, {**saved, "saved": saved["saved"]}, 30.0)
    assert list(after.alerts) == ["t2"] and set(after.track_votes) == {"t2", "t5"}
    again = after.track_votes["t2"]
    assert again.box == boxes["t2"] and again.vote.score == pytest.approx(0.9)
    assert [e.time for e in again.vote.entries] == pytest.approx([130.0, 130.2, 130.4, 130.6])
    # the next detection continues the tracks where their faces still are, and a new
    # face gets an id after theirs
    tracks = after.tracker.update(
        [Face(Box(302, 22, 402, 142), 0.99), Face(Box(200, 0, 260, 60), 0.9)]
    )
    assert [t.id for t in tracks] == ["t2", "t6"]
    restore_tracks(after, {"entries": [[1.0, 0.9]], "alerting": True}, 0.0)  # an older format
    assert set(after.track_votes) == {"t2", "t5"}
    assert {t.id for t in after.tracker.tracks} == {"t2", "t6"}


def test_a_saved_window_comes_back_shifted_past_the_gap() -> None:
    vote: SlidingWindowVote[None] = SlidingWindowVote(0.8, 0.7, 8, 4.0, 3, 10.0)
    for i in range(4):
        vote.add(100.0 + i * 0.2, 0.9)
    assert vote.alerting
    saved = vote.checkpoint()
    again: SlidingWindowVote[None] = SlidingWindowVote(0.8, 0.7, 8, 4.0, 3, 10.0)
    again.restore(shifted(saved, 30.0))
    assert again.alerting and again.score == pytest.approx(0.9)
    assert [e.time for e in again.entries] == pytest.approx([130.0, 130.2, 130.4, 130.6])
    assert again.tick(131.0) is None  # 30 s unwatched did not empty the window
    assert again.add(131.2, 0.1) is None  # one low frame: still above exit on average


def test_streams_are_kept_per_shard_with_their_limit_and_unique_names(redis_url: str) -> None:
    flush(redis_url)

    async def check() -> None:
        state = state_for(redis_url, shards=8)
        first = await state.add("cam-1", "rtsp://a/1", max_streams=2)
        assert first.shard == shard_of(first.id, 8)
        with pytest.raises(StreamNameError):
            await state.add("cam-1", "rtsp://a/2", max_streams=2)
        second = await state.add(None, "rtsp://a/3", max_streams=2)
        with pytest.raises(StreamLimitError):
            await state.add("cam-3", "rtsp://a/4", max_streams=2)
        assert [s.id for s in await state.streams()] == [first.id, second.id]
        assert await state.find("cam-1") == first
        assert await state.find(second.id) == second
        assert first in await state.of_shard(first.shard)
        assert await state.remove(first)
        assert not await state.remove(first)  # idempotent
        assert await state.find("cam-1") is None
        assert first not in await state.of_shard(first.shard)
        await state.redis.aclose()

    asyncio.run(check())


def test_a_decision_and_its_window_are_written_together(redis_url: str) -> None:
    flush(redis_url)

    async def check() -> None:
        state = state_for(redis_url)
        window = {"entries": [[1000.0, 0.9]], "alerting": True, "saved": time.time()}
        publisher = AlertPublisher(state, lambda stream: window)
        publisher.start()
        await publisher.emit(alert())
        await publisher.flush(5)
        (entry,) = await state.redis.xrange(state.key("alerts"))
        event = decode_event(entry[1])
        assert event.id == window_event_id(alert())
        assert (await state.load_votes(["abc123"]))["abc123"]["alerting"] is True
        publisher.checkpoint({"abc123": None})
        await publisher.flush(5)
        assert await state.load_votes(["abc123"]) == {}
        await publisher.stop()
        await state.redis.aclose()

    asyncio.run(check())


def test_events_wait_for_redis_and_are_written_in_order(tmp_path: Path) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"

    async def check() -> None:
        state = state_for(url, call_timeout_s=0.5)
        publisher = AlertPublisher(state, lambda stream: None)
        publisher.start()
        for i in range(3):
            await publisher.emit(alert(start=1000.0 + i))
        await asyncio.sleep(1.0)  # Redis is not there: the events wait
        assert publisher.pending == 3
        server = await asyncio.to_thread(RedisServer, tmp_path, port)
        try:
            await publisher.flush(15)
            entries = await state.redis.xrange(state.key("alerts"))
            times = [decode_event(fields).window.times[0] for _, fields in entries]  # type: ignore[union-attr]
            assert times == [1000.0, 1001.0, 1002.0]
            assert publisher.published == 3
        finally:
            await publisher.stop()
            await state.redis.aclose()
            server.stop()

    asyncio.run(check())


def test_a_crashed_sender_s_alerts_are_claimed_and_sent_once(redis_url: str) -> None:
    flush(redis_url)

    async def check() -> None:
        state = state_for(redis_url)
        stream = state.key("alerts")
        publisher = AlertPublisher(state, lambda stream: None)
        publisher.start()
        await publisher.emit(alert(start=1000.0))
        await publisher.emit(alert(start=1000.0))  # the same decision again (a retried call)
        await publisher.emit(alert(start=2000.0))
        await publisher.flush(5)
        await state.redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        # a sender takes every entry, then dies before acknowledging any
        taken = await state.redis.xreadgroup(GROUP, "crashed", {stream: ">"}, count=10)
        assert len(taken[0][1]) == 3
        sink = MemorySink()
        sender = AlertSender(state, [sink], "survivor", claim_idle_s=0.3, block_ms=100)
        running = asyncio.get_running_loop().create_task(sender.run())
        try:
            async with asyncio.timeout(10):
                while (await state.redis.xpending(stream, GROUP))["pending"]:
                    await asyncio.sleep(0.1)
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
        ids = [event.id for event in sink.events]
        assert sorted(ids) == sorted({window_event_id(alert(start=t)) for t in (1000.0, 2000.0)})
        assert sender.repeats == 1
        await publisher.stop()
        await state.redis.aclose()

    asyncio.run(check())
