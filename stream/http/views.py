"""A stream as the API shows it (``GET /api/streams``), from the pipeline's state."""

from __future__ import annotations

from typing import Any

from fakewatch.stream.analysis.state import StreamState, TrackVote
from fakewatch.stream.analysis.tuning import sources
from fakewatch.stream.analysis.vote import SlidingWindowVote


def stream_view(state: StreamState) -> dict[str, Any]:
    """The stream's state as the API shows it: status, rates, counts, votes, the alert
    open on each face, last event. The stream's score and votes are those of its
    highest-scoring face track; it is alerting while any face is."""
    top = state.top_track
    vote = state.track_votes[top].vote if top is not None else state.new_vote()
    score = state.score
    return {
        "id": state.id,
        "name": state.name,
        "kind": state.kind,
        "source": state.description,
        "status": str(state.source.status) if state.source else "stopped",
        "status_detail": state.last_status_detail,
        "created": round(state.created, 3),
        "fps_in": round(state.fps_in.rate, 2),
        "fps_analysed": round(state.fps_analysed.rate, 2),
        "frames_received": state.frames.received,
        "frames_analysed": state.analysed,
        "faces_analysed": state.faces,
        "frames_dropped": dict(state.dropped),
        "latency_s": None if state.last_latency_s is None else round(state.last_latency_s, 4),
        "score": None if score is None else round(score, 4),
        "alerting": state.alerting,
        "alerts": [_alert(track, voted) for track, voted in state.alerts.items()],
        "votes": {
            "stream": {
                "track": top,
                "scores": [round(e.score, 4) for e in vote.entries],
                "enter_threshold": vote.enter,
                "exit_threshold": vote.exit,
                "min_frames": vote.min_frames,
                "baseline": _baseline(vote),
            },
            "tracks": {
                track: None if v.vote.score is None else round(v.vote.score, 4)
                for track, v in state.track_votes.items()
            },
        },
        "last_event": state.last_event.to_dict() if state.last_event else None,
        "settings": _settings(state),
        "analysis": _pace(state),
    }


def _settings(state: StreamState) -> dict[str, Any] | None:
    """The stream's effective settings, and which are its own: ``config`` (its
    ``streams:`` entry) or ``api`` (given through the API, kept across restarts)."""
    if state.tuning is None:
        return None
    return {
        "effective": state.tuning.to_dict(),
        "overridden": sources(state.configured_settings, state.saved_settings),
    }


def _pace(state: StreamState) -> dict[str, Any] | None:
    """Whether the stream is analysed at its full rate or calm, and why."""
    tuning = state.tuning
    if tuning is None:
        return None
    pace = state.pace
    calm = pace.calm and tuning.adaptive
    return {
        "rate": "calm" if calm else "full",
        "target_fps": round(1 / tuning.pace.calm_interval if calm else tuning.fps, 3),
        "reason": pace.reason if tuning.adaptive else "adaptive analysis is off",
    }


def _alert(track: str, voted: TrackVote) -> dict[str, Any]:
    """One face's open alert: its track, where the face is, its window score, since when."""
    vote = voted.vote
    return {
        "track": track,
        "box": voted.box.as_list(),
        "score": None if vote.score is None else round(vote.score, 4),
        "since": None if vote.last_change is None else round(vote.last_change, 3),
        "raised_by_baseline": vote.raised_by_baseline,
    }


def _baseline(vote: SlidingWindowVote[Any]) -> dict[str, Any] | None:
    """The face's usual level, when the bundle ships a baseline (null before warm-up)."""
    if vote.baseline is None:
        return None
    level = vote.baseline.level()
    return {
        "ready": level is not None,
        "median": None if level is None else round(level[0], 4),
        "spread": None if level is None else round(level[1], 4),
        "raised_alert": vote.alerting and vote.raised_by_baseline,
    }
