"""Every route of the API in one table: what :func:`~fakewatch.stream.http.app.build_app`
registers and what ``/api/openapi.json`` documents, so no route goes undocumented.

A route is one line: method, path, handler, a summary, and its bodies. ``body`` is the
JSON request (a model) or a media type; ``answer`` the success answer (a model, a
media type, or ``None`` for no body); ``query`` a model of the query parameters. Routes
under ``/api/`` need the bearer token when ``server.token`` is set. Errors answer
:class:`~fakewatch.stream.http.schemas.ErrorBody` with any status.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from pydantic import BaseModel

from fakewatch.stream.config import StreamSettings
from fakewatch.stream.http import events, openapi, pages, probes, streams
from fakewatch.stream.http import schemas as s

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Content = type[BaseModel] | str | None
"""A body: a pydantic model (JSON), a media type, or nothing."""


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    answer: Content = None
    status: int = 200
    body: Content = None
    query: type[BaseModel] | None = None
    webrtc: bool = False
    """Served only by hosts that take WebRTC publishers."""

    @property
    def auth(self) -> bool:
        """Whether ``server.token`` guards it."""
        return self.path.startswith("/api/")


HTML, TEXT, SDP = "text/html", "text/plain", "application/sdp"

ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/streams", streams.list_streams, "The streams", s.StreamList),
    Route(
        "POST",
        "/api/streams",
        streams.add_stream,
        "Watch a stream URL",
        s.StreamAdded,
        201,
        s.NewStream,
    ),
    Route("GET", "/api/streams/{id}", streams.get_stream, "A stream by id or name", s.StreamView),
    Route(
        "PATCH",
        "/api/streams/{id}",
        streams.change_stream,
        "Change a stream's own settings (null: back to the config's)",
        s.StreamView,
        body=StreamSettings,
    ),
    Route(
        "DELETE", "/api/streams/{id}", streams.delete_stream, "Stop watching a stream", None, 204
    ),
    Route(
        "POST", "/api/whip", streams.whip_publish, "Publish WebRTC (WHIP, RFC 9725)", SDP, 201, SDP
    ),
    Route(
        "POST",
        "/api/webrtc/offer",
        streams.webrtc_offer,
        "Publish WebRTC (JSON offer)",
        s.WebRTCAnswer,
        201,
        s.WebRTCOffer,
    ),
    Route("DELETE", "/api/whip/{id}", streams.whip_end, "End a WHIP session", None, webrtc=True),
    Route(
        "GET",
        "/api/events",
        events.list_events,
        "Recent events, newest first",
        s.EventList,
        query=s.EventsQuery,
    ),
    Route(
        "POST",
        "/api/events/{id}/review",
        events.review_event,
        "Review an alert",
        s.Event,
        body=s.ReviewRequest,
    ),
    Route(
        "GET",
        "/api/evidence/{id}/{name}",
        events.get_evidence,
        "An alert's evidence file (with the token, or on a signed link)",
        "*/*",
        query=s.SignedLink,
    ),
    Route("GET", "/api/openapi.json", openapi.openapi_json, "This document", "application/json"),
    Route("GET", "/", pages.index_page, "The streams page", HTML),
    Route(
        "GET",
        "/publish",
        pages.publish_page,
        "The camera and screen-share publisher page",
        HTML,
        webrtc=True,
    ),
    Route(
        "GET",
        "/api/webrtc/ice-servers",
        pages.publisher_ice_servers,
        "The STUN servers the publisher page uses (never a TURN server)",
        s.IceServers,
        webrtc=True,
    ),
    Route("GET", "/static/{name}", pages.static_file, "The pages' scripts and styles", "*/*"),
    Route("GET", "/healthz", probes.healthz, "Liveness", s.Health),
    Route("GET", "/readyz", probes.readyz, "Readiness (503 until ready)", s.Ready),
    Route("GET", "/metrics", probes.metrics, "Prometheus metrics", TEXT),
)


def served(webrtc: bool) -> list[Route]:
    """The routes a host serves: the WebRTC ones only when it takes publishers."""
    return [route for route in ROUTES if webrtc or not route.webrtc]
