"""The running service against its own OpenAPI document, by schemathesis: requests
generated from the document, valid and not, to every route, with the token and
without; no answer may be a 5xx or break the document."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from fakewatch.stream.http.routes import served
from tests.support.service import TOKEN, ServiceThread

pytestmark = [pytest.mark.slow, pytest.mark.peer]

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.negative_data_rejection,
    checks.ignored_auth,
]
schemathesis.serializer.alias("application/sdp", "text/plain")  # WHIP offers are text
EXAMPLES = 25
"""Generated requests per route, mode and token."""


@pytest.fixture(scope="module")
def service() -> Iterator[ServiceThread]:
    # no local files: generated URLs must not open files of this machine
    running = ServiceThread(**{"sources.allow_local_files": False}).start()
    try:
        yield running
    finally:
        running.close()


@pytest.fixture(scope="module")
def api(service: ServiceThread) -> Any:
    """The document the service serves (behind its token)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    return schemathesis.openapi.from_url(f"{service.base}/api/openapi.json", headers=headers)


def _cases() -> list[tuple[str, str, GenerationMode]]:
    """Every route with valid requests; with invalid ones too where there is something
    to get wrong (a body, a query, an id)."""
    cases = []
    for route in served(webrtc=True):
        cases.append((route.method, route.path, GenerationMode.POSITIVE))
        if route.body is not None or route.query is not None or "{id}" in route.path:
            cases.append((route.method, route.path, GenerationMode.NEGATIVE))
    return cases


@pytest.mark.parametrize("token", [TOKEN, None], ids=["token", "no-token"])
@pytest.mark.parametrize(("method", "path", "mode"), _cases(), ids=str)
def test_every_route_keeps_the_documented_contract(
    api: Any, method: str, path: str, mode: GenerationMode, token: str | None
) -> None:
    operation = api.find_operation_by_label(f"{method} {path}")
    assert operation is not None, f"{method} {path} is not in the served document"
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    @given(case=operation.as_strategy(mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def call(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    call()
