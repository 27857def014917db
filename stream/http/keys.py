"""What the API's handlers find in their application, and how they answer an error."""

from __future__ import annotations

from aiohttp import web

from fakewatch.stream.config import ServiceConfig
from fakewatch.stream.http.control import StreamControl
from fakewatch.stream.sinks.evidence import EvidenceStore
from fakewatch.stream.sinks.recent import RecentEvents

CONTROL = web.AppKey("control", StreamControl)
CONFIG = web.AppKey("config", ServiceConfig)
EVIDENCE = web.AppKey("evidence", EvidenceStore)
RECENT = web.AppKey("recent", RecentEvents)
BASE_URL = web.AppKey("base_url", dict)  # {"url": ...}, set once the server is bound
OPENAPI = web.AppKey("openapi", dict)  # the OpenAPI document of the routes served


def error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON error: ``{"error": message}``."""
    return web.json_response({"error": message}, status=status, headers=headers)


def base_url(request: web.Request) -> str:
    """Where clients reach the API (``server.public_url`` or the bound address)."""
    return str(request.app[BASE_URL].get("url", ""))
