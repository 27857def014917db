"""Decisions and health changes as events, handed to every sink in order.

A stream's vote decides (``deepfake.suspected``, ``deepfake.cleared``) and its source
changes health (``stream.up``, ``stream.down``); each becomes an
:class:`~fakewatch.stream.analysis.events.Event` handed to every sink, in the order the
host gave them (the order matters: the webhook body reads what the evidence sink wrote).
A sink that fails is logged and the others still get the event.
"""

from __future__ import annotations

from fakewatch.stream.analysis.events import (
    Event,
    EventSink,
    EventType,
    WindowSummary,
    hand_to_sinks,
)
from fakewatch.stream.analysis.state import StreamState
from fakewatch.stream.analysis.vote import Decision
from fakewatch.stream.metrics import PipelineMetrics

STOPPING = "service stopping"
"""The detail of the final ``deepfake.cleared`` of a stream still alerting at a stop."""
REMOVED = "stream removed"
"""The detail of the final ``deepfake.cleared`` of a stream removed while alerting."""


class Decisions:
    """Turns a stream's decisions and health changes into events for ``sinks``."""

    def __init__(self, metrics: PipelineMetrics, sinks: list[EventSink]) -> None:
        self.metrics = metrics
        self.sinks = sinks

    async def decide(
        self,
        state: StreamState,
        decision: Decision | None,
        when: float,
        reason: str | None = None,
    ) -> None:
        """Turn ``decision`` into an event; ``reason`` replaces the event's detail."""
        if decision is None:
            return
        vote = state.vote
        entries = vote.entries
        peak = vote.peak
        window = WindowSummary(
            score=vote.score if vote.score is not None else 0.0,
            scores=tuple(e.score for e in entries),
            times=tuple(e.time for e in entries),
            enter_threshold=vote.enter,
            exit_threshold=vote.exit,
        )
        tracks = {k: v.score for k, v in state.track_votes.items() if v.score is not None}
        level = None if vote.baseline is None else vote.baseline.level()
        if decision is Decision.SUSPECTED:
            kind = EventType.SUSPECTED
            evidence = peak.evidence if peak else None
            detail = f"window score {window.score:.3f} >= {vote.enter:.3f}"
            if vote.raised_by_baseline and level is not None:
                detail = (
                    f"window score {window.score:.3f} rose above this stream's usual "
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
        detail = reason or detail
        self.metrics.alerting.labels(state.name).set(1 if vote.alerting else 0)
        track = evidence.track if evidence else max(tracks, key=tracks.__getitem__, default=None)
        await self.emit(
            state,
            Event(
                type=kind,
                stream_id=state.id,
                stream_name=state.name,
                source=state.description,
                detail=detail,
                track=track,
                window=window,
                evidence=evidence,
                tracks=tracks,
                time=when,
            ),
        )

    async def close_alert(self, state: StreamState, when: float, reason: str) -> None:
        """A final ``deepfake.cleared`` with ``reason`` for a stream still alerting (its
        analysis has stopped), so that no alert stays open in the sinks."""
        if state.vote.end_alert():
            await self.decide(state, Decision.CLEARED, when, reason)

    async def health(self, state: StreamState, kind: EventType, detail: str) -> None:
        """A ``stream.up`` or ``stream.down`` event."""
        await self.emit(state, Event(kind, state.id, state.name, state.description, detail=detail))

    async def emit(self, state: StreamState, event: Event) -> None:
        state.last_event = event
        self.metrics.events.labels(str(event.type)).inc()
        await hand_to_sinks(self.sinks, event)
