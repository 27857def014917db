"""The sliding-window vote: hysteresis, minimum frames, time expiry, cooldown, evidence."""

from __future__ import annotations

import pytest

from fakewatch.engines.baseline import BaselineSettings
from fakewatch.stream.analysis.vote import Decision, SlidingWindowVote


def vote(**kw: float) -> SlidingWindowVote[str]:
    options = {"window_frames": 4, "window_seconds": 10.0, "min_frames": 3, "cooldown_s": 5.0}
    options.update(kw)
    return SlidingWindowVote(enter=0.8, exit=0.6, **options)  # type: ignore[arg-type]


def test_needs_min_frames_then_enters_and_holds_between_thresholds() -> None:
    v = vote()
    assert v.add(0.0, 0.9) is None
    assert v.add(0.2, 0.9) is None  # two frames: not enough to decide
    assert v.add(0.4, 0.9) is Decision.SUSPECTED
    assert v.add(0.6, 0.9) is None  # already alerting
    for t in (0.8, 1.0, 1.2):
        assert v.add(t, 0.7) is None  # mean falls to 0.75, 0.7, 0.7: above exit, holds
    assert v.alerting
    assert v.add(1.4, 0.1) is Decision.CLEARED  # mean 0.55 < 0.6


def test_cooldown_blocks_a_new_alert_right_after_a_clear() -> None:
    v = vote(min_frames=1, window_frames=1)
    assert v.add(0.0, 0.9) is Decision.SUSPECTED
    assert v.add(1.0, 0.1) is Decision.CLEARED
    assert v.add(2.0, 0.9) is None  # within the 5 s cooldown
    assert v.add(6.5, 0.9) is Decision.SUSPECTED


def test_old_frames_leave_by_time_and_an_empty_window_clears() -> None:
    v = vote(window_seconds=2.0, min_frames=2)
    v.add(0.0, 0.9)
    assert v.add(0.5, 0.9) is Decision.SUSPECTED
    assert v.tick(1.0) is None
    assert v.tick(2.6) is Decision.CLEARED  # both frames older than 2 s: face gone
    assert v.score is None


def test_peak_is_the_highest_frame_still_in_the_window() -> None:
    v = vote(window_frames=3)
    for t, (score, name) in enumerate([(0.5, "a"), (0.95, "b"), (0.7, "c"), (0.6, "d")]):
        v.add(float(t), score, name)
    assert v.peak is not None and v.peak.evidence == "b"
    v.add(4.0, 0.1, "e")  # "b" leaves the window
    assert v.peak is not None and v.peak.evidence == "c"


def test_a_restored_window_scores_but_its_peak_is_a_frame_added_since() -> None:
    v = vote(window_frames=3)
    for t, score in enumerate([0.9, 0.95, 0.5]):
        v.add(float(t), score, f"frame {t}")
    again = vote(window_frames=3)
    again.restore(v.checkpoint())
    assert again.score == v.score and again.peak is None
    again.add(3.0, 0.7, "new")  # the oldest restored entry leaves; 0.95 stays, framelessly
    assert again.score == pytest.approx((0.95 + 0.5 + 0.7) / 3)
    assert again.peak is not None and again.peak.evidence == "new"


def test_thresholds_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="exit threshold"):
        SlidingWindowVote(enter=0.5, exit=0.7)


def feed(vote: SlidingWindowVote[int], scores: list[float], start: float = 0.0) -> list[Decision]:
    """Frames at 5 per second; the decisions they cause, in order."""
    decisions = []
    for i, score in enumerate(scores):
        decision = vote.add(start + i * 0.2, score)
        if decision is not None:
            decisions.append(decision)
    return decisions


def test_a_rise_above_the_streams_own_level_raises_and_clears_an_alert() -> None:
    """With a baseline, a stream that sat near 0.3 alerts when it moves to 0.65, well
    under ``enter``, and clears when it goes back; without one it never alerts."""
    settings = BaselineSettings(warmup=20, history=100)
    scores = [0.3 + 0.01 * (i % 3) for i in range(60)] + [0.65] * 20 + [0.3] * 20
    with_baseline: SlidingWindowVote[int] = SlidingWindowVote(0.9, 0.85, baseline=settings)
    without: SlidingWindowVote[int] = SlidingWindowVote(0.9, 0.85)
    assert feed(with_baseline, scores) == [Decision.SUSPECTED, Decision.CLEARED]
    assert feed(without, scores) == []
    # the alert taught the baseline nothing: its level is still the stream's usual one
    level = with_baseline.baseline.level() if with_baseline.baseline else None
    assert level is not None and level[0] == pytest.approx(0.31, abs=0.02)


def test_a_baseline_alert_that_reaches_enter_clears_like_any_other() -> None:
    settings = BaselineSettings(warmup=20, history=100)
    vote: SlidingWindowVote[int] = SlidingWindowVote(0.9, 0.85, baseline=settings)
    feed(vote, [0.3] * 40 + [0.7] * 10)
    assert vote.alerting and vote.raised_by_baseline
    feed(vote, [0.95] * 10, start=10.0)
    assert vote.alerting and not vote.raised_by_baseline
    assert feed(vote, [0.88] * 10, start=12.0) == []  # between exit and enter: holds
    assert feed(vote, [0.5] * 10, start=14.0) == [Decision.CLEARED]


def test_the_baseline_survives_a_checkpoint() -> None:
    settings = BaselineSettings(warmup=20, history=100)
    vote: SlidingWindowVote[int] = SlidingWindowVote(0.9, 0.85, baseline=settings)
    feed(vote, [0.3] * 40 + [0.7] * 10)
    again: SlidingWindowVote[int] = SlidingWindowVote(0.9, 0.85, baseline=settings)
    again.restore(vote.checkpoint())
    assert again.alerting and again.raised_by_baseline
    assert again.baseline is not None and vote.baseline is not None
    assert again.baseline.level() == vote.baseline.level()
