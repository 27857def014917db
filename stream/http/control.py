"""What the HTTP API does with streams, whoever runs them.

The API's stream routes are written once against :class:`StreamControl`: ``fakewatch
serve`` gives them a pipeline in this process
(:class:`~fakewatch.stream.http.local.LocalStreams`), the cluster's front gives them the
streams its shards run.
"""

from __future__ import annotations

from typing import Any, Protocol

from prometheus_client import CollectorRegistry


class StreamControl(Protocol):
    """Adding, listing, finding and removing streams, WebRTC ingest, readiness, metrics.

    ``add`` raises :class:`~fakewatch.stream.analysis.registry.StreamLimitError`,
    :class:`~fakewatch.stream.analysis.registry.StreamNameError` (its subclass
    ``StreamNameTakenError`` for a name in use),
    :class:`~fakewatch.stream.sources.ffmpeg.SourceURLError` or
    :class:`~fakewatch.stream.analysis.tuning.StreamSettingsError`; ``publish`` the
    first two or :class:`~fakewatch.stream.sources.webrtc.WebRTCOfferError`; ``change``
    the last.
    """

    @property
    def webrtc(self) -> bool:
        """Whether WebRTC publishers are taken (``/api/whip``, ``/publish``)."""
        ...

    @property
    def settable(self) -> bool:
        """Whether streams take their own settings (``PATCH /api/streams/{id}``, settings
        in ``POST /api/streams``); a host that answers 501 to them says False."""
        ...

    @property
    def registry(self) -> CollectorRegistry:
        """The metrics ``/metrics`` exports."""
        ...

    async def streams(self) -> list[dict[str, Any]]:
        """Every stream as the API shows it."""
        ...

    async def stream(self, key: str) -> dict[str, Any] | None:
        """A stream by id or name as the API shows it; ``None`` if there is none."""
        ...

    async def add(
        self, url: str, name: str | None, settings: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Start watching ``url`` with its own ``settings`` (checked
        :class:`~fakewatch.stream.config.StreamSettings` keys); the body of the ``201``
        answer (``id``, ``name``, ``source``, ...)."""
        ...

    async def change(self, key: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        """Change a stream's own settings (checked
        :class:`~fakewatch.stream.config.StreamSettings` keys; ``None`` removes one); the
        stream as the API shows it, ``None`` if there is none."""
        ...

    async def remove(self, key: str) -> bool:
        """Stop watching a stream (by id or name); False if there is none."""
        ...

    async def publish(self, sdp: str, name: str | None) -> tuple[str, str]:
        """Start a stream from a WebRTC publisher's SDP offer: its id and the SDP answer."""
        ...

    async def end_session(self, stream_id: str) -> bool:
        """End a WebRTC publisher's stream; False if there is no such session."""
        ...

    def not_ready(self) -> str:
        """Why the service is not ready; empty when it is."""
        ...

    def ready_detail(self) -> dict[str, Any]:
        """What ``/readyz`` adds to its answer when ready."""
        ...
