"""The HTTP API (aiohttp): one route table for every host.

``/api/*`` are control endpoints: when ``server.token`` is set each needs
``Authorization: Bearer <token>`` (compared in constant time). Health, readiness and
metrics stay open for probes and scrapers. Every error is JSON:
``{"error": "<what went wrong and what to do>"}``. The stream routes act through a
:class:`~fakewatch.stream.http.control.StreamControl`, so ``fakewatch serve`` and the
cluster's front answer the same API; a host adds its own routes with ``extra``.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from fakewatch.stream.config import ServiceConfig
from fakewatch.stream.http import events, pages, probes, streams
from fakewatch.stream.http.control import StreamControl
from fakewatch.stream.http.keys import BASE_URL, CONFIG, CONTROL, EVIDENCE, RECENT, error
from fakewatch.stream.logs import LOGGER_NAME, describe_error, log
from fakewatch.stream.sinks.evidence import EvidenceStore
from fakewatch.stream.sinks.recent import RecentEvents

logger = logging.getLogger(f"{LOGGER_NAME}.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_BODY_BYTES = 1024 * 1024
"""The largest request body read at all (SDP offers, JSON)."""


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer token on control endpoints; every error answered as JSON."""
    token = request.app[CONFIG].server.token
    if token and request.path.startswith("/api/"):
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {token}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return error(
                401,
                "missing or wrong bearer token (Authorization: Bearer <server.token>)",
                {"WWW-Authenticate": 'Bearer realm="fakewatch"'},
            )
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error(exc.status, exc.text or exc.reason)
    except Exception as exc:  # never leak a traceback to a client
        log(
            logger,
            logging.ERROR,
            "api.error",
            path=request.path,
            error=describe_error(exc),
        )
        return error(500, "internal error; see the service log")


def build_app(
    config: ServiceConfig,
    control: StreamControl,
    evidence: EvidenceStore,
    recent: RecentEvents,
    extra: Sequence[web.AbstractRouteDef] = (),
) -> web.Application:
    """The API over ``control``'s streams and the stores of the events; the WebRTC
    routes and the publisher page only when ``control`` takes WebRTC publishers."""
    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY_BYTES)
    app[CONTROL] = control
    app[CONFIG] = config
    app[EVIDENCE] = evidence
    app[RECENT] = recent
    app[BASE_URL] = {}
    app.router.add_get("/api/streams", streams.list_streams)
    app.router.add_post("/api/streams", streams.add_stream)
    app.router.add_get("/api/streams/{id}", streams.get_stream)
    app.router.add_patch("/api/streams/{id}", streams.change_stream)
    app.router.add_delete("/api/streams/{id}", streams.delete_stream)
    app.router.add_post("/api/whip", streams.whip_publish)
    app.router.add_post("/api/webrtc/offer", streams.webrtc_offer)
    if control.webrtc:
        app.router.add_delete("/api/whip/{id}", streams.whip_end)
        app.router.add_get("/publish", pages.publish_page)
    app.router.add_get("/api/events", events.list_events)
    app.router.add_get("/api/evidence/{id}/{name}", events.get_evidence)
    app.router.add_get("/", pages.index_page)
    app.router.add_get("/static/{name}", pages.static_file)
    app.router.add_get("/healthz", probes.healthz)
    app.router.add_get("/readyz", probes.readyz)
    app.router.add_get("/metrics", probes.metrics)
    app.add_routes(extra)
    return app
