"""The stream routes: add, list, find, change and remove streams; WebRTC ingest.

A stream's own settings (:class:`~fakewatch.stream.config.StreamSettings`) come as extra
keys of ``POST /api/streams`` and as the body of ``PATCH /api/streams/{id}`` (only the
keys to change; ``null`` goes back to the config's value). A bad or unknown key is
answered 400 naming it, and nothing changes. A host whose streams take no settings of
their own (a cluster) answers both with 501.

WebRTC ingest follows WHIP (RFC 9725): ``POST /api/whip`` with an ``application/sdp``
offer is answered ``201 Created`` with the SDP answer and a ``Location`` to ``DELETE``
when publishing ends. ``POST /api/webrtc/offer`` takes the same offer as JSON. A host
that takes no WebRTC publishers answers both with 501.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from fakewatch.stream.analysis.registry import (
    StreamLimitError,
    StreamNameError,
    StreamNameTakenError,
)
from fakewatch.stream.analysis.tuning import StreamSettingsError, check_settings
from fakewatch.stream.http.keys import CONFIG, CONTROL, base_url, error
from fakewatch.stream.sources.ffmpeg import SourceURLError
from fakewatch.stream.sources.webrtc import WebRTCOfferError

MAX_JSON_BYTES = 65536
"""The largest JSON body a control endpoint reads."""
NO_SETTINGS = (
    "a cluster's streams run with the service's settings: per-stream settings are served "
    "by `fakewatch serve` only (set analysis and vote keys in the cluster's config)"
)
NO_WEBRTC = (
    "WebRTC ingest is served by `fakewatch serve` only; a cluster reads stream URLs "
    "(publish to an RTSP server and add its URL)"
)


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body (415, 413 or 400 when it is not one)."""
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


async def new_stream_request(
    request: web.Request,
) -> tuple[str, str | None, dict[str, Any]]:
    """The ``url``, ``name`` and own settings of a request to add a stream (400 when
    malformed, naming the key)."""
    body = await json_body(request)
    url, name = body.pop("url", None), body.pop("name", None)
    if not isinstance(url, str) or not url:
        raise web.HTTPBadRequest(text='"url" is required and must be a string')
    if name is not None and not isinstance(name, str):
        raise web.HTTPBadRequest(text='"name" must be a string')
    return url, name, settings_request(body)


def settings_request(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` checked as :class:`~fakewatch.stream.config.StreamSettings` (400 naming
    every bad or unknown key)."""
    try:
        return check_settings(body)
    except StreamSettingsError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


async def list_streams(request: web.Request) -> web.Response:
    return web.json_response({"streams": await request.app[CONTROL].streams()})


async def add_stream(request: web.Request) -> web.Response:
    url, name, settings = await new_stream_request(request)
    control = request.app[CONTROL]
    if settings and not control.settable:
        return error(501, NO_SETTINGS)
    try:
        added = await control.add(url, name, settings)
    except StreamLimitError as exc:
        return error(429, str(exc))
    except StreamNameError as exc:
        return error(409 if isinstance(exc, StreamNameTakenError) else 400, str(exc))
    except (SourceURLError, StreamSettingsError) as exc:
        return error(400, str(exc))
    return web.json_response(added, status=201, headers={"Location": f"/api/streams/{added['id']}"})


async def get_stream(request: web.Request) -> web.Response:
    found = await request.app[CONTROL].stream(request.match_info["id"])
    if found is None:
        return error(404, f"no stream {request.match_info['id']!r}")
    return web.json_response(found)


async def change_stream(request: web.Request) -> web.Response:
    control = request.app[CONTROL]
    if not control.settable:
        return error(501, NO_SETTINGS)
    changes = settings_request(await json_body(request))
    try:
        changed = await control.change(request.match_info["id"], changes)
    except StreamSettingsError as exc:
        return error(400, str(exc))
    if changed is None:
        return error(404, f"no stream {request.match_info['id']!r}")
    return web.json_response(changed)


async def delete_stream(request: web.Request) -> web.Response:
    if not await request.app[CONTROL].remove(request.match_info["id"]):
        return error(404, f"no stream {request.match_info['id']!r}")
    return web.Response(status=204)


async def _accept_offer(request: web.Request, sdp: str, name: str | None) -> tuple[str, str]:
    """Start a WebRTC stream from an SDP offer; its id and the SDP answer."""
    limit = request.app[CONFIG].limits.max_offer_bytes
    if len(sdp.encode()) > limit:
        raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=len(sdp.encode()))
    try:
        return await request.app[CONTROL].publish(sdp, name)
    except StreamLimitError as exc:
        raise web.HTTPTooManyRequests(text=str(exc)) from None
    except StreamNameError as exc:
        raise web.HTTPConflict(text=str(exc)) from None
    except WebRTCOfferError as exc:
        raise web.HTTPBadRequest(text=str(exc)) from None


async def whip_publish(request: web.Request) -> web.Response:
    if not request.app[CONTROL].webrtc:
        return error(501, NO_WEBRTC)
    if request.content_type != "application/sdp":
        raise web.HTTPUnsupportedMediaType(text="a WHIP offer is Content-Type: application/sdp")
    try:
        sdp = (await request.read()).decode("utf-8")
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(text="the body is not an SDP offer: not UTF-8 text") from None
    stream_id, answer = await _accept_offer(request, sdp, request.query.get("name"))
    return web.Response(
        status=201,
        text=answer,
        content_type="application/sdp",
        headers={"Location": f"{base_url(request)}/api/whip/{stream_id}"},
    )


async def whip_end(request: web.Request) -> web.Response:
    if not await request.app[CONTROL].end_session(request.match_info["id"]):
        return error(404, f"no WHIP session {request.match_info['id']!r}")
    return web.Response(status=200)


async def webrtc_offer(request: web.Request) -> web.Response:
    if not request.app[CONTROL].webrtc:
        return error(501, NO_WEBRTC)
    body = await json_body(request)
    sdp, kind, name = body.get("sdp"), body.get("type", "offer"), body.get("name")
    if not isinstance(sdp, str) or kind != "offer":
        raise web.HTTPBadRequest(text='send {"sdp": "<offer>", "type": "offer"}')
    if name is not None and not isinstance(name, str):
        raise web.HTTPBadRequest(text='"name" must be a string')
    stream_id, answer = await _accept_offer(request, sdp, name)
    return web.json_response(
        {"id": stream_id, "type": "answer", "sdp": answer},
        status=201,
        headers={"Location": f"{base_url(request)}/api/whip/{stream_id}"},
    )
