"""The API's streams when they run in this process: a :class:`Pipeline`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from fakewatch.stream.analysis.pipeline import Pipeline
from fakewatch.stream.config import LimitsConfig
from fakewatch.stream.http.views import stream_view
from fakewatch.stream.sources.frames import DropReason, LatestFrame
from fakewatch.stream.sources.source import Source, StatusListener
from fakewatch.stream.sources.webrtc import WebRTCSource, rtc_ice_servers


class LocalStreams:
    """:class:`~fakewatch.stream.http.control.StreamControl` over a pipeline in this
    process; WebRTC publishers are taken."""

    webrtc = True
    settable = True

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    @property
    def registry(self) -> CollectorRegistry:
        return self.pipeline.metrics.registry

    async def streams(self) -> list[dict[str, Any]]:
        return [stream_view(s) for s in self.pipeline.streams.values()]

    async def stream(self, key: str) -> dict[str, Any] | None:
        state = self.pipeline.find(key)
        return None if state is None else stream_view(state)

    async def add(
        self, url: str, name: str | None, settings: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        state = await self.pipeline.add_url(url, name, given=settings)
        return {"id": state.id, "name": state.name, "source": state.description}

    async def change(self, key: str, changes: dict[str, Any]) -> dict[str, Any] | None:
        state = self.pipeline.find(key)
        if state is None:
            return None
        await self.pipeline.change_settings(state, changes)
        return stream_view(state)

    async def remove(self, key: str) -> bool:
        state = self.pipeline.find(key)
        return state is not None and await self.pipeline.remove(state.id)

    async def publish(self, sdp: str, name: str | None) -> tuple[str, str]:
        limits: LimitsConfig = self.pipeline.config.limits
        ice_servers = rtc_ice_servers(self.pipeline.config.webrtc.ice_servers)

        def make(
            frames: LatestFrame, on_status: StatusListener, on_drop: Callable[[DropReason], None]
        ) -> Source:
            return WebRTCSource(
                frames=frames,
                on_status=on_status,
                on_drop=on_drop,
                description="webrtc",
                max_width=limits.max_width,
                max_height=limits.max_height,
                ice_servers=ice_servers,
            )

        state = await self.pipeline.add_source(make, name)
        source = state.source
        assert isinstance(source, WebRTCSource)
        try:
            answer = await source.accept(sdp)
        except BaseException:  # a refused offer (or a cancelled request) leaves no stream
            await self.pipeline.remove(state.id)
            raise
        return state.id, answer

    async def end_session(self, stream_id: str) -> bool:
        state = self.pipeline.streams.get(stream_id)
        if state is None or not isinstance(state.source, WebRTCSource):
            return False
        return await self.pipeline.remove(state.id)

    def not_ready(self) -> str:
        if self.pipeline.ready:
            return ""
        return self.pipeline.not_ready_reason or "not ready"

    def ready_detail(self) -> dict[str, Any]:
        return {"streams": len(self.pipeline.streams)}
