"""The API's OpenAPI 3.1 document, built from the route table and the body models.

Pydantic writes JSON Schema 2020-12, which OpenAPI 3.1 takes as it is: every model
goes under ``components/schemas`` and the operations refer to it. Served at
``/api/openapi.json`` (behind the token like the rest of ``/api/``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from fakewatch.stream.http.keys import OPENAPI
from fakewatch.stream.http.schemas import ErrorBody

if TYPE_CHECKING:
    from fakewatch.stream.http.routes import Content, Route

TITLE = "fakewatch"
VERSION = "1"
REF = "#/components/schemas/{model}"


def _models(routes: Sequence[Route]) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = [ErrorBody]
    for route in routes:
        for content in (route.answer, route.body):
            if isinstance(content, type) and content not in found:
                found.append(content)
    return found


def _content(content: Content, refs: dict[type[BaseModel], dict[str, Any]]) -> dict[str, Any]:
    if isinstance(content, type):
        return {"application/json": {"schema": refs[content]}}
    assert content is not None
    kind = "object" if content == "application/json" else "string"
    return {content: {"schema": {"type": kind}}}


def _query(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "description": field.pop("description", ""),
            "schema": field,
        }
        for name, field in schema["properties"].items()
    ]


def document(routes: Sequence[Route]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``routes``."""
    models = _models(routes)
    keys, definitions = models_json_schema(
        [(model, "validation") for model in models], ref_template=REF
    )
    refs = {model: keys[(model, "validation")] for model in models}
    error = {"description": "an error", "content": _content(ErrorBody, refs)}
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        answer: dict[str, Any] = {"description": route.summary}
        if route.answer is not None:
            answer["content"] = _content(route.answer, refs)
        operation: dict[str, Any] = {
            "operationId": _operation_id(route),
            "summary": route.summary,
            "responses": {str(route.status): answer, "default": error},
        }
        if not route.auth:
            operation["security"] = []
        names = re.findall(r"{(\w+)}", route.path)
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in names
        ]
        if route.query is not None:
            parameters.extend(_query(route.query))
        if parameters:
            operation["parameters"] = parameters
        if route.body is not None:
            operation["requestBody"] = {"required": True, "content": _content(route.body, refs)}
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": VERSION,
            "description": "Real-time deepfake detection for live video: the control API.",
        },
        "paths": paths,
        "components": {
            "schemas": definitions.get("$defs", {}),
            "securitySchemes": {"token": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"token": []}],
    }


def _operation_id(route: Route) -> str:
    words = re.sub(r"[{}]", "", route.path).strip("/").replace(".", "_").split("/")
    return "_".join([route.method.lower(), *(w.replace("-", "_") for w in words if w)]) or "root"


async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(request.app[OPENAPI])
