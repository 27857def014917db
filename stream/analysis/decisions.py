"""Decisions and health changes as events, handed to every sink in order.

Each face track's vote decides for that face (``deepfake.suspected``,
``deepfake.cleared``, naming the track and its box), so a stream with several faces can
have several alerts open, one per face; a stream is alerting while any of its faces is.
A track that ends closes its alert (``face track t3 lost``), and so does a stream that
stops being analysed. A stream's source changes health (``stream.up``,
``stream.down``). Each becomes an :class:`~fakewatch.stream.analysis.events.Event`
handed to every sink, in the order the host gave them (the order matters: the webhook
body reads what the evidence sink wrote). A sink that fails is logged and the others
still get the event.
"""

from __future__ import annotations

from collections.abc import Collection

from fakewatch.stream.analysis.events import (
    Event,
    EventSink,
    EventType,
    WindowSummary,
    hand_to_sinks,
)
from fakewatch.stream.analysis.state import StreamState, TrackVote
from fakewatch.stream.analysis.vote import Decision
from fakewatch.stream.metrics import PipelineMetrics

STOPPING = "service stopping"
"""The detail of the final ``deepfake.cleared`` of a stream still alerting at a stop."""
REMOVED = "stream removed"
"""The detail of the final ``deepfake.cleared`` of a stream removed while alerting."""


def track_lost(track: str) -> str:
    """The detail of the ``deepfake.cleared`` of a face track that ended while alerting."""
    return f"face track {track} lost"


class Decisions:
    """Turns the face tracks' decisions and the streams' health changes into events for
    ``sinks``."""

    def __init__(self, metrics: PipelineMetrics, sinks: list[EventSink]) -> None:
        self.metrics = metrics
        self.sinks = sinks

    async def decide(
        self,
        state: StreamState,
        track: str,
        decision: Decision | None,
        when: float,
        reason: str | None = None,
    ) -> None:
        """Turn the decision of ``track``'s vote into an event; ``reason`` replaces the
        event's detail."""
        voted = state.track_votes.get(track)
        if decision is None or voted is None:
            return
        await self._emit_decision(state, track, voted, decision, when, reason)

    async def tick(self, state: StreamState, when: float, skip: Collection[str] = ()) -> None:
        """Let time pass for the tracks not seen at ``when`` (all but ``skip``): old
        frames leave their windows; any decisions that causes."""
        for track, voted in list(state.track_votes.items()):
            if track not in skip:
                await self.decide(state, track, voted.vote.tick(when), when)

    async def end_track(self, state: StreamState, track: str, when: float, reason: str) -> None:
        """A face track ended: its vote goes, and its alert, if one is open, is closed
        with ``reason``."""
        voted = state.track_votes.pop(track, None)
        if voted is not None and voted.vote.end_alert():
            await self._emit_decision(state, track, voted, Decision.CLEARED, when, reason)

    async def close_alert(self, state: StreamState, when: float, reason: str) -> None:
        """A final ``deepfake.cleared`` with ``reason`` for each face of a stream still
        alerting (its analysis has stopped), so that no alert stays open in the sinks."""
        for track, voted in list(state.track_votes.items()):
            if voted.vote.end_alert():
                await self._emit_decision(state, track, voted, Decision.CLEARED, when, reason)

    async def health(self, state: StreamState, kind: EventType, detail: str) -> None:
        """A ``stream.up`` or ``stream.down`` event."""
        await self.emit(state, Event(kind, state.id, state.name, state.description, detail=detail))

    async def emit(self, state: StreamState, event: Event) -> None:
        state.last_event = event
        self.metrics.events.labels(str(event.type)).inc()
        await hand_to_sinks(self.sinks, event)

    async def _emit_decision(
        self,
        state: StreamState,
        track: str,
        voted: TrackVote,
        decision: Decision,
        when: float,
        reason: str | None,
    ) -> None:
        vote = voted.vote
        entries = vote.entries
        window = WindowSummary(
            score=vote.score if vote.score is not None else 0.0,
            scores=tuple(e.score for e in entries),
            times=tuple(e.time for e in entries),
            enter_threshold=vote.enter,
            exit_threshold=vote.exit,
        )
        tracks = {k: v.vote.score for k, v in state.track_votes.items()}
        level = None if vote.baseline is None else vote.baseline.level()
        if decision is Decision.SUSPECTED:
            kind = EventType.SUSPECTED
            peak = vote.peak
            evidence = peak.evidence if peak else None
            detail = f"window score {window.score:.3f} >= {vote.enter:.3f}"
            if vote.raised_by_baseline and level is not None:
                detail = (
                    f"window score {window.score:.3f} rose above this face's usual "
                    f"{level[0]:.3f} (spread {level[1]:.3f})"
                )
        else:
            kind = EventType.CLEARED
            evidence = None
            detail = (
                "no face in the window"
                if not entries
                else f"window score {window.score:.3f} < {vote.exit:.3f}"
            )
        self.metrics.alerting.labels(state.name).set(1 if state.alerting else 0)
        self.metrics.face_alerts.labels(state.name).set(len(state.alerts))
        await self.emit(
            state,
            Event(
                type=kind,
                stream_id=state.id,
                stream_name=state.name,
                source=state.description,
                detail=reason or detail,
                track=track,
                box=voted.box,
                window=window,
                evidence=evidence,
                tracks={k: s for k, s in tracks.items() if s is not None},
                time=when,
            ),
        )
