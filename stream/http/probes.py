"""What probes and scrapers read, without a token: liveness, readiness and metrics."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fakewatch.stream.http.keys import CONTROL, error
from fakewatch.stream.http.schemas import Health, Ready, answer


async def healthz(request: web.Request) -> web.Response:
    return answer(Health, {"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    control = request.app[CONTROL]
    reason = control.not_ready()
    if reason:
        return error(503, reason)
    return answer(Ready, {"status": "ready", **control.ready_detail()})


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[CONTROL].registry)
    response = web.Response(body=body)
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
