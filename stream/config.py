"""The service's configuration: one pydantic model, from YAML plus environment overrides.

Every section forbids unknown keys, and every limit and timeout has bounds and a
description, so a typo or an absurd value is refused at start with a message that says
which key is wrong. Environment variables override the file: ``FAKEWATCH_SERVER__PORT=9090``
sets ``server.port`` (sections and keys joined by ``__``; values parsed as YAML scalars).
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from fakewatch.stream.redact import MASK, redact_url
from fakewatch.stream.urlguard import check_webhook_url

ENV_PREFIX = "FAKEWATCH_"

ConfigT = TypeVar("ConfigT", bound=BaseModel)

DEFAULT_PROTOCOLS = ("rtsp", "rtsps", "rtmp", "rtmps", "srt", "http", "https", "hls", "udp", "rtp")
LOCAL_PROTOCOLS = ("file",)
MAX_FACES = 64
"""The most faces a frame may have analysed (``limits.max_faces``, a stream's own)."""


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key and the problem."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerConfig(Section):
    host: str = Field("127.0.0.1", description="address the HTTP API listens on")
    port: int = Field(8080, ge=0, le=65535, description="HTTP port (0 picks a free one)")
    token: str | None = Field(
        None,
        min_length=16,
        description="bearer token for every control endpoint; required off loopback",
    )
    public_url: str | None = Field(
        None, description="base URL clients reach the service at (for WHIP Location headers)"
    )
    shutdown_timeout_s: float = Field(
        10.0,
        ge=1,
        le=600,
        description="longest a stop (SIGTERM, Ctrl-C) takes: streams stopped, open alerts "
        "closed with a final event, webhook outbox closed; whatever is left is abandoned",
    )


class EngineConfig(Section):
    bundle: Path | None = Field(None, description="engine bundle folder (default: the shipped one)")
    backend: Literal["auto", "openvino", "onnxruntime", "torch", "tensorrt"] = "auto"
    device: str = Field(
        "cpu",
        pattern=r"^(cpu|cuda(:[0-9]{1,2})?|tensorrt(:[0-9]{1,2})?)$",
        description="cpu, cuda or cuda:N (the GPU's index); tensorrt[:N] is onnxruntime's "
        "TensorRT provider",
    )
    precision: Literal["auto", "f32", "bf16", "fp16", "int8"] = Field(
        "auto",
        description="inference precision; auto: the fastest whose parity check with f32 "
        "passed for this bundle on this kind of machine (int8, bf16; fp16 on CUDA), else f32",
    )
    threads: int | None = Field(None, ge=1, le=256, description="inference threads (CPU)")


class LimitsConfig(Section):
    max_streams: int = Field(16, ge=1, le=1024, description="streams at once; more get 429")
    max_width: int = Field(3840, ge=64, le=16384, description="widest frame analysed (pixels)")
    max_height: int = Field(2160, ge=64, le=16384, description="tallest frame analysed (pixels)")
    max_faces: int = Field(
        4, ge=1, le=MAX_FACES, description="faces analysed per frame, largest first"
    )
    min_face: int = Field(40, ge=8, le=2048, description="smallest face analysed (pixels)")
    max_offer_bytes: int = Field(
        65536, ge=1024, le=1048576, description="largest SDP offer accepted"
    )


class ProbeConfig(Section):
    analyzeduration_s: float = Field(
        0.1,
        ge=0,
        le=60,
        description="longest stretch of a stream FFmpeg reads to learn its codecs before "
        "handing over the first frame (its analyzeduration)",
    )
    probesize: int = Field(
        32768,
        ge=32,
        le=100_000_000,
        description="most bytes FFmpeg reads for that (its probesize)",
    )
    schemes: tuple[str, ...] = Field(
        ("rtsp", "rtsps"),
        description="URL schemes these limits apply to: RTSP declares its streams and "
        "codecs in its SDP, so probing only delays the first frame; the others (RTMP, "
        "SRT, UDP, HLS, files), whose streams may show up only in their packets, keep "
        "FFmpeg's own probe (5 s, 5 MB)",
    )


class SourceConfig(Section):
    protocols: tuple[str, ...] = Field(
        DEFAULT_PROTOCOLS, description="URL schemes a stream may use"
    )
    allow_local_files: bool = Field(
        False, description="allow file paths and file: URLs (demos, tests); off by default"
    )
    rtsp_transport: Literal["tcp", "udp"] = "tcp"
    open_timeout_s: float = Field(10.0, gt=0, le=120, description="connect/open timeout")
    read_timeout_s: float = Field(5.0, gt=0, le=120, description="socket read timeout")
    stall_timeout_s: float = Field(
        8.0, gt=0, le=600, description="no frame for this long marks the stream down"
    )
    reconnect_initial_s: float = Field(0.5, gt=0, le=60, description="first reconnect delay")
    reconnect_max_s: float = Field(30.0, gt=0, le=3600, description="longest reconnect delay")
    reconnect_jitter: float = Field(
        0.2, ge=0, le=1, description="random fraction added to or taken from each delay"
    )
    loop_files: bool = Field(True, description="restart local files at their end (demos)")
    skip_nonref_ratio: float = Field(
        3.0,
        ge=1,
        le=100,
        description="skip non-reference frames when the stream's rate is this many times "
        "the analysis rate",
    )
    probe: ProbeConfig = Field(
        default_factory=ProbeConfig, description="FFmpeg's probing before the first frame"
    )
    hwaccel: Literal["none", "auto", "cuda", "vaapi", "qsv", "videotoolbox", "d3d11va"] = Field(
        "none",
        description="decode on this hardware device (auto: the first one FFmpeg has and "
        "can open); a device that is missing or cannot decode the stream is logged once "
        "and the stream is decoded in software",
    )


class AnalysisConfig(Section):
    fps: float = Field(5.0, gt=0, le=60, description="analysed frames per second per stream")
    detect_every: int = Field(
        3, ge=1, le=100, description="run face detection on every k-th analysed frame"
    )
    detect_size: int = Field(640, ge=160, le=4096, description="longer side detection runs at")
    detector_threshold: float = Field(0.8, gt=0, lt=1, description="face detector confidence")
    track_iou: float = Field(0.3, gt=0, lt=1, description="IoU that continues a face track")
    track_max_missed: int = Field(
        2, ge=0, le=100, description="detections a track may miss before it ends"
    )
    track_motion: Literal["flow", "none"] = Field(
        "flow",
        description="how face boxes move between detections: flow follows the face by "
        "optical flow (Lucas-Kanade, a few ms per face), none keeps the last detected box",
    )
    detector_workers: int = Field(
        2,
        ge=1,
        le=64,
        description="face threads (RGB conversion, detection, crops); a second one lets "
        "them use another core while the engine runs",
    )
    detect_timeout_s: float = Field(
        10.0,
        gt=0,
        le=600,
        description="a face detection call running longer has hung: its frame is dropped "
        "(detector_failed) and the detector restarted",
    )
    restart_after_errors: int = Field(
        3, ge=1, le=1000, description="detection calls failing in a row that restart the detector"
    )
    restart_timeout_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="longest opening and warming up a detector may take (at start or "
        "restart) before it is tried again",
    )
    adaptive: bool = Field(
        True,
        description="analyse a calm stream (window score well below the clear threshold, "
        "its faces tracked, no new face) at calm_fps; back to fps at once on a score near "
        "the threshold, a new face, a lost track or a scene cut",
    )
    calm_fps: float = Field(
        2.5, gt=0, le=60, description="analysed frames per second of a calm stream"
    )
    calm_detect_every: int = Field(
        2, ge=1, le=100, description="face detection on every k-th analysed frame when calm"
    )
    calm_margin: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="a stream is calm only while its window scores and its frame's score "
        "stay this far below the clear (exit) threshold",
    )
    calm_after_s: float = Field(
        2.0, ge=0, le=600, description="quiet time at the full rate before a stream turns calm"
    )


class BatcherConfig(Section):
    max_batch: int = Field(8, ge=1, le=256, description="crops per engine call")
    max_wait_ms: float = Field(
        20.0, ge=0, le=5000, description="longest a crop waits for its batch to fill"
    )
    queue_size: int = Field(
        64, ge=1, le=65536, description="crops waiting; beyond it the oldest is dropped"
    )
    deadline_s: float = Field(
        5.0, gt=0, le=600, description="crops older than this are dropped, not analysed"
    )
    infer_timeout_s: float = Field(
        10.0,
        gt=0,
        le=600,
        description="an engine call running longer has hung: its crops are dropped "
        "(engine_failed) and the engine restarted",
    )
    restart_after_errors: int = Field(
        3, ge=1, le=1000, description="engine calls failing in a row that restart the engine"
    )
    restart_timeout_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="longest opening and warming up an engine may take (at start or "
        "restart) before it is tried again",
    )


class VoteConfig(Section):
    window_frames: int = Field(8, ge=1, le=1000, description="analysed frames in the window")
    window_seconds: float = Field(
        4.0, gt=0, le=600, description="frames older than this leave the window"
    )
    min_frames: int = Field(
        5, ge=1, le=1000, description="frames with a face needed before a decision"
    )
    enter_threshold: float | None = Field(
        None, gt=0, lt=1, description="window score that raises an alert (default: bundle)"
    )
    exit_threshold: float | None = Field(
        None, gt=0, lt=1, description="window score under which it clears (default: bundle)"
    )
    cooldown_s: float = Field(
        10.0, ge=0, le=3600, description="quiet time after a clear before a new alert"
    )
    use_baseline: bool = Field(
        True,
        description="also alert on a rise above the stream's own usual level, when the "
        "bundle ships a baseline",
    )


class EvidenceConfig(Section):
    folder: Path = Field(
        Path("fakewatch-data/evidence"), description="where alert evidence is kept"
    )
    max_alerts: int = Field(1000, ge=1, le=1_000_000, description="alerts kept, oldest removed")
    max_age_days: float = Field(30.0, gt=0, le=3650, description="evidence older than this goes")
    max_megabytes: float = Field(2048.0, gt=0, le=1_000_000, description="evidence kept in all")
    clip_before_s: float = Field(
        4.0, ge=0, le=30, description="seconds of video kept before an alert for its clip (0: none)"
    )
    clip_after_s: float = Field(3.0, ge=0, le=30, description="seconds recorded after an alert")
    clip_fps: float = Field(
        5.0, gt=0, le=30, description="clip frames per second (at most the analysed frame rate)"
    )
    clip_height: int = Field(360, ge=120, le=1080, description="clip height in pixels")
    link_ttl_s: float = Field(
        7 * 86400, ge=1, le=365 * 86400, description="how long a signed evidence link is valid"
    )
    link_key: SecretStr | None = Field(
        None,
        description="key signing evidence links (16+ characters); unset: a random one kept in "
        "the evidence folder (.link-key, mode 0600); never shown",
    )

    @field_validator("link_key")
    @classmethod
    def _check_link_key(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and len(key.get_secret_value()) < 16:
            raise ValueError("link_key must be at least 16 characters")
        return key


WebhookEvent = Literal["deepfake.suspected", "deepfake.cleared", "stream.down", "stream.up"]
WEBHOOK_EVENTS: tuple[WebhookEvent, ...] = (
    "deepfake.suspected",
    "deepfake.cleared",
    "stream.down",
    "stream.up",
)
SECRET_PREFIX = "whsec_"


def webhook_secret_key(secret: str) -> bytes:
    """The signing key of a Standard Webhooks secret ``whsec_<base64>`` (24 to 64 bytes);
    :class:`ValueError` (never quoting the secret) when it is not one."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret is {SECRET_PREFIX}<base64 of 24 to 64 random bytes>")
    encoded = secret[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"the part after {SECRET_PREFIX} is not valid base64") from None
    if not 24 <= len(key) <= 64:
        raise ValueError(f"a webhook secret must decode to 24 to 64 bytes, not {len(key)}")
    return key


class WebhookEndpoint(Section):
    """One receiver of signed event deliveries (Standard Webhooks)."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="label in logs and metrics, and the endpoint's key in the outbox",
    )
    url: str = Field(min_length=1, max_length=2048, description="http(s) URL events are POSTed to")
    secrets: tuple[SecretStr, ...] = Field(
        (),
        description="whsec_<base64> signing secrets, all live at once (rotation); never shown",
    )
    secrets_file: Path | None = Field(
        None, description="file with more whsec_ secrets, one a line (# comments), read at start"
    )
    events: tuple[WebhookEvent, ...] = Field(
        WEBHOOK_EVENTS, min_length=1, description="event types sent to this endpoint"
    )
    allow_private: bool = Field(
        False, description="allow loopback, private and link-local addresses (off: refused)"
    )
    timeout_s: float = Field(10.0, gt=0, le=120, description="total time one request may take")

    @model_validator(mode="before")
    @classmethod
    def _read_secrets_file(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("secrets_file"):
            return data
        path = Path(data["secrets_file"])
        try:
            lines = path.read_text().splitlines()
        except OSError as error:
            raise ValueError(f"cannot read secrets_file {path}: {error.strerror}") from None
        found = [s for s in (line.split("#", 1)[0].strip() for line in lines) if s]
        if not found:
            raise ValueError(f"secrets_file {path} holds no secret")
        given = data.get("secrets") or ()
        if isinstance(given, str | SecretStr):
            given = (given,)
        return {**data, "secrets": (*given, *found)}

    @field_validator("secrets")
    @classmethod
    def _check_secrets(cls, secrets: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for index, secret in enumerate(secrets):
            try:
                webhook_secret_key(secret.get_secret_value())
            except ValueError as error:
                raise ValueError(f"secret {index + 1}: {error}") from None
        return secrets

    @model_validator(mode="after")
    def _check(self) -> WebhookEndpoint:
        check_webhook_url(self.url, self.allow_private)
        if not self.secrets:
            raise ValueError(f"webhook endpoint {self.name!r} needs secrets or secrets_file")
        return self

    def keys(self) -> list[bytes]:
        """The signing keys of every live secret."""
        return [webhook_secret_key(s.get_secret_value()) for s in self.secrets]


class WebhooksConfig(Section):
    endpoints: tuple[WebhookEndpoint, ...] = Field(
        (), description="receivers of signed event deliveries (Standard Webhooks)"
    )
    outbox: Path = Field(
        Path("fakewatch-data/outbox.sqlite3"),
        description="SQLite outbox of deliveries: written before sending, kept across restarts",
    )
    initial_backoff_s: float = Field(
        5.0, gt=0, le=3600, description="delay before the first retry; it doubles per attempt"
    )
    max_backoff_s: float = Field(
        3600.0, gt=0, le=86400, description="longest delay between attempts (caps Retry-After)"
    )
    backoff_jitter: float = Field(
        0.2, ge=0, le=1, description="random fraction added to or taken from each delay"
    )
    max_attempts: int = Field(
        30, ge=1, le=1000, description="attempts before a delivery is given up (failed)"
    )
    max_age_s: float = Field(
        86400.0, gt=0, le=30 * 86400, description="a delivery older than this is given up"
    )
    max_pending: int = Field(
        10000,
        ge=1,
        le=1_000_000,
        description="undelivered deliveries kept per endpoint; beyond it the oldest is dropped",
    )
    max_in_flight: int = Field(4, ge=1, le=64, description="requests at once per endpoint")
    history_hours: float = Field(
        24.0, ge=0, le=8760, description="delivered and given-up deliveries kept for inspection"
    )


ICE_SCHEMES = ("stun", "turn", "turns")


class IceServer(Section):
    """One STUN or TURN server for WebRTC (the browser's ``RTCIceServer``)."""

    urls: tuple[str, ...] = Field(
        min_length=1,
        description="stun:HOST[:PORT], turn:HOST[:PORT][?transport=udp|tcp] or "
        "turns:HOST[:PORT] (TLS over TCP)",
    )
    username: str | None = Field(None, max_length=512, description="TURN user name")
    credential: SecretStr | None = Field(None, description="TURN password; never shown")

    @field_validator("urls", mode="before")
    @classmethod
    def _one_url(cls, urls: Any) -> Any:
        return (urls,) if isinstance(urls, str) else urls

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            parse_ice_url(url)
        return urls

    @model_validator(mode="after")
    def _check(self) -> IceServer:
        turn = [url for url in self.urls if parse_ice_url(url)["scheme"] != "stun"]
        if turn and (not self.username or self.credential is None):
            raise ValueError(f"{turn[0]} is a TURN server: set its username and credential")
        return self


def parse_ice_url(url: str) -> dict[str, Any]:
    """``url``'s scheme, host, port and transport as aiortc reads them; :class:`ValueError`
    for a URL aiortc would refuse or silently skip."""
    from aiortc.rtcicetransport import parse_stun_turn_uri  # aiortc is slow to import

    scheme = url.split(":", 1)[0]
    if scheme not in ICE_SCHEMES:
        raise ValueError(f"{url!r}: an ICE server URL begins with stun:, turn: or turns:")
    try:
        parsed = parse_stun_turn_uri(url)
    except ValueError:
        raise ValueError(
            f"{url!r} is not a STUN or TURN URL: stun:HOST[:PORT], "
            "turn:HOST[:PORT][?transport=udp|tcp], turns:HOST[:PORT]"
        ) from None
    if parsed["scheme"] == "turn" and parsed["transport"] not in ("udp", "tcp"):
        raise ValueError(f"{url!r}: a turn: URL's transport is udp or tcp")
    if parsed["scheme"] == "turns" and parsed["transport"] != "tcp":
        raise ValueError(f"{url!r}: a turns: URL runs over TCP (TLS); leave out ?transport")
    return parsed


class WebRTCConfig(Section):
    ice_servers: tuple[IceServer, ...] = Field(
        (),
        description="STUN and TURN servers for WebRTC publishers behind NAT: at most one "
        "of each (the service's WebRTC stack uses one); none: only this host's addresses",
    )

    @model_validator(mode="after")
    def _check(self) -> WebRTCConfig:
        schemes = [
            parse_ice_url(url)["scheme"].rstrip("s") for s in self.ice_servers for url in s.urls
        ]
        for kind in ("stun", "turn"):
            if schemes.count(kind) > 1:
                raise ValueError(
                    f"{schemes.count(kind)} {kind.upper()} URLs: the service uses one STUN "
                    "and one TURN server; list at most one of each"
                )
        return self

    def stun_urls(self) -> list[str]:
        """The STUN URLs: what the publisher page may be told (no credentials)."""
        return [url for s in self.ice_servers for url in s.urls if url.startswith("stun:")]


class StreamSettings(Section):
    """Settings of one stream over the service-wide ones: every key is optional, and one
    left out (or ``null``) takes the service's value. The body of
    ``PATCH /api/streams/{id}``, the extra keys of ``POST /api/streams`` and of a
    ``streams:`` entry; the bounds are those of the service-wide keys."""

    fps: float | None = Field(
        None, gt=0, le=60, description="analysed frames per second (analysis.fps)"
    )
    detect_every: int | None = Field(
        None, ge=1, le=100, description="face detection on every k-th analysed frame"
    )
    max_faces: int | None = Field(
        None, ge=1, le=MAX_FACES, description="faces analysed per frame, largest first"
    )
    enter_threshold: float | None = Field(
        None, gt=0, lt=1, description="window score that raises an alert (vote.enter_threshold)"
    )
    exit_threshold: float | None = Field(
        None, gt=0, lt=1, description="window score under which it clears (vote.exit_threshold)"
    )
    use_baseline: bool | None = Field(
        None, description="also alert on a rise above the stream's usual level (vote)"
    )
    adaptive: bool | None = Field(
        None, description="analyse the stream at calm_fps while it is calm (analysis.adaptive)"
    )
    calm_fps: float | None = Field(
        None, gt=0, le=60, description="analysed frames per second while calm"
    )
    calm_detect_every: int | None = Field(
        None, ge=1, le=100, description="face detection on every k-th analysed frame when calm"
    )
    calm_margin: float | None = Field(
        None, ge=0, lt=1, description="how far below the clear threshold a calm stream stays"
    )
    calm_after_s: float | None = Field(
        None, ge=0, le=600, description="quiet time at the full rate before turning calm"
    )

    @model_validator(mode="after")
    def _check_thresholds(self) -> StreamSettings:
        enter, exit = self.enter_threshold, self.exit_threshold
        if enter is not None and exit is not None and exit > enter:
            raise ValueError("exit_threshold must not exceed enter_threshold")
        return self

    def given(self) -> dict[str, Any]:
        """The keys set, with their values (``None``: back to the service's value)."""
        return {key: getattr(self, key) for key in self.model_fields_set}


class StreamEntry(StreamSettings):
    """A stream started with the service, with its own settings (see
    :class:`StreamSettings`)."""

    name: str = Field(min_length=1, max_length=100)
    url: str = Field(min_length=1, max_length=4096)

    def settings(self) -> dict[str, Any]:
        """The stream's own settings given in the entry."""
        return {
            key: value
            for key, value in self.given().items()
            if key in StreamSettings.model_fields and value is not None
        }


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    json_lines: bool = Field(False, alias="json", description="one JSON object per log line")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ServiceConfig(Section):
    """Everything ``fakewatch serve`` needs; every field has a working default."""

    server: ServerConfig = ServerConfig()
    engine: EngineConfig = EngineConfig()
    limits: LimitsConfig = LimitsConfig()
    sources: SourceConfig = SourceConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    batcher: BatcherConfig = BatcherConfig()
    vote: VoteConfig = VoteConfig()
    evidence: EvidenceConfig = EvidenceConfig()
    webhooks: WebhooksConfig = WebhooksConfig()
    webrtc: WebRTCConfig = WebRTCConfig()
    logging: LoggingConfig = LoggingConfig()
    streams: tuple[StreamEntry, ...] = Field((), description="streams started with the service")

    @model_validator(mode="after")
    def _check(self) -> ServiceConfig:
        if not _is_loopback(self.server.host) and self.server.token is None:
            raise ValueError(
                f"server.host {self.server.host!r} is not a loopback address: set "
                "server.token (or FAKEWATCH_SERVER__TOKEN) so the control API is guarded"
            )
        vote = self.vote
        if (
            vote.enter_threshold is not None
            and vote.exit_threshold is not None
            and vote.exit_threshold > vote.enter_threshold
        ):
            raise ValueError("vote.exit_threshold must not exceed vote.enter_threshold")
        if vote.min_frames > vote.window_frames:
            raise ValueError("vote.min_frames must not exceed vote.window_frames")
        if self.sources.reconnect_initial_s > self.sources.reconnect_max_s:
            raise ValueError("sources.reconnect_initial_s must not exceed reconnect_max_s")
        names = [s.name for s in self.streams]
        if len(set(names)) != len(names):
            raise ValueError("stream names must be unique")
        for entry in self.streams:
            enter = entry.enter_threshold or vote.enter_threshold
            exit = entry.exit_threshold or vote.exit_threshold
            if enter is not None and exit is not None and exit > enter:
                raise ValueError(
                    f"stream {entry.name!r}: its exit_threshold {exit} must not exceed its "
                    f"enter_threshold {enter}"
                )
        hooks = self.webhooks
        if hooks.initial_backoff_s > hooks.max_backoff_s:
            raise ValueError("webhooks.initial_backoff_s must not exceed max_backoff_s")
        names = [e.name for e in hooks.endpoints]
        if len(set(names)) != len(names):
            raise ValueError("webhook endpoint names must be unique")
        return self


def _is_loopback(host: str) -> bool:
    return host in {"127.0.0.1", "::1", "localhost"} or host.startswith("127.")


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ServiceConfig:
    """The configuration from ``path`` (YAML), then ``FAKEWATCH_*`` variables, then
    ``overrides`` (dotted keys, e.g. ``{"engine.bundle": path}``)."""
    return read_config(ServiceConfig, path, environ, overrides)


def read_config(
    model: type[ConfigT],
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ConfigT:
    """:func:`load_config` for ``model``, a :class:`ServiceConfig` with more sections (the
    cluster's)."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as error:
            raise ConfigError(f"cannot read the config file {path}: {error}") from error
        except yaml.YAMLError as error:
            raise ConfigError(f"{path} is not valid YAML: {error}") from error
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping of sections, not {type(loaded)}")
        data = loaded or {}
    for name, raw in sorted((environ if environ is not None else os.environ).items()):
        if name.startswith(ENV_PREFIX) and "__" in name:
            keys = name[len(ENV_PREFIX) :].lower().split("__")
            _set(data, keys, yaml.safe_load(raw) if raw else None, name)
    for dotted, value in (overrides or {}).items():
        _set(data, dotted.split("."), value, dotted)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error, path)) from None


def _set(data: dict[str, Any], keys: list[str], value: Any, origin: str) -> None:
    node = data
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{origin}: {key} is not a section")
        node = child
    node[keys[-1]] = value


def _describe(error: ValidationError, path: Path | None) -> str:
    where = f" in {path}" if path else ""
    lines = [f"invalid configuration{where}:"]
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {key}: {item['msg']}")
    return "\n".join(lines)


def describe_config(config: ServiceConfig | None = None) -> str:
    """``config`` (the defaults) as commented YAML: every key, its value, bounds and meaning.

    Secrets are shown as ``***``: ``server.token``, credentials in every URL (streams,
    webhooks, ``*_url`` keys such as the cluster's Redis), and webhook secrets, which
    are never shown anyway."""
    config = config or ServiceConfig()
    lines = ["# fakewatch serve --config FILE; override any key with FAKEWATCH_SECTION__KEY"]
    for section_name, section_field in type(config).model_fields.items():
        value = getattr(config, section_name)
        if not isinstance(value, BaseModel):
            lines.append(f"{section_name}: {_yaml(value)}  # {section_field.description or ''}")
            continue
        lines.append(f"{section_name}:")
        lines += _describe_section(value, "  ")
    return "\n".join(lines) + "\n"


def _describe_section(value: BaseModel, indent: str) -> list[str]:
    """The lines of :func:`describe_config` for one section (or a section within one)."""
    lines = []
    for name, field in type(value).model_fields.items():
        key = field.alias or name
        bounds = [
            f"{op} {getattr(m, attr)}"
            for m in field.metadata
            for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
            if getattr(m, attr, None) is not None
        ]
        note = "; ".join(filter(None, [field.description, ", ".join(bounds)]))
        comment = f"  # {note}" if note else ""
        shown = getattr(value, name)
        if isinstance(shown, BaseModel):
            lines.append(f"{indent}{key}:{comment}")
            lines += _describe_section(shown, indent + "  ")
            continue
        if (name == "token" and shown is not None) or isinstance(shown, SecretStr):
            shown = MASK
        if name.endswith("_url") and isinstance(shown, str):
            shown = redact_url(shown)
        lines.append(f"{indent}{key}: {_yaml(shown)}{comment}")
    return lines


def _redacted(entry: dict[str, Any]) -> dict[str, Any]:
    """A stream or webhook entry with the credentials in its URL masked."""
    if isinstance(entry.get("url"), str):
        return {**entry, "url": redact_url(entry["url"])}
    return entry


def _yaml(value: Any) -> str:
    if isinstance(value, Path):
        value = str(value)
    if isinstance(value, tuple):
        value = [
            _redacted(v.model_dump(mode="json", exclude_none=isinstance(v, StreamEntry)))
            if isinstance(v, BaseModel)
            else v
            for v in value
        ]
    return yaml.safe_dump(value, default_flow_style=True, width=1000).strip().removesuffix("\n...")
