"""The live decision rule replayed on evaluated videos: the absolute threshold alone
against the threshold plus each stream's own baseline (:mod:`fakewatch.engines.baseline`).

Three kinds of stream are replayed from the frame scores an evaluation measured:

- every real video as a stream: how many of its windows alert, and whether any does;
- every real/fake pair of the same footage as one stream that starts real and switches
  to the fake half way (a face swap turned on during a call): whether it alerts after
  the switch, how many windows later, and whether it alerted before it;
- every fake video as a stream that is fake from its first frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fakewatch.engines.aggregate import DEFAULT_WINDOW, window_scores
from fakewatch.engines.baseline import BaselineSettings, decisions

RULES = ("absolute", "baseline")


def _replay(
    frames: list[float], suspect: float, clear: float, settings: BaselineSettings | None
) -> np.ndarray:
    windows = window_scores(frames, DEFAULT_WINDOW)
    return decisions(windows, suspect, clear, settings)


def study(
    videos: list[dict[str, Any]],
    pairs: list[list[int]],
    suspect: float,
    clear: float,
    settings: BaselineSettings | None = None,
) -> dict[str, Any]:
    """Both rules on the report's ``videos`` (with ``frame_scores``) and ``pairs``."""
    settings = settings or BaselineSettings()
    out: dict[str, Any] = {"suspect": suspect, "clear": clear, "baseline": vars(settings)}
    for rule in RULES:
        chosen = settings if rule == "baseline" else None
        reals = [v for v in videos if v["label"] == 0 and v["frame_scores"]]
        fakes = [v for v in videos if v["label"] == 1 and v["frame_scores"]]
        real_alerts = [_replay(v["frame_scores"], suspect, clear, chosen) for v in reals]
        windows = np.concatenate(real_alerts) if real_alerts else np.zeros(0, bool)
        before: list[bool] = []
        delays: list[int | None] = []
        for fake_at, real_at in pairs:
            real, fake = videos[real_at]["frame_scores"], videos[fake_at]["frame_scores"]
            if not real or not fake:
                continue
            alerting = _replay(list(real) + list(fake), suspect, clear, chosen)
            after = np.flatnonzero(alerting[len(real) :])
            before.append(bool(alerting[: len(real)].any()))
            delays.append(int(after[0]) if after.size else None)
        fake_alerted = [
            bool(_replay(v["frame_scores"], suspect, clear, chosen).any()) for v in fakes
        ]
        caught = [d for d in delays if d is not None]
        out[rule] = {
            "real_windows": int(windows.size),
            "real_windows_alerting": float(windows.mean()) if windows.size else None,
            "real_streams": len(reals),
            "real_streams_alerting": int(sum(bool(a.any()) for a in real_alerts)),
            "switched_streams": len(delays),
            "switched_alerted_after": len(caught),
            "switched_alerted_before": int(sum(before)),
            "median_windows_to_alert": float(np.median(caught)) if caught else None,
            "fake_streams": len(fakes),
            "fake_streams_alerted": int(sum(fake_alerted)),
        }
    return out
