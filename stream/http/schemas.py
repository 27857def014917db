"""The API's bodies as pydantic models: what a request may send and what it is answered.

The handlers read requests through these models (:func:`read_json`, :func:`read_query`)
and answer through them (:func:`answer`), and ``/api/openapi.json`` is built from the
same models (:mod:`fakewatch.stream.http.openapi`), so the document says what the code
does. The client (:mod:`fakewatch.stream.http.client`) parses answers with them too.

Answers allow only the fields named here (``extra="forbid"``): a field added to a view
without its model fails the API's tests instead of going undocumented.
"""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fakewatch.stream.config import StreamSettings

MAX_JSON_BYTES = 65536
"""The largest JSON body a control endpoint reads."""
MAX_NOTE_CHARS = 2000
"""The longest note a review may carry."""

M = TypeVar("M", bound=BaseModel)


class Body(BaseModel):
    """A request or answer body: no fields beyond the ones named."""

    model_config = ConfigDict(extra="forbid")


# --- errors and probes -------------------------------------------------------------


class ErrorBody(Body):
    """Every error: what went wrong and what to do."""

    error: str = Field(description="what went wrong and what to do")


class Health(Body):
    status: Literal["ok"]


class Ready(BaseModel):
    """Ready; the host adds what it knows (``streams``: how many it runs, ...)."""

    model_config = ConfigDict(extra="allow")
    status: Literal["ready"]


# --- streams -----------------------------------------------------------------------


class NewStream(StreamSettings):
    """``POST /api/streams``: a stream URL to watch, a name for it, and the stream's own
    settings (any of ``PATCH /api/streams/{id}``'s keys)."""

    url: str = Field(min_length=1, description="rtsp://, rtmp://, http(s):// or a file")
    name: str | None = Field(None, description="a unique name (default: made up)")


class StreamAdded(Body):
    """The ``201`` answer to ``POST /api/streams``."""

    id: str
    name: str
    source: str = Field(description="the URL, credentials redacted")
    shard: int | None = Field(None, description="cluster only: the shard that runs it")


class Baseline(Body):
    ready: bool
    median: float | None
    spread: float | None
    raised_alert: bool


class StreamVote(Body):
    track: str | None = Field(description="the face track whose window this is: the highest")
    scores: list[float]
    enter_threshold: float
    exit_threshold: float
    min_frames: int
    baseline: Baseline | None


class Votes(Body):
    stream: StreamVote
    tracks: dict[str, float | None]


class FaceAlert(Body):
    """An alert open on one face of a stream."""

    track: str = Field(description="the face track (t1, t2, ... within the stream)")
    box: list[float] = Field(description="the face's box in frame pixels: x0, y0, x1, y1")
    score: float | None
    since: float | None = Field(description="when the alert was raised (Unix seconds)")
    raised_by_baseline: bool


class EventStream(Body):
    id: str
    name: str
    source: str


class WindowSummary(Body):
    score: float
    scores: list[float]
    times: list[float]
    enter_threshold: float
    exit_threshold: float


class EvidenceSummary(Body):
    score: float
    capture_time: float
    track: str | None
    face_box: list[float]
    crop_box: list[float]
    frame_size: list[int]


Verdict = Literal["confirmed", "false_positive"]


class ReviewRequest(Body):
    """``POST /api/events/{id}/review``: a person's verdict on an alert."""

    verdict: Verdict = Field(
        description="confirmed: a deepfake indeed; false_positive: a real face"
    )
    note: str = Field("", max_length=MAX_NOTE_CHARS, description="why, for the record")


class Review(Body):
    """A person's verdict on an alert, kept beside its evidence."""

    verdict: Verdict
    note: str = Field(max_length=MAX_NOTE_CHARS)
    time: float = Field(description="when it was given (Unix seconds)")


class Event(Body):
    """One decision or health change of one stream."""

    id: str
    type: str = Field(description="deepfake.suspected, deepfake.cleared, stream.*, ...")
    time: float
    stream: EventStream
    detail: str
    track: str | None
    box: list[float] | None = Field(None, description="the deciding face's box in frame pixels")
    tracks: dict[str, float]
    window: WindowSummary | None
    evidence: EvidenceSummary | None
    evidence_urls: dict[str, str] | None = Field(
        None, description="where the alert's frame, crop, mask and (once written) clip are served"
    )
    review: Review | None = Field(None, description="a person's verdict, once given")


class StreamSettingsView(Body):
    """A stream's effective settings, and where each of its own comes from."""

    effective: dict[str, float | int | bool]
    overridden: dict[str, Literal["config", "api"]] = Field(
        description="the stream's own settings: from its streams: entry or from the API"
    )


class AnalysisPace(Body):
    """Whether the stream is analysed at its full rate or, calm, at its calm rate."""

    rate: Literal["full", "calm"]
    target_fps: float
    reason: str


class StreamView(Body):
    """A stream as the API shows it. A cluster's stream that no shard reports yet has
    only the first fields; a cluster adds its ``shard`` and ``node``."""

    id: str
    name: str
    kind: str
    source: str
    status: str
    status_detail: str
    created: float
    fps_in: float | None = None
    fps_analysed: float | None = None
    frames_received: int | None = None
    frames_analysed: int | None = None
    faces_analysed: int | None = None
    frames_dropped: dict[str, int] | None = None
    latency_s: float | None = None
    score: float | None = None
    alerting: bool | None = Field(None, description="while any of its faces is alerting")
    settings: StreamSettingsView | None = None
    analysis: AnalysisPace | None = None
    alerts: list[FaceAlert] | None = Field(None, description="the alert open on each face")
    votes: Votes | None = None
    last_event: Event | None = None
    shard: int | None = None
    node: str | None = None


class StreamList(Body):
    streams: list[StreamView]


class WebRTCOffer(Body):
    """``POST /api/webrtc/offer``: a WebRTC publisher's SDP offer."""

    sdp: str
    type: Literal["offer"] = "offer"
    name: str | None = None


class WebRTCAnswer(Body):
    id: str
    type: Literal["answer"]
    sdp: str


class IceServer(Body):
    urls: list[str]


class IceServers(Body):
    """``GET /api/webrtc/ice-servers``: the STUN servers a publisher page may use."""

    ice_servers: list[IceServer]


# --- events ------------------------------------------------------------------------


class EventsQuery(Body):
    """``GET /api/events``: which events, newest first."""

    limit: int = Field(50, ge=1, le=1000, description="at most this many")
    stream: str | None = Field(None, description="only this stream's (id or name)")
    after: str | None = Field(
        None,
        description="only events newer than the event with this id (a cursor to poll "
        "with; all recent ones when it is no longer known)",
    )


class SignedLink(Body):
    """``GET /api/evidence/{id}/{name}`` without the token: a signed link's query, as
    webhook bodies give it (both or neither)."""

    expires: int | None = Field(None, description="when the link expires (Unix seconds)")
    sig: str | None = Field(None, description="HMAC-SHA256 of the path and expiry, base64url")


class EventList(Body):
    events: list[Event]


# --- reading and answering ---------------------------------------------------------


def problem(error: ValidationError) -> str:
    """A validation error as one line that names each key."""
    unknown = [str(e["loc"][-1]) for e in error.errors() if e["type"] == "extra_forbidden"]
    parts = [f"unknown fields: {', '.join(sorted(unknown))}"] if unknown else []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "body"
        if item["type"] == "missing":
            parts.append(f'"{key}" is required')
        elif item["type"] != "extra_forbidden":
            parts.append(f'"{key}": {item["msg"]}')
    return "; ".join(parts)


def parse(model: type[M], data: Any) -> M:
    """``data`` as ``model``; 400 naming the key when it does not fit."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise web.HTTPBadRequest(text=problem(error)) from None


async def read_json(request: web.Request, model: type[M]) -> M:
    """The request's JSON object body as ``model`` (415, 413 or 400 when it is not one)."""
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
    return parse(model, body)


def read_query(request: web.Request, model: type[M]) -> M:
    """The request's query parameters as ``model`` (400 naming the key, or a key given
    more than once)."""
    repeated = sorted({key for key in request.query if len(request.query.getall(key)) > 1})
    if repeated:
        raise web.HTTPBadRequest(text=f"given more than once: {', '.join(repeated)}")
    return parse(model, dict(request.query))


def answer(
    model: type[BaseModel],
    data: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """``data`` checked against ``model`` and sent as JSON; fields not given are left out."""
    body = model.model_validate(data).model_dump(mode="json", exclude_unset=True)
    return web.json_response(body, status=status, headers=headers)
