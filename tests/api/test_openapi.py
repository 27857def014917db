"""The API's OpenAPI document: valid OpenAPI 3.1, served, and naming every route."""

from __future__ import annotations

import asyncio

import aiohttp
from openapi_spec_validator import validate

from fakewatch.stream.http.openapi import document
from fakewatch.stream.http.routes import ROUTES, served
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
