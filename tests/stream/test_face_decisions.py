"""Decisions per face track: each face's vote alerts on its own, the stream summarises.

The votes, the events and the stream's view are the pipeline's own; the scores are fed
by hand (the end-to-end run on a real two-face clip is in ``test_decisions.py``).
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from fakewatch.engines.crop import Box
from fakewatch.stream.analysis.decisions import Decisions, track_lost
from fakewatch.stream.analysis.events import Event, EventType, Evidence
from fakewatch.stream.analysis.state import StreamState, TrackVote
from fakewatch.stream.analysis.tracker import FaceTracker
from fakewatch.stream.analysis.vote import SlidingWindowVote
from fakewatch.stream.http.views import stream_view
from fakewatch.stream.metrics import PipelineMetrics
from fakewatch.stream.sources.frames import LatestFrame
from tests.support.events import MemorySink

LEFT, RIGHT = Box(10, 20, 110, 140), Box(330, 20, 430, 140)


def new_vote() -> SlidingWindowVote[Evidence]:
    return SlidingWindowVote(
        enter=0.8, exit=0.6, window_frames=4, window_seconds=2.0, min_frames=3, cooldown_s=5.0
    )


class Call:
    """One stream with its decisions, fed one face score at a time."""

    def __init__(self) -> None:
        self.metrics = PipelineMetrics()
        self.sink = MemorySink()
        self.decisions = Decisions(self.metrics, [self.sink])
        self.state = StreamState(
            id="s1",
            name="call",
            kind="url",
            frames=LatestFrame(),
            new_vote=new_vote,
            tracker=FaceTracker(),
        )

    async def frame(self, t: float, faces: dict[str, tuple[Box, float]]) -> None:
        """One analysed frame with ``faces`` (track id to box and score), as the
        analyser feeds it: each face's vote decides, the others let time pass."""
        image = np.zeros((160, 440, 3), np.uint8)
        for track, (box, score) in faces.items():
            voted = self.state.track_votes.setdefault(track, TrackVote(new_vote(), box))
            voted.box = box
            mask = np.zeros((8, 8), np.float32)
            evidence = Evidence(image, mask, image[:8, :8], box, box, score, t, track)
            decision = voted.vote.add(t, score, evidence)
            await self.decisions.decide(self.state, track, decision, t)
        await self.decisions.tick(self.state, t, skip=faces)

    def events(self, kind: EventType) -> list[Event]:
        return self.sink.of_type(kind)

    def gauge(self, name: str) -> float | None:
        return self.metrics.registry.get_sample_value(name, {"stream": "call"})


def test_only_the_swapped_face_alerts_with_its_own_box_and_evidence() -> None:
    async def run() -> None:
        call = Call()
        for i in range(5):
            await call.frame(i * 0.2, {"t1": (LEFT, 0.1), "t2": (RIGHT, 0.95 - i * 0.01)})
        (suspected,) = call.events(EventType.SUSPECTED)
        assert suspected.track == "t2" and suspected.box == RIGHT
        assert suspected.evidence is not None and suspected.evidence.track == "t2"
        assert suspected.evidence.face_box == RIGHT and suspected.evidence.score == 0.95
        assert suspected.window is not None and len(suspected.window.scores) == 3
        assert suspected.to_dict()["box"] == RIGHT.as_list()
        assert suspected.tracks == pytest.approx({"t1": 0.1, "t2": suspected.window.score})
        assert call.state.alerting and list(call.state.alerts) == ["t2"]
        assert call.gauge("fakewatch_alert_active") == 1
        assert call.gauge("fakewatch_face_alerts_open") == 1
        view = stream_view(call.state)
        assert view["alerting"] and [a["track"] for a in view["alerts"]] == ["t2"]
        assert view["alerts"][0]["box"] == RIGHT.as_list()
        assert (
            view["score"] == view["votes"]["tracks"]["t2"]
            and view["votes"]["stream"]["track"] == "t2"
        )

    asyncio.run(run())


def test_two_faces_have_two_alerts_and_the_stream_alerts_until_both_clear() -> None:
    async def run() -> None:
        call = Call()
        for i in range(3):
            await call.frame(i * 0.2, {"t1": (LEFT, 0.9), "t2": (RIGHT, 0.9)})
        first, second = call.events(EventType.SUSPECTED)
        assert {first.track, second.track} == {"t1", "t2"} and first.id != second.id
        for i in range(3, 6):
            await call.frame(i * 0.2, {"t1": (LEFT, 0.0), "t2": (RIGHT, 0.9)})
        (cleared,) = call.events(EventType.CLEARED)
        assert cleared.track == "t1" and cleared.box == LEFT
        assert call.state.alerting and list(call.state.alerts) == ["t2"]
        assert call.gauge("fakewatch_alert_active") == 1
        assert call.gauge("fakewatch_face_alerts_open") == 1
        for i in range(6, 10):
            await call.frame(i * 0.2, {"t1": (LEFT, 0.0), "t2": (RIGHT, 0.0)})
        assert [e.track for e in call.events(EventType.CLEARED)] == ["t1", "t2"]
        assert not call.state.alerting and call.gauge("fakewatch_alert_active") == 0

    asyncio.run(run())


def test_a_face_that_leaves_the_frame_clears_when_its_window_empties() -> None:
    async def run() -> None:
        call = Call()
        for i in range(3):
            await call.frame(i * 0.2, {"t1": (LEFT, 0.1), "t2": (RIGHT, 0.9)})
        for i in range(3, 20):  # t2 is not seen again; its frames leave its 2 s window
            await call.frame(i * 0.2, {"t1": (LEFT, 0.1)})
        (cleared,) = call.events(EventType.CLEARED)
        assert cleared.track == "t2" and cleared.detail == "no face in the window"

    asyncio.run(run())


def test_an_ended_track_closes_its_alert_and_only_its_own() -> None:
    async def run() -> None:
        call = Call()
        for i in range(3):
            await call.frame(i * 0.2, {"t1": (LEFT, 0.1), "t2": (RIGHT, 0.9)})
        await call.decisions.end_track(call.state, "t1", 1.0, track_lost("t1"))
        assert call.events(EventType.CLEARED) == []  # t1 was not alerting
        await call.decisions.end_track(call.state, "t2", 1.0, track_lost("t2"))
        (cleared,) = call.events(EventType.CLEARED)
        assert cleared.track == "t2" and cleared.detail == "face track t2 lost"
        assert cleared.box == RIGHT
        assert call.state.track_votes == {} and not call.state.alerting
        assert call.gauge("fakewatch_face_alerts_open") == 0
        await call.decisions.end_track(call.state, "t2", 1.2, track_lost("t2"))
        assert len(call.events(EventType.CLEARED)) == 1  # once

    asyncio.run(run())


def test_closing_a_stream_clears_every_open_face_alert() -> None:
    async def run() -> None:
        call = Call()
        faces = {"t1": (LEFT, 0.9), "t2": (RIGHT, 0.9), "t3": (Box(200, 0, 260, 60), 0.1)}
        for i in range(3):
            await call.frame(i * 0.2, faces)
        await call.decisions.close_alert(call.state, 1.0, "service stopping")
        cleared = call.events(EventType.CLEARED)
        assert sorted(e.track or "" for e in cleared) == ["t1", "t2"]
        assert {e.detail for e in cleared} == {"service stopping"}
        assert not call.state.alerting and call.gauge("fakewatch_alert_active") == 0
        await call.decisions.close_alert(call.state, 1.2, "service stopping")
        assert len(call.events(EventType.CLEARED)) == 2

    asyncio.run(run())
