"""Alert clips: the ring of recent frames is bounded, a recording covers the alert, the
clip decodes, and it goes with its alert."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import av
import numpy as np

from fakewatch.engines.crop import Box, crop_face
from fakewatch.stream.analysis.events import Event, EventType
from fakewatch.stream.analysis.observers import FaceObservation
from fakewatch.stream.sinks.clips import ClipFrame, ClipRecorder, FrameRing, encode_clip
from fakewatch.stream.sinks.evidence import EvidenceStore
from fakewatch.stream.sources.frames import SourceFrame
from tests.stream.test_evidence import folders, suspected


def face(frame: np.ndarray, track: str = "t1", score: float = 0.9) -> FaceObservation:
    box = Box(180.0, 60.0, 330.0, 240.0)
    crop = crop_face(frame, box, 224, 1.3)
    mask = np.zeros((224, 224), np.float32)
    mask[60:170, 50:170] = 0.9
    return FaceObservation(track, box, crop, score, 0.5, mask)


def test_the_ring_keeps_the_last_seconds_and_never_more_frames() -> None:
    ring = FrameRing(seconds=2.0, max_frames=5)
    for i in range(40):
        ring.add(ClipFrame(100 + i * 0.1, b"x" * 1000))
    assert len(ring) == 5  # 21 frames are within 2 s, the count bounds it
    assert ring.frames()[-1].time == 100 + 39 * 0.1 and ring.nbytes == 5000
    slow = FrameRing(seconds=2.0, max_frames=100)
    for i in range(10):
        slow.add(ClipFrame(100 + i, b"x"))
    assert [f.time for f in slow.frames()] == [107, 108, 109]


def test_a_recorder_takes_fps_frames_a_second_whatever_the_jitter() -> None:
    state: Any = SimpleNamespace(id="s1")
    image = np.zeros((8, 8, 3), np.uint8)
    rng = np.random.default_rng(1)
    for rate, jitter in ((30.0, 0.005), (5.0, 0.04), (5.0, 0.0)):
        recorder = ClipRecorder(before_s=20.0, after_s=1.0, fps=5.0, height=120)
        recorder.start()
        times = np.arange(0, 10, 1 / rate) + rng.uniform(-jitter, jitter, round(10 * rate))
        for i, at in enumerate(times):
            recorder.observe(state, SourceFrame(image, 1000 + float(at), i), [])
            while recorder._queue.qsize() > 4:  # not faster than the worker
                time.sleep(0.001)
        asyncio.run(recorder.close())  # the worker takes what is queued first
        taken = recorder.ring_frames("s1")
        assert recorder.dropped == 0
        assert 48 <= taken <= 51, (rate, jitter, taken)  # 5 a second for 10 s


def test_a_recorder_keeps_fps_frames_a_second_scaled_down(astronaut: np.ndarray) -> None:
    recorder = ClipRecorder(before_s=2.0, after_s=1.0, fps=5.0, height=240)
    state: Any = SimpleNamespace(id="s1")
    frame = np.ascontiguousarray(np.tile(astronaut, (2, 2, 1)))  # 1024x1024
    recorder.start()
    try:
        start = time.time()
        for i in range(100):  # 10 s at 10 fps, as fast as the worker goes
            recorder.observe(state, SourceFrame(frame, start + i * 0.1, i), [face(frame)])
            while recorder._queue.qsize() > 4:
                time.sleep(0.005)
        deadline = time.monotonic() + 30
        while recorder._queue.qsize() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
        # every other frame taken (5 of 10 a second), the ring holds 2 s of them
        assert recorder.ring_frames("s1") == recorder.max_frames == 11
        kept = recorder.ring_bytes("s1")
        assert 0 < kept < 11 * (240 * 240 * 3 // 4)  # JPEGs at 240 px and small masks
    finally:
        asyncio.run(recorder.close())


def test_a_recording_covers_the_alert_and_decodes(tmp_path: Path, astronaut: np.ndarray) -> None:
    recorder = ClipRecorder(before_s=1.0, after_s=1.0, fps=10.0, height=240)
    state: Any = SimpleNamespace(id="s1")

    async def run() -> list[ClipFrame]:
        recorder.start()
        start = time.time()
        for i in range(15):
            recorder.observe(state, SourceFrame(astronaut, start + i * 0.1, i), [face(astronaut)])
            await asyncio.sleep(0.1)
        recording = asyncio.create_task(recorder.record("s1", start + 1.4))
        for i in range(15, 40):
            recorder.observe(state, SourceFrame(astronaut, start + i * 0.1, i), [face(astronaut)])
            await asyncio.sleep(0.1)
        frames = await recording
        await recorder.close()
        return frames

    frames = asyncio.run(run())
    times = [f.time - frames[0].time for f in frames]
    assert times == sorted(times) and 1.9 <= times[-1] <= 2.2  # 1 s before, 1 s after
    path = tmp_path / "clip.mp4"
    written = encode_clip(frames, "t1", 0.5, path)
    assert written == [f.time for f in frames]
    with av.open(str(path)) as clip:
        stream = clip.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.height == 240
        decoded = [f.to_ndarray(format="rgb24") for f in clip.decode(video=0)]
    assert len(decoded) == len(frames)
    # the heatmap is on the alerting face, not far from it: against the same frames
    # written for a track that is not in them
    plain = encode_clip(frames, "another", 0.5, tmp_path / "plain.mp4")
    assert plain == written
    with av.open(str(tmp_path / "plain.mp4")) as clip:
        first = next(iter(clip.decode(video=0))).to_ndarray(format="rgb24")
    scale = 240 / astronaut.shape[0]
    y0, y1, x0, x1 = (round(v * scale) for v in (100, 200, 220, 300))
    difference = np.abs(decoded[0].astype(int) - first).sum(axis=2)
    assert difference[y0:y1, x0:x1].mean() > 3 * difference[-40:, :40].mean() + 5


def test_clips_are_written_beside_the_evidence_and_go_with_it(
    tmp_path: Path, astronaut: np.ndarray
) -> None:
    recorder = ClipRecorder(before_s=1.0, after_s=0.5, fps=10.0, height=240)
    store = EvidenceStore(tmp_path, max_alerts=1, clips=recorder)
    state: Any = SimpleNamespace(id="s1")

    async def run() -> tuple[Event, Event]:
        recorder.start()
        events = []
        for _ in range(2):
            start = time.time()
            for i in range(10):
                recorder.observe(state, SourceFrame(astronaut, start + i * 0.1, i), [])
                await asyncio.sleep(0.1)
            event = suspected(astronaut)  # raised now, after a second of frames
            events.append(event)
            await store.emit(event)
            for i in range(10, 20):
                recorder.observe(state, SourceFrame(astronaut, start + i * 0.1, i), [])
                await asyncio.sleep(0.1)
            while store._recording:
                await asyncio.sleep(0.1)
            assert store.path(event.id, "clip.mp4") is not None
        await store.close()
        return events[0], events[1]

    first, second = asyncio.run(run())
    assert folders(tmp_path) == [second.id]  # the first alert went, its clip with it
    assert store.path(first.id, "clip.mp4") is None
    path = store.path(second.id, "clip.mp4")
    assert path is not None
    times = store.clip_times(second.id)
    assert times is not None and times["times"][0] <= second.time <= times["times"][-1]
    assert json.loads((tmp_path / second.id / "clip.json").read_text()) == times
    with av.open(str(path)) as clip:
        assert sum(1 for _ in clip.decode(video=0)) == len(times["times"])
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".mp4")]  # no staged clip


def test_no_clip_for_other_events(tmp_path: Path) -> None:
    recorder = ClipRecorder(before_s=1.0, after_s=0.5, fps=10.0, height=240)
    store = EvidenceStore(tmp_path, clips=recorder)
    asyncio.run(store.emit(Event(EventType.STREAM_UP, "s1", "door", "x")))
    assert not store._recording and folders(tmp_path) == []


def test_clip_before_s_0_turns_clips_off(tmp_path: Path) -> None:
    from fakewatch.stream.config import load_config
    from fakewatch.stream.host import open_sinks
    from fakewatch.stream.metrics import PipelineMetrics

    for before, clips in ((0, False), (2, True)):
        overrides = {"evidence.folder": str(tmp_path), "evidence.clip_before_s": before}
        config = load_config(environ={}, overrides=overrides)
        sinks = open_sinks(config, PipelineMetrics(), clips=True)
        assert (sinks.evidence.clips is not None) is clips
        assert ("clip" in sinks.evidence.links("http://x", "0" * 32)) is clips
    # a host whose frames are elsewhere (the cluster's front) makes none
    assert open_sinks(config, PipelineMetrics()).evidence.clips is None
