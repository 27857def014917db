"""The rate policy: a quiet stream turns calm and is analysed at the calm rate; a score
near the clear threshold, a new face, a lost track or a scene cut bring it back to the
full rate at the next analysed frame."""

from __future__ import annotations

import numpy as np
import pytest

from fakewatch.stream.analysis.pace import Pace, PaceSettings, Rate, Signals, scene_change
from fakewatch.stream.sources.frames import SourceFrame, thumbnail

SETTINGS = PaceSettings(
    fps=5.0, detect_every=3, calm_fps=1.0, calm_detect_every=2, calm_margin=0.2, calm_after_s=2.0
)
EXIT = 0.45
SCENE = np.full((240, 320, 3), 90, np.uint8)


def quiet(frame: np.ndarray = SCENE) -> Signals:
    return Signals(score=0.05, exit=EXIT, thumbnail=thumbnail(frame))


def calm_pace() -> tuple[Pace, float]:
    """A pace fed 3 s of quiet frames at 5 fps; it is calm; the time of its last frame."""
    pace, now = Pace(), 0.0
    while now <= 3.0:
        pace.observe(now, quiet(), SETTINGS)
        now += 0.2
    assert pace.rate is Rate.CALM, pace.reason
    return pace, now


def analysed_per_second(pace: Pace, settings: PaceSettings = SETTINGS) -> int:
    """How many of 5 s of full-rate ticks the pace lets through, per second."""
    ticks = [100 + i / settings.fps for i in range(round(5 * settings.fps))]
    return round(sum(pace.due(t, settings) for t in ticks) / 5)


def test_a_quiet_stream_turns_calm_and_is_analysed_at_the_calm_rate() -> None:
    pace = Pace()
    pace.observe(0.0, quiet(), SETTINGS)
    pace.observe(1.0, quiet(), SETTINGS)
    assert pace.rate is Rate.FULL and "quiet for" in pace.reason
    assert analysed_per_second(pace) == 5
    pace.observe(2.2, quiet(), SETTINGS)
    assert pace.calm and pace.reason.startswith("calm")
    assert analysed_per_second(pace) == 1
    assert pace.detect_every(SETTINGS) == 2


def test_a_stream_without_faces_is_calm_too() -> None:
    pace = Pace()
    for now in (0.0, 1.0, 2.5):
        pace.observe(now, Signals(score=None, exit=EXIT), SETTINGS)
    assert pace.calm and "no face" in pace.reason


@pytest.mark.parametrize(
    ("signals", "reason"),
    [
        (Signals(score=EXIT - 0.1, exit=EXIT), "within 0.2 of the clear threshold"),
        (Signals(score=0.05, exit=EXIT, alerting=True), "alert is in progress"),
        (Signals(score=0.05, exit=EXIT, new_face=True), "new face"),
        (Signals(score=0.05, exit=EXIT, lost_track=True), "track was lost"),
        (
            Signals(score=0.05, exit=EXIT, thumbnail=thumbnail(np.full_like(SCENE, 200))),
            "scene cut",
        ),
    ],
)
def test_each_sign_of_change_brings_the_full_rate_back_at_once(
    signals: Signals, reason: str
) -> None:
    pace, now = calm_pace()
    assert analysed_per_second(pace) == 1
    pace.observe(now, signals, SETTINGS)
    assert pace.rate is Rate.FULL
    assert reason in pace.reason
    assert analysed_per_second(pace) == 5
    assert pace.detect_every(SETTINGS) == 3
    # and it stays at the full rate until quiet again for calm_after_s
    same = Signals(score=0.05, exit=EXIT, thumbnail=signals.thumbnail)
    pace.observe(now + 1.0, same, SETTINGS)
    assert pace.rate is Rate.FULL
    pace.observe(now + SETTINGS.calm_after_s + 0.1, same, SETTINGS)
    assert pace.calm


def test_a_score_well_below_the_margin_and_small_motion_keep_it_calm() -> None:
    pace, now = calm_pace()
    moved = SCENE.copy()
    moved[100:140, 100:160] = 200  # a hand moving: a small part of the picture
    pace.observe(now, Signals(score=EXIT - 0.25, exit=EXIT, thumbnail=thumbnail(moved)), SETTINGS)
    assert pace.calm


def test_with_adaptive_analysis_off_every_frame_is_analysed() -> None:
    pace, now = calm_pace()
    off = PaceSettings(fps=5.0, detect_every=3, adaptive=False, calm_fps=1.0)
    assert analysed_per_second(pace, off) == 5
    assert pace.detect_every(off) == 3
    pace.observe(now, quiet(), off)
    assert pace.rate is Rate.FULL and "off" in pace.reason


def test_the_calm_rate_is_never_above_the_full_rate() -> None:
    pace, _ = calm_pace()
    slow = PaceSettings(fps=2.0, detect_every=1, calm_fps=10.0)
    assert analysed_per_second(pace, slow) == 2


def test_thumbnails_are_made_when_the_frame_is_converted() -> None:
    frame = SourceFrame(SCENE, 0.0, 0)
    assert frame.thumbnail is None
    assert frame.image is SCENE
    assert frame.thumbnail is not None and frame.thumbnail.shape == (18, 32)
    cut = thumbnail(np.zeros_like(SCENE))
    assert scene_change(frame.thumbnail, cut) == pytest.approx(90 / 255, abs=1e-3)
    assert scene_change(frame.thumbnail, None) == 0.0
