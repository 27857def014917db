"""A stream as the API shows it (``GET /api/streams``), from the pipeline's state."""

from __future__ import annotations

from typing import Any

from fakewatch.stream.analysis.state import StreamState
from fakewatch.stream.analysis.vote import SlidingWindowVote


def stream_view(state: StreamState) -> dict[str, Any]:
    """The stream's state as the API shows it: status, rates, counts, votes, last event."""
    vote = state.vote
    score = vote.score
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
        "alerting": vote.alerting,
        "votes": {
            "stream": {
                "scores": [round(e.score, 4) for e in vote.entries],
                "enter_threshold": vote.enter,
                "exit_threshold": vote.exit,
                "min_frames": vote.min_frames,
                "baseline": _baseline(vote),
            },
            "tracks": {
                track: None if v.score is None else round(v.score, 4)
                for track, v in state.track_votes.items()
            },
        },
        "last_event": state.last_event.to_dict() if state.last_event else None,
    }


def _baseline(vote: SlidingWindowVote[Any]) -> dict[str, Any] | None:
    """The stream's usual level, when the bundle ships a baseline (null before warm-up)."""
    if vote.baseline is None:
        return None
    level = vote.baseline.level()
    return {
        "ready": level is not None,
        "median": None if level is None else round(level[0], 4),
        "spread": None if level is None else round(level[1], 4),
        "raised_alert": vote.alerting and vote.raised_by_baseline,
    }
