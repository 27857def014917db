"""The API's OpenAPI document: valid OpenAPI 3.1, served, and naming every route."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import aiohttp
from aiohttp import web
from openapi_spec_validator import validate

from fakewatch.stream.config import load_config
from fakewatch.stream.http.app import build_app
from fakewatch.stream.http.keys import OPENAPI
from fakewatch.stream.http.openapi import document
from fakewatch.stream.http.routes import ROUTES, Route, served
from fakewatch.stream.sinks.evidence import EvidenceStore
from fakewatch.stream.sinks.recent import RecentEvents
from tests.support.service import serving


def test_the_document_is_valid_openapi_3_1() -> None:
    for webrtc in (True, False):
        spec = document(served(webrtc))
        validate(spec)
        assert spec["openapi"].startswith("3.1")
    paths = document(served(False))["paths"]
    assert "/api/whip/{id}" not in paths and "/publish" not in paths
    review = document(ROUTES)["paths"]["/api/events/{id}/review"]["post"]
    body = review["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ReviewRequest"}


def test_every_route_the_service_serves_is_in_its_document() -> None:
    async def run() -> None:
        async with serving() as service:
            async with service.http.get("/api/openapi.json") as response:
                assert response.status == 200
                spec = await response.json()
            async with (
                aiohttp.ClientSession(base_url=service.base) as anonymous,
                anonymous.get("/api/openapi.json") as response,
            ):
                assert response.status == 401
            served_routes = {
                (route.method.lower(), route.resource.canonical)
                for route in service.host.app.router.routes()
                if route.method != "HEAD" and route.resource is not None
            }
        documented = {(method, path) for path, item in spec["paths"].items() for method in item}
        assert served_routes, "the app serves no routes"
        missing = served_routes - documented
        assert not missing, f"routes served but not in /api/openapi.json: {sorted(missing)}"
        assert documented <= served_routes, sorted(documented - served_routes)
        for path, item in spec["paths"].items():
            for method, operation in item.items():
                protected = operation.get("security") != []
                assert protected == path.startswith("/api/"), (method, path)

    asyncio.run(run())


def test_a_hosts_own_routes_are_documented_too(tmp_path: Path) -> None:
    """A cluster's front adds routes of its own: they go through the same table."""

    async def shards(request: web.Request) -> web.Response:
        return web.json_response({"shards": []})

    extra = Route("GET", "/api/shards", shards, "The shards' last pings", "application/json")
    config = load_config(environ={})
    control = SimpleNamespace(webrtc=False)  # build_app reads only this while building
    app = build_app(config, control, EvidenceStore(tmp_path), RecentEvents(), [extra])  # type: ignore[arg-type]
    spec = app[OPENAPI]
    validate(spec)
    assert spec["paths"]["/api/shards"]["get"]["summary"] == "The shards' last pings"
    served_routes = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert served_routes == {(m, p) for p, item in spec["paths"].items() for m in item}
