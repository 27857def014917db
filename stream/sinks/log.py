"""The log sink: each event as one structured log line."""

from __future__ import annotations

import logging
from typing import Any

from fakewatch.stream.analysis.events import Event
from fakewatch.stream.logs import LOGGER_NAME, log

logger = logging.getLogger(f"{LOGGER_NAME}.events")


class LogSink:
    """Logs each event as one structured line."""

    def __init__(self, level: int = logging.INFO) -> None:
        self.level = level

    async def emit(self, event: Event) -> None:
        fields: dict[str, Any] = {"stream": event.stream_name, "source": event.source}
        if event.track:
            fields["track"] = event.track
        if event.box:
            fields["box"] = ",".join(f"{v:.0f}" for v in event.box.as_list())
        if event.window:
            fields["window_score"] = event.window.score
            fields["frames"] = len(event.window.scores)
        if event.evidence:
            fields["peak_score"] = event.evidence.score
        if event.detail:
            fields["detail"] = event.detail
        log(logger, self.level, str(event.type), **fields)
