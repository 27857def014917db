"""The web pages: ``/`` (the streams page) and ``/publish`` (a camera publisher), with
their scripts and styles under ``/static/``.

They are static files from ``web/``, hold no data and need no token; the ``/api/`` calls
they make send the token the user types in.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from fakewatch.stream.http.keys import error

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


async def static_file(request: web.Request) -> web.StreamResponse:
    """One file of ``web/`` by name: no folders, no listing, known types only."""
    name = request.match_info["name"]
    content_type = STATIC_TYPES.get(Path(name).suffix)
    plain = name == Path(name).name and "\\" not in name and not name.startswith(".")
    if content_type is None or not plain or not (WEB / name).is_file():
        return error(404, f"no static file {name!r}")
    return _web_file(name, content_type)
