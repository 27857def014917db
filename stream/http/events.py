"""The event routes: recent events with their evidence links, and evidence files.

An event's ``evidence_urls`` are plain API paths (they need the token, as the page
sends it); its ``clip`` is listed once the clip is written. Evidence files are served
with HTTP range requests (a video element seeks with them).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from fakewatch.stream.http.keys import EVIDENCE, RECENT, base_url, error
from fakewatch.stream.sinks.evidence import CLIP, FILES


def _with_links(request: web.Request, event: dict[str, Any]) -> dict[str, Any]:
    store = request.app[EVIDENCE]
    if store.has(event["id"]):
        links = store.links(base_url(request), event["id"])
        if store.path(event["id"], CLIP) is None:
            links.pop("clip", None)
        event = {**event, "evidence_urls": links}
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
