"""The pages' routes: served without the token, with security headers, no file leaks."""

from __future__ import annotations

import asyncio

import aiohttp

from tests.support.service import serving


def test_pages_and_static_files_are_served_without_the_token() -> None:
    async def run() -> None:
        async with serving() as service, aiohttp.ClientSession(base_url=service.base) as anon:
            for path, page in (("/", "index.html"), ("/publish", "publish.html")):
                async with anon.get(path) as response:
                    assert response.status == 200, path
                    assert response.content_type == "text/html"
                    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
                    assert "img-src 'self' blob:" in response.headers["Content-Security-Policy"]
                    assert response.headers["X-Content-Type-Options"] == "nosniff"
                    assert "<!doctype html>" in (await response.text()).lower(), page
            for name, content_type in (
                ("app.js", "text/javascript"),
                ("publish.js", "text/javascript"),
                ("common.js", "text/javascript"),
                ("style.css", "text/css"),
            ):
                async with anon.get(f"/static/{name}") as response:
                    assert response.status == 200, name
                    assert response.content_type == content_type
                    assert response.headers["X-Content-Type-Options"] == "nosniff"
            # the API the pages call still needs the token
            async with anon.get("/api/streams") as response:
                assert response.status == 401

    asyncio.run(run())


def test_static_serves_only_the_page_files() -> None:
    async def run() -> None:
        async with serving() as service, aiohttp.ClientSession(base_url=service.base) as anon:
            for path in (
                "/static/",
                "/static/index.html",  # pages only at their own routes
                "/static/missing.js",
                "/static/..%2Fapi.py",
                "/static/..%2F..%2Ftests%2Fmedia.py",
                "/static/%2E%2E%2Fweb%2Fapp.js",
                "/static/.hidden.js",
            ):
                async with anon.get(path) as response:
                    assert response.status == 404, path
                    assert response.content_type == "application/json", path

    asyncio.run(run())
