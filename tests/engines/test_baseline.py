"""A stream's own baseline adds a second way to raise an alert: a sudden rise."""

from __future__ import annotations

import numpy as np
import pytest

from fakewatch.engines.baseline import BaselineSettings, StreamBaseline, decisions

SUSPECT, CLEAR = 0.9, 0.85


def steady(level: float, count: int, seed: int = 0) -> list[float]:
    return list(level + np.random.default_rng(seed).normal(0, 0.02, count))


def test_a_swap_switched_on_mid_stream_rises_above_the_baseline() -> None:
    windows = steady(0.3, 60) + steady(0.65, 20, seed=1)
    absolute = decisions(windows, SUSPECT, CLEAR)
    relative = decisions(windows, SUSPECT, CLEAR, BaselineSettings())
    assert not absolute.any()
    assert not relative[:60].any() and relative[62:].all()


def test_a_camera_that_always_scores_high_is_its_own_baseline() -> None:
    windows = steady(0.7, 200)
    assert not decisions(windows, SUSPECT, CLEAR, BaselineSettings()).any()


def test_a_swap_on_from_the_start_needs_the_absolute_threshold() -> None:
    windows = steady(0.95, 100)
    relative = decisions(windows, SUSPECT, CLEAR, BaselineSettings())
    assert relative.all()  # raised by the absolute threshold, which is kept


def test_the_baseline_learns_nothing_while_alerting() -> None:
    baseline = StreamBaseline(BaselineSettings(warmup=5, history=10))
    for score in steady(0.2, 10):
        baseline.observe(score, alerting=False)
    before = baseline.level()
    for _ in range(50):
        baseline.observe(0.8, alerting=True)
    assert baseline.level() == before
    assert baseline.risen(0.8) and not baseline.risen(0.25)


def test_nothing_is_said_before_the_warmup_and_bad_settings_are_refused() -> None:
    baseline = StreamBaseline(BaselineSettings(warmup=40))
    for score in steady(0.1, 39):
        baseline.observe(score, alerting=False)
    assert baseline.level() is None and not baseline.risen(0.99)
    with pytest.raises(ValueError, match="warmup"):
        BaselineSettings(warmup=0)
    with pytest.raises(ValueError, match="floor"):
        BaselineSettings(floor=2.0)


def test_stream_study_counts_each_kind_of_stream() -> None:
    from fakewatch.training.stream_study import study

    def video(label: int, level: float, count: int, seed: int) -> dict[str, object]:
        return {"label": label, "frame_scores": steady(level, count, seed)}

    videos = [
        video(0, 0.3, 80, 1),  # the real half of a pair
        video(1, 0.7, 60, 2),  # its fake: below the absolute threshold
        video(0, 0.2, 80, 3),  # another real stream
        video(1, 0.95, 40, 4),  # a fake that the absolute threshold catches
    ]
    result = study(videos, [[1, 0]], SUSPECT, CLEAR)
    absolute, baseline = result["absolute"], result["baseline"]
    assert absolute["real_streams"] == 2 and absolute["real_streams_alerting"] == 0
    assert absolute["switched_alerted_after"] == 0 and baseline["switched_alerted_after"] == 1
    assert baseline["switched_alerted_before"] == 0
    assert absolute["fake_streams_alerted"] == 1 == baseline["fake_streams_alerted"]
    assert baseline["median_windows_to_alert"] is not None
