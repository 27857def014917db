"""Whether the pipeline is ready, and if not, why: what ``/readyz`` and
``fakewatch_ready`` say.

Each component that is not ready (``start`` until the first warm-up inference, then the
engine or the face detector while it restarts, ``stopping`` at the end) gives a reason;
the pipeline is ready when none is left.
"""

from __future__ import annotations

import logging

from prometheus_client import Gauge

from fakewatch.stream.logs import LOGGER_NAME, log

logger = logging.getLogger(f"{LOGGER_NAME}.pipeline")


class Readiness:
    """Reasons for not being ready, by component; ``gauge`` follows (1 when ready)."""

    def __init__(self, gauge: Gauge) -> None:
        self.ready = False
        self._gauge = gauge
        self._unready: dict[str, str] = {
            "start": "warming up: the engine has not run its first inference yet"
        }

    @property
    def reason(self) -> str:
        """Why the pipeline is not ready (empty when it is)."""
        return "; ".join(self._unready.values())

    def unready(self, component: str, reason: str) -> None:
        was_ready = self.ready
        self._unready[component] = reason
        self.ready = False
        self._gauge.set(0)
        if was_ready:
            log(logger, logging.WARNING, "pipeline.not_ready", reason=reason)

    def ready_again(self, component: str) -> None:
        self._unready.pop(component, None)
        if not self._unready and not self.ready:
            self.ready = True
            self._gauge.set(1)
            if component != "start":
                log(logger, logging.INFO, "pipeline.ready_again", after=component)
