"""The HTTP API (aiohttp): one route table for every host.

``/api/*`` are control endpoints: when ``server.token`` is set each needs
``Authorization: Bearer <token>`` (compared in constant time). Health, readiness and
metrics stay open for probes and scrapers. Every error is JSON:
``{"error": "<what went wrong and what to do>"}``. The routes are those of
:data:`~fakewatch.stream.http.routes.ROUTES`, documented at ``/api/openapi.json``. An
evidence file is also served without the token on a signed link
(``?expires=...&sig=...``, as webhook bodies give them;
:mod:`~fakewatch.stream.sinks.links`); a link whose signature does not match its path
and expiry, or that has expired, is refused with 403. The stream routes act through a
:class:`~fakewatch.stream.http.control.StreamControl`, so ``fakewatch serve`` and the
cluster's front answer the same API; a host adds its own routes with ``extra``,
documented like the rest.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence

from aiohttp import web

from fakewatch.stream.config import ServiceConfig
from fakewatch.stream.http.control import StreamControl
from fakewatch.stream.http.keys import BASE_URL, CONFIG, CONTROL, EVIDENCE, OPENAPI, RECENT, error
from fakewatch.stream.http.openapi import document
from fakewatch.stream.http.routes import Route, served
from fakewatch.stream.logs import LOGGER_NAME, describe_error, log
from fakewatch.stream.sinks.evidence import EvidenceStore
from fakewatch.stream.sinks.recent import RecentEvents

logger = logging.getLogger(f"{LOGGER_NAME}.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

MAX_BODY_BYTES = 1024 * 1024
"""The largest request body read at all (SDP offers, JSON)."""


EVIDENCE_PREFIX = "/api/evidence/"
LINK_PARAMS = ("expires", "sig")


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bearer token on control endpoints, or a valid signed link to evidence; every error
    answered as JSON."""
    token = request.app[CONFIG].server.token
    if any(name in request.query for name in LINK_PARAMS):
        refusal = _link_refusal(request)
        if refusal is not None:
            return error(403, refusal)
    elif token and request.path.startswith("/api/"):
        given = request.headers.get("Authorization", "")
        expected = f"Bearer {token}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            return error(
                401,
                "missing or wrong bearer token (Authorization: Bearer <server.token>)",
                {"WWW-Authenticate": 'Bearer realm="fakewatch"'},
            )
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return error(exc.status, exc.text or exc.reason)
    except Exception as exc:  # never leak a traceback to a client
        log(
            logger,
            logging.ERROR,
            "api.error",
            path=request.path,
            error=describe_error(exc),
        )
        return error(500, "internal error; see the service log")


def _link_refusal(request: web.Request) -> str | None:
    """Why a signed link is refused; ``None`` when it is a valid link to evidence."""
    if not request.path.startswith(EVIDENCE_PREFIX) or request.method not in ("GET", "HEAD"):
        return "signed links only open evidence files (GET)"
    values = [request.query.getall(name, []) for name in LINK_PARAMS]
    if any(len(found) != 1 for found in values) or len(request.query) != len(LINK_PARAMS):
        return "a signed link has one expires and one sig and nothing else"
    (expires,), (sig,) = values
    return request.app[EVIDENCE].signer.refusal(request.path, expires, sig)


def build_app(
    config: ServiceConfig,
    control: StreamControl,
    evidence: EvidenceStore,
    recent: RecentEvents,
    extra: Sequence[Route] = (),
) -> web.Application:
    """The API over ``control``'s streams and the stores of the events; the WebRTC
    routes and the publisher page only when ``control`` takes WebRTC publishers."""
    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY_BYTES)
    app[CONTROL] = control
    app[CONFIG] = config
    app[EVIDENCE] = evidence
    app[RECENT] = recent
    app[BASE_URL] = {}
    routes = [*served(control.webrtc), *extra]
    for route in routes:
        if route.method == "GET":  # and HEAD, as aiohttp does
            app.router.add_get(route.path, route.handler)
        else:
            app.router.add_route(route.method, route.path, route.handler)
    app[OPENAPI] = document(routes)
    return app
