"""A stream's own settings: their precedence, their checks, new thresholds on a live
window, and the SQLite table that keeps the API's values across restarts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fakewatch.stream.analysis.saved_settings import SQLiteSavedSettings
from fakewatch.stream.analysis.tuning import (
    StreamSettingsError,
    Tuner,
    check_settings,
    merged,
    retune,
    sources,
)
from fakewatch.stream.analysis.vote import Decision, SlidingWindowVote, Thresholds
from fakewatch.stream.config import ConfigError, ServiceConfig, load_config

SERVICE = Thresholds(enter=0.8, exit=0.7, calibrated=True)


def test_the_api_wins_over_the_config_which_wins_over_the_service() -> None:
    tuner = Tuner(ServiceConfig(), SERVICE)
    configured = {"fps": 3.0, "detect_every": 4}
    saved = {"fps": 2.0, "calm_fps": 1.0}
    tuning = tuner.resolve(configured, saved)
    assert (tuning.fps, tuning.detect_every, tuning.calm_fps) == (2.0, 4, 1.0)
    assert (tuning.enter_threshold, tuning.max_faces) == (0.8, 4)  # the service's
    assert sources(configured, saved) == {"calm_fps": "api", "detect_every": "config", "fps": "api"}
    assert tuner.resolve(configured, merged(saved, {"fps": None})).fps == 3.0
    assert not tuning.use_baseline  # the bundle ships no baseline here


def test_thresholds_are_checked_against_the_ones_they_meet() -> None:
    tuner = Tuner(ServiceConfig(), SERVICE)
    with pytest.raises(StreamSettingsError, match=r"exit_threshold: 0\.9 must not exceed"):
        tuner.resolve({}, {"exit_threshold": 0.9})
    with pytest.raises(StreamSettingsError, match="exit_threshold must not exceed"):
        check_settings({"enter_threshold": 0.5, "exit_threshold": 0.6})
    with pytest.raises(StreamSettingsError, match=r"unknown fields: colour; fps: Input"):
        check_settings({"colour": 1, "fps": -1})


def test_new_thresholds_keep_the_window_and_judge_the_open_alert() -> None:
    vote: SlidingWindowVote[None] = SlidingWindowVote(0.8, 0.7, window_frames=8, min_frames=3)
    decisions = [vote.add(t, 0.85) for t in (0.0, 0.2, 0.4)]
    assert decisions[-1] is Decision.SUSPECTED
    retune(vote, Thresholds(enter=0.95, exit=0.9, calibrated=True))
    assert vote.alerting and len(vote.entries) == 3 and (vote.enter, vote.exit) == (0.95, 0.9)
    assert vote.tick(0.6) is Decision.CLEARED  # 0.85 is under the new exit
    # and the same scores do not raise it again under the new enter
    assert [vote.add(t, 0.85) for t in (20.0, 20.2, 20.4, 20.6)] == [None] * 4


def test_saved_settings_survive_a_reopen_and_an_empty_set_forgets(tmp_path: Path) -> None:
    path = tmp_path / "state" / "stream-settings.sqlite3"

    async def run() -> None:
        saved = SQLiteSavedSettings(path)
        assert await saved.load("lobby") == {}
        await saved.save("lobby", {"fps": 2.0, "adaptive": False})
        await saved.save("hall", {"detect_every": 5})
        await saved.close()
        again = SQLiteSavedSettings(path)
        assert await again.load("lobby") == {"fps": 2.0, "adaptive": False}
        await again.save("lobby", {})
        assert await again.load("lobby") == {}
        assert await again.load("hall") == {"detect_every": 5}
        await again.close()

    asyncio.run(run())


def test_a_stream_entry_is_checked_with_the_config() -> None:
    entry = {"name": "a", "url": "rtsp://cam/x", "exit_threshold": 0.9}
    with pytest.raises(ConfigError, match=r"stream 'a': its exit_threshold 0\.9 must not exceed"):
        load_config(environ={}, overrides={"vote.enter_threshold": 0.8, "streams": [entry]})
    with pytest.raises(ConfigError, match=r"streams\.0\.calm_fps: Input should be greater"):
        load_config(environ={}, overrides={"streams": [{**entry, "calm_fps": 0}]})
    config = load_config(environ={}, overrides={"streams": [{**entry, "fps": 2}]})
    assert config.streams[0].settings() == {"exit_threshold": 0.9, "fps": 2.0}
