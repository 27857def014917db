"""The event routes: recent events with their evidence links and reviews, a person's
review of an alert, and evidence files.

An event's ``evidence_urls`` are plain API paths (they need the token, as the page
sends it); its ``clip`` is listed once the clip is written. Evidence files are served
with HTTP range requests (a video element seeks with them).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from fakewatch.stream.http.keys import EVIDENCE, RECENT, base_url, error
from fakewatch.stream.http.schemas import (
    Event,
    EventList,
    EventsQuery,
    Review,
    ReviewRequest,
    answer,
    read_json,
    read_query,
)
from fakewatch.stream.sinks.evidence import CLIP, FILES


def _with_links(request: web.Request, event: dict[str, Any]) -> dict[str, Any]:
    store = request.app[EVIDENCE]
    if store.has(event["id"]):
        links = store.links(base_url(request), event["id"])
        if store.path(event["id"], CLIP) is None:
            links.pop("clip", None)
        event = {**event, "evidence_urls": links}
        review = store.review(event["id"])
        if review is not None:
            event["review"] = review
    return event


async def list_events(request: web.Request) -> web.Response:
    query = read_query(request, EventsQuery)
    recent = request.app[RECENT].latest(request.app[RECENT].size, query.stream)
    if query.after is not None:
        ids = [e["id"] for e in recent]
        if query.after in ids:
            recent = recent[: ids.index(query.after)]
    events = recent[: query.limit]
    return answer(EventList, {"events": [_with_links(request, e) for e in events]})


async def review_event(request: web.Request) -> web.Response:
    """Keep a person's verdict on an alert beside its evidence; answer the event."""
    event_id = request.match_info["id"]
    store = request.app[EVIDENCE]
    if not store.has(event_id):
        return error(404, f"no alert with evidence {event_id!r}")
    given = await read_json(request, ReviewRequest)
    review = Review(verdict=given.verdict, note=given.note, time=round(time.time(), 3))
    if not await asyncio.to_thread(store.save_review, event_id, review.model_dump(mode="json")):
        return error(404, f"no alert with evidence {event_id!r}")  # removed meanwhile
    event = next(
        (e for e in request.app[RECENT].latest(request.app[RECENT].size) if e["id"] == event_id),
        None,
    )
    if event is None:  # older than the recent events: as its evidence describes it
        event = await asyncio.to_thread(store.event, event_id)
    if event is None:
        return error(404, f"no alert with evidence {event_id!r}")
    return answer(Event, _with_links(request, event))


async def get_evidence(request: web.Request) -> web.StreamResponse:
    event_id, name = request.match_info["id"], request.match_info["name"]
    path = request.app[EVIDENCE].path(event_id, name)
    if path is None:
        return error(404, f"no evidence {name!r} for event {event_id!r}")
    return web.FileResponse(
        path, headers={"Content-Type": FILES[name], "Cache-Control": "private, max-age=86400"}
    )
