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

from typing import Any

from aiohttp import web

from fakewatch.stream.analysis.registry import (
    StreamLimitError,
    StreamNameError,
    StreamNameTakenError,
)
from fakewatch.stream.analysis.tuning import StreamSettingsError
from fakewatch.stream.config import StreamSettings
from fakewatch.stream.http.keys import CONFIG, CONTROL, base_url, error
from fakewatch.stream.http.schemas import (
    NewStream,
    StreamAdded,
    StreamList,
    StreamView,
    WebRTCAnswer,
    WebRTCOffer,
    answer,
    read_json,
)
from fakewatch.stream.sources.ffmpeg import SourceURLError
from fakewatch.stream.sources.webrtc import WebRTCOfferError

NO_SETTINGS = (
    "a cluster's streams run with the service's settings: per-stream settings are served "
    "by `fakewatch serve` only (set analysis and vote keys in the cluster's config)"
)
NO_WEBRTC = (
    "WebRTC ingest is served by `fakewatch serve` only; a cluster reads stream URLs "
    "(publish to an RTSP server and add its URL)"
)


async def new_stream_request(
    request: web.Request,
) -> tuple[str, str | None, dict[str, Any]]:
    """The ``url``, ``name`` and own settings of a request to add a stream (400 when
    malformed, naming the key)."""
    body = await read_json(request, NewStream)
    settings = {key: getattr(body, key) for key in body.model_fields_set - {"url", "name"}}
    return body.url, body.name, settings


async def list_streams(request: web.Request) -> web.Response:
    return answer(StreamList, {"streams": await request.app[CONTROL].streams()})


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
    return answer(StreamAdded, added, 201, {"Location": f"/api/streams/{added['id']}"})


async def get_stream(request: web.Request) -> web.Response:
    found = await request.app[CONTROL].stream(request.match_info["id"])
    if found is None:
        return error(404, f"no stream {request.match_info['id']!r}")
    return answer(StreamView, found)


async def change_stream(request: web.Request) -> web.Response:
    control = request.app[CONTROL]
    if not control.settable:
        return error(501, NO_SETTINGS)
    changes = (await read_json(request, StreamSettings)).given()
    try:
        changed = await control.change(request.match_info["id"], changes)
    except StreamSettingsError as exc:
        return error(400, str(exc))
    if changed is None:
        return error(404, f"no stream {request.match_info['id']!r}")
    return answer(StreamView, changed)


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
    stream_id, sdp_answer = await _accept_offer(request, sdp, request.query.get("name"))
    return web.Response(
        status=201,
        text=sdp_answer,
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
    offer = await read_json(request, WebRTCOffer)
    stream_id, sdp = await _accept_offer(request, offer.sdp, offer.name)
    return answer(
        WebRTCAnswer,
        {"id": stream_id, "type": "answer", "sdp": sdp},
        201,
        headers={"Location": f"{base_url(request)}/api/whip/{stream_id}"},
    )
