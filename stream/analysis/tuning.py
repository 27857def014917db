"""Each stream's own settings over the service's: what they are, where they come from,
and how a change reaches a running stream.

A stream's effective settings are, later ones winning: the service-wide keys
(``analysis``, ``limits.max_faces``, ``vote``, the bundle's calibrated thresholds), then
the keys of its ``streams:`` entry in the config (at start), then the keys set through
the API (``POST /api/streams``, ``PATCH /api/streams/{id}``), which are saved by stream
name (:mod:`~fakewatch.stream.analysis.saved_settings`) and applied again when a stream of
that name is added after a restart. A ``null`` in a PATCH removes the API's value, so the
config's (or the service's) applies again.

A change applies to the running stream at once: the sampler takes the next frame at the
new rate, detection and face limits apply from the next frame, and new thresholds replace
the alert rule of the stream's votes without emptying their windows. An alert in progress
stays open and is judged by the new thresholds from the next analysed frame or tick: it
clears (``deepfake.cleared``) when the window is below the new exit threshold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pydantic import ValidationError

from fakewatch.engines.baseline import AlertRule, BaselineSettings
from fakewatch.stream.analysis.pace import PaceSettings
from fakewatch.stream.analysis.vote import SlidingWindowVote, Thresholds
from fakewatch.stream.config import ServiceConfig, StreamSettings

CONFIG = "config"
API = "api"


class StreamSettingsError(ValueError):
    """Settings of a stream that cannot be used; the message names the key."""


@dataclass(frozen=True)
class StreamTuning:
    """A stream's effective settings."""

    fps: float
    detect_every: int
    max_faces: int
    enter_threshold: float
    exit_threshold: float
    use_baseline: bool
    adaptive: bool
    calm_fps: float
    calm_detect_every: int
    calm_margin: float
    calm_after_s: float

    @property
    def pace(self) -> PaceSettings:
        return PaceSettings(
            fps=self.fps,
            detect_every=self.detect_every,
            adaptive=self.adaptive,
            calm_fps=self.calm_fps,
            calm_detect_every=self.calm_detect_every,
            calm_margin=self.calm_margin,
            calm_after_s=self.calm_after_s,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_settings(given: dict[str, Any]) -> dict[str, Any]:
    """``given`` validated as :class:`StreamSettings`; :class:`StreamSettingsError` naming
    every bad or unknown key."""
    try:
        StreamSettings.model_validate(given)
    except ValidationError as error:
        raise StreamSettingsError(describe_errors(error)) from None
    return dict(given)


def describe_errors(error: ValidationError) -> str:
    """A pydantic error as ``key: problem`` per bad key, and the unknown keys named."""
    unknown, parts = [], []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(body)"
        if item["type"] == "extra_forbidden":
            unknown.append(key)
        else:
            parts.append(f"{key}: {item['msg']}")
    if unknown:
        parts.insert(0, f"unknown fields: {', '.join(sorted(unknown))}")
    return "; ".join(parts)


class Tuner:
    """Effective settings of streams from the service's config, and their thresholds."""

    def __init__(
        self,
        config: ServiceConfig,
        thresholds: Thresholds,
        bundle_baseline: BaselineSettings | None = None,
    ) -> None:
        """``thresholds`` are the service's; ``bundle_baseline`` the bundle's baseline, for
        streams that turn ``use_baseline`` on when the service has it off."""
        self.config = config
        self.thresholds = thresholds
        self.bundle_baseline = bundle_baseline or thresholds.baseline

    def service_wide(self) -> StreamTuning:
        """The service's own values."""
        analysis, vote = self.config.analysis, self.config.vote
        return StreamTuning(
            fps=analysis.fps,
            detect_every=analysis.detect_every,
            max_faces=self.config.limits.max_faces,
            enter_threshold=self.thresholds.enter,
            exit_threshold=self.thresholds.exit,
            use_baseline=vote.use_baseline and self.thresholds.baseline is not None,
            adaptive=analysis.adaptive,
            calm_fps=analysis.calm_fps,
            calm_detect_every=analysis.calm_detect_every,
            calm_margin=analysis.calm_margin,
            calm_after_s=analysis.calm_after_s,
        )

    def resolve(self, configured: dict[str, Any], saved: dict[str, Any]) -> StreamTuning:
        """The effective settings: the service's, then ``configured``, then ``saved``;
        :class:`StreamSettingsError` when they do not fit together."""
        values = self.service_wide().to_dict()
        for layer in (configured, saved):
            values.update({k: v for k, v in layer.items() if v is not None})
        if self.bundle_baseline is None:
            values["use_baseline"] = False  # the bundle ships none
        if values["exit_threshold"] > values["enter_threshold"]:
            raise StreamSettingsError(
                f"exit_threshold: {values['exit_threshold']} must not exceed the stream's "
                f"enter_threshold {values['enter_threshold']}"
            )
        return StreamTuning(**values)

    def stream_thresholds(self, tuning: StreamTuning) -> Thresholds:
        """The thresholds a stream's votes use."""
        return Thresholds(
            enter=tuning.enter_threshold,
            exit=tuning.exit_threshold,
            calibrated=self.thresholds.calibrated,
            baseline=self.bundle_baseline if tuning.use_baseline else None,
        )


def merged(saved: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``saved`` with ``changes`` made: a value sets its key, ``None`` removes it."""
    result = dict(saved)
    for key, value in changes.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def sources(configured: dict[str, Any], saved: dict[str, Any]) -> dict[str, str]:
    """Where each overridden setting comes from: ``config`` or ``api`` (the API wins)."""
    found = {key: CONFIG for key, value in configured.items() if value is not None}
    found.update({key: API for key, value in saved.items() if value is not None})
    return dict(sorted(found.items()))


def retune(vote: SlidingWindowVote[Any], thresholds: Thresholds) -> None:
    """Give ``vote`` new thresholds, keeping its window, its baseline's history and an
    alert in progress (judged by the new thresholds from its next decision)."""
    old = vote.rule
    rule = AlertRule(thresholds.enter, thresholds.exit, thresholds.baseline)
    if rule.baseline is not None and old.baseline is not None:
        rule.baseline = old.baseline
    rule.alerting = old.alerting
    rule.raised_by_baseline = old.raised_by_baseline and rule.baseline is not None
    vote.rule = rule
