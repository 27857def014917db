"""The web pages: ``/`` (the streams page) and ``/publish`` (a camera or shared-tab
publisher), with their scripts and styles under ``/static/``.

They are static files from ``web/``, hold no data and need no token; the ``/api/`` calls
they make send the token the user types in.

The publisher page asks ``/api/webrtc/ice-servers`` for the STUN servers its browser
should use, and gets the STUN URLs of ``webrtc.ice_servers`` only, never a TURN server:
its credentials let whoever holds them relay any traffic through it, and a page (its
script, the browser's developer tools, an extension) is no place for them. The browser
needs none: the service relays through TURN itself, and its relay address is in the
answer, which a browser behind NAT reaches with the address STUN tells it.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from fakewatch.stream.http.keys import CONFIG, error
from fakewatch.stream.http.schemas import IceServers, answer

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
    # scripts, styles and fetches from this origin only; images and the clip also from
    # blob: URLs (evidence is fetched with the token and shown as blobs)
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; "
        "base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _web_file(name: str, content_type: str) -> web.FileResponse:
    return web.FileResponse(WEB / name, headers={**PAGE_HEADERS, "Content-Type": content_type})


async def index_page(request: web.Request) -> web.StreamResponse:
    return _web_file("index.html", "text/html; charset=utf-8")


async def publish_page(request: web.Request) -> web.StreamResponse:
    return _web_file("publish.html", "text/html; charset=utf-8")


async def publisher_ice_servers(request: web.Request) -> web.Response:
    """The ICE servers the publisher page passes to ``RTCPeerConnection``: STUN only."""
    urls = request.app[CONFIG].webrtc.stun_urls()
    return answer(IceServers, {"ice_servers": [{"urls": urls}] if urls else []})


async def static_file(request: web.Request) -> web.StreamResponse:
    """One file of ``web/`` by name: no folders, no listing, known types only."""
    name = request.match_info["name"]
    content_type = STATIC_TYPES.get(Path(name).suffix)
    plain = name == Path(name).name and "\\" not in name and not name.startswith(".")
    if content_type is None or not plain or not (WEB / name).is_file():
        return error(404, f"no static file {name!r}")
    return _web_file(name, content_type)
