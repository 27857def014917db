"""The HTTP API (aiohttp): streams, WebRTC ingest, health and metrics.

``/api/*`` are control endpoints: when ``server.token`` is set each needs
``Authorization: Bearer <token>`` (compared in constant time). Health, readiness and
metrics stay open for probes and scrapers. Every error is JSON:
``{"error": "<what went wrong and what to do>"}``.

WebRTC ingest follows WHIP (RFC 9725): ``POST /api/whip`` with an ``application/sdp``
offer is answered ``201 Created`` with the SDP answer and a ``Location`` to ``DELETE``
when publishing ends. ``POST /api/webrtc/offer`` takes the same offer as JSON.

``/`` (the streams page) and ``/publish`` (a camera publisher) are static pages from
``web/`` with their scripts under ``/static/``. They hold no data and need no token; the
``/api/`` calls they make send the token the user types in.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fakewatch.stream.config import ServiceConfig
from fakewatch.stream.events import RecentEvents
from fakewatch.stream.evidence import FILES, EvidenceStore
from fakewatch.stream.ffmpeg_source import SourceURLError
from fakewatch.stream.frames import DropReason, LatestFrame, Source, StatusListener
from fakewatch.stream.logs import LOGGER_NAME, describe_error, log
from fakewatch.stream.pipeline import Pipeline, StreamLimitError, StreamNameError
from fakewatch.stream.webrtc import WebRTCOfferError, WebRTCSource

if TYPE_CHECKING:
    from fakewatch.stream.service import Service

logger = logging.getLogger(f"{LOGGER_NAME}.api")

PIPELINE = web.AppKey("pipeline", Pipeline)
CONFIG = web.AppKey("config", ServiceConfig)
EVIDENCE = web.AppKey("evidence", EvidenceStore)
RECENT = web.AppKey("recent", RecentEvents)
BASE_URL = web.AppKey("base_url", dict)  # {"url": ...}, set once the server is bound

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_JSON_BYTES = 65536
"""The largest JSON body a control endpoint reads."""

WEB = Path(__file__).resolve().parent / "web"
"""The pages' files: HTML at ``/`` and ``/publish``, the rest under ``/static/``."""
STATIC_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
PAGE_HEADERS = {
    # scripts, styles and fetches from this origin only; images also from blob: URLs
    # (evidence is fetched with the token and shown as blobs)
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


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


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise web.HTTPUnsupportedMediaType(text="send JSON (Content-Type: application/json)")
    if request.content_length is not None and request.content_length > MAX_JSON_BYTES:
        raise web.HTTPRequestEntityTooLarge(
            max_size=MAX_JSON_BYTES, actual_size=request.content_length
        )
    data = await request.read()  # a chunked body has no Content-Length: check what came
    if len(data) > MAX_JSON_BYTES:
        raise web.HTTPRequestEntityTooLarge(max_size=MAX_JSON_BYTES, actual_size=len(data))
    try:
        body = json.loads(data.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise web.HTTPBadRequest(text=f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise web.HTTPBadRequest(text="the body is not valid JSON: nested too deeply") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    return body


def _pipeline(request: web.Request) -> Pipeline:
    return request.app[PIPELINE]


async def list_streams(request: web.Request) -> web.Response:
    streams = [s.snapshot() for s in _pipeline(request).streams.values()]
    return web.json_response({"streams": streams})


async def new_stream_request(request: web.Request) -> tuple[str, str | None]:
    """The ``url`` and ``name`` of a request to add a stream (400 when malformed)."""
    body = await _json_body(request)
    url, name = body.get("url"), body.get("name")
    unknown = set(body) - {"url", "name"}
    if unknown:
        raise web.HTTPBadRequest(text=f"unknown fields: {', '.join(sorted(unknown))}")
    if not isinstance(url, str) or not url:
        raise web.HTTPBadRequest(text='"url" is required and must be a string')
    if name is not None and not isinstance(name, str):
        raise web.HTTPBadRequest(text='"name" must be a string')
    return url, name


async def add_stream(request: web.Request) -> web.Response:
    url, name = await new_stream_request(request)
    try:
        state = await _pipeline(request).add_url(url, name)
    except StreamLimitError as exc:
        return error(429, str(exc))
    except StreamNameError as exc:
        return error(409 if "exists" in str(exc) else 400, str(exc))
    except SourceURLError as exc:
        return error(400, str(exc))
    return web.json_response(
        {"id": state.id, "name": state.name, "source": state.description},
        status=201,
        headers={"Location": f"/api/streams/{state.id}"},
    )


async def get_stream(request: web.Request) -> web.Response:
    state = _pipeline(request).find(request.match_info["id"])
    if state is None:
        return error(404, f"no stream {request.match_info['id']!r}")
    return web.json_response(state.snapshot())


async def delete_stream(request: web.Request) -> web.Response:
    pipeline = _pipeline(request)
    state = pipeline.find(request.match_info["id"])
    if state is None:
        return error(404, f"no stream {request.match_info['id']!r}")
    await pipeline.remove(state.id)
    return web.Response(status=204)


async def _accept_offer(request: web.Request, sdp: str, name: str | None) -> tuple[str, str]:
    """Start a WebRTC stream from an SDP offer; its id and the SDP answer."""
    config = request.app[CONFIG]
    limits = config.limits
    if len(sdp.encode()) > limits.max_offer_bytes:
        raise web.HTTPRequestEntityTooLarge(
            max_size=limits.max_offer_bytes, actual_size=len(sdp.encode())
        )

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
        )

    pipeline = _pipeline(request)
    try:
        state = await pipeline.add_source(make, name, kind="webrtc")
    except StreamLimitError as exc:
        raise web.HTTPTooManyRequests(text=str(exc)) from None
    except StreamNameError as exc:
        raise web.HTTPConflict(text=str(exc)) from None
    source = state.source
    assert isinstance(source, WebRTCSource)
    try:
        answer = await source.accept(sdp)
    except WebRTCOfferError as exc:
        await pipeline.remove(state.id)
        raise web.HTTPBadRequest(text=str(exc)) from None
    except BaseException:
        await pipeline.remove(state.id)
        raise
    return state.id, answer


async def whip_publish(request: web.Request) -> web.Response:
    if request.content_type != "application/sdp":
        raise web.HTTPUnsupportedMediaType(text="a WHIP offer is Content-Type: application/sdp")
    try:
        sdp = (await request.read()).decode("utf-8")
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(text="the body is not an SDP offer: not UTF-8 text") from None
    stream_id, answer = await _accept_offer(request, sdp, request.query.get("name"))
    base = request.app[BASE_URL].get("url", "")
    return web.Response(
        status=201,
        text=answer,
        content_type="application/sdp",
        headers={"Location": f"{base}/api/whip/{stream_id}"},
    )


async def whip_end(request: web.Request) -> web.Response:
    pipeline = _pipeline(request)
    state = pipeline.streams.get(request.match_info["id"])
    if state is None or state.kind != "webrtc":
        return error(404, f"no WHIP session {request.match_info['id']!r}")
    await pipeline.remove(state.id)
    return web.Response(status=200)


async def webrtc_offer(request: web.Request) -> web.Response:
    body = await _json_body(request)
    sdp, kind, name = body.get("sdp"), body.get("type", "offer"), body.get("name")
    if not isinstance(sdp, str) or kind != "offer":
        raise web.HTTPBadRequest(text='send {"sdp": "<offer>", "type": "offer"}')
    if name is not None and not isinstance(name, str):
        raise web.HTTPBadRequest(text='"name" must be a string')
    stream_id, answer = await _accept_offer(request, sdp, name)
    base = request.app[BASE_URL].get("url", "")
    return web.json_response(
        {"id": stream_id, "type": "answer", "sdp": answer},
        status=201,
        headers={"Location": f"{base}/api/whip/{stream_id}"},
    )


def evidence_links(base_url: str, event_id: str) -> dict[str, str]:
    """Where an alert's evidence files are served."""
    return {name.split(".")[0]: f"{base_url}/api/evidence/{event_id}/{name}" for name in FILES}


def _with_links(request: web.Request, event: dict[str, Any]) -> dict[str, Any]:
    if request.app[EVIDENCE].has(event["id"]):
        base = request.app[BASE_URL].get("url", "")
        event = {**event, "evidence_urls": evidence_links(base, event["id"])}
    return event


async def list_events(request: web.Request) -> web.Response:
    try:
        limit = int(request.query.get("limit", "50"))
    except ValueError:
        raise web.HTTPBadRequest(text="limit must be an integer") from None
    if not 1 <= limit <= 1000:
        raise web.HTTPBadRequest(text="limit must be between 1 and 1000")
    events = request.app[RECENT].latest(limit, request.query.get("stream"))
    return web.json_response({"events": [_with_links(request, e) for e in events]})


async def get_evidence(request: web.Request) -> web.StreamResponse:
    event_id, name = request.match_info["id"], request.match_info["name"]
    path = request.app[EVIDENCE].path(event_id, name)
    if path is None:
        return error(404, f"no evidence {name!r} for event {event_id!r}")
    return web.FileResponse(
        path, headers={"Content-Type": FILES[name], "Cache-Control": "private, max-age=86400"}
    )


def _web_file(name: str, content_type: str) -> web.FileResponse:
    return web.FileResponse(WEB / name, headers={**PAGE_HEADERS, "Content-Type": content_type})


async def index_page(request: web.Request) -> web.StreamResponse:
    return _web_file("index.html", "text/html; charset=utf-8")


async def publish_page(request: web.Request) -> web.StreamResponse:
    return _web_file("publish.html", "text/html; charset=utf-8")


async def static_file(request: web.Request) -> web.StreamResponse:
    """One file of ``web/`` by name: no folders, no listing, known types only."""
    name = request.match_info["name"]
    content_type = STATIC_TYPES.get(Path(name).suffix)
    plain = name == Path(name).name and "\\" not in name and not name.startswith(".")
    if content_type is None or not plain or not (WEB / name).is_file():
        return error(404, f"no static file {name!r}")
    return _web_file(name, content_type)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    pipeline = _pipeline(request)
    if not pipeline.ready:
        return error(503, pipeline.not_ready_reason or "not ready")
    return web.json_response({"status": "ready", "streams": len(pipeline.streams)})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(_pipeline(request).metrics.registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def build_app(service: Service) -> web.Application:
    """The aiohttp application around a service's pipeline and stores."""
    app = web.Application(middlewares=[guard], client_max_size=1024 * 1024)
    app[PIPELINE] = service.pipeline
    app[CONFIG] = service.config
    app[EVIDENCE] = service.evidence
    app[RECENT] = service.recent
    app[BASE_URL] = {}
    app.router.add_get("/api/streams", list_streams)
    app.router.add_post("/api/streams", add_stream)
    app.router.add_get("/api/streams/{id}", get_stream)
    app.router.add_delete("/api/streams/{id}", delete_stream)
    app.router.add_post("/api/whip", whip_publish)
    app.router.add_delete("/api/whip/{id}", whip_end)
    app.router.add_post("/api/webrtc/offer", webrtc_offer)
    app.router.add_get("/api/events", list_events)
    app.router.add_get("/api/evidence/{id}/{name}", get_evidence)
    app.router.add_get("/", index_page)
    app.router.add_get("/publish", publish_page)
    app.router.add_get("/static/{name}", static_file)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app
