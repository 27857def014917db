"""deploy/prometheus against promtool and a real Prometheus scraping the running service.

``promtool`` checks the configuration and the alerting rules and runs their unit tests
(alerts.test.yml). Then the service runs with a live stream of a real face and a webhook
endpoint, Prometheus (deploy/prometheus/prometheus.yml, pointed at the service and
scraping every second) scrapes it, and every query of the Grafana dashboard, its
variables replaced, must return at least one series: a query that Prometheus refuses or
that finds nothing names its panel. The Cluster row is left out: its series come from a
cluster's shards and Segmenter replicas (``dashboard.cluster_queries`` gives them to a
test that runs against a cluster).

Prometheus and promtool come from Debian's ``prometheus`` package; without them these
tests are skipped, or fail when ``CI`` is set: CI must run them.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import numpy as np
import pytest
import yaml
from aiohttp import web

from fakewatch.stream.metrics import PipelineMetrics
from tests.deploy.dashboard import (
    PROMETHEUS_DIR,
    STREAM,
    Query,
    alert_rules,
    annotation_queries,
    cluster_queries,
    load_dashboard,
    metric_names,
    single_machine_queries,
)
from tests.support.media import face_clip, write_video
from tests.support.prometheus_server import (
    cluster_scrape_config,
    prometheus_server,
    promtool,
    require,
    scrape_config,
)
from tests.support.service import serving
from tests.support.webhooks import Receiver, endpoint, receiving

HOOK = "receiver"
"""The webhook endpoint the live test configures (the ``endpoint`` label)."""
DATA_TIMEOUT_S = 30.0
"""How long every query may take to find data once Prometheus is ready."""


# ---------------------------------------------------------------- without a server


def test_every_alert_reads_exported_metrics_and_has_a_unit_test() -> None:
    families = list(PipelineMetrics().registry.collect())
    exported = {f.name for f in families} | {s.name for f in families for s in f.samples}
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)), "alert names repeat"
    for rule in alert_rules():
        for name in metric_names(rule["expr"]) - {"up"}:
            base = name.removesuffix("_total").removesuffix("_bucket")
            assert name in exported or base in exported, (
                f"alert {rule['alert']} reads {name}, which the service does not export"
            )
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    tests = yaml.safe_load((PROMETHEUS_DIR / "alerts.test.yml").read_text())["tests"]
    tested = {case["alertname"] for test in tests for case in test["alert_rule_test"]}
    assert set(names) <= tested, f"alerts without a unit test: {set(names) - tested}"


@pytest.mark.peer
def test_promtool_accepts_the_config_and_the_rules_and_their_unit_tests_pass(
    tmp_path: Path,
) -> None:
    # a copy, as the container mounts the folder: rule_files resolve beside the config
    for name in ("prometheus.yml", "alerts.yml"):
        shutil.copy(PROMETHEUS_DIR / name, tmp_path / name)
    assert "SUCCESS" in promtool("check", "config", str(tmp_path / "prometheus.yml"))
    rules = promtool("check", "rules", "alerts.yml")
    assert f"SUCCESS: {len(alert_rules())} rules found" in rules
    assert "SUCCESS" in promtool("test", "rules", "alerts.test.yml")


# ---------------------------------------------------------------- against the service


async def api(http: aiohttp.ClientSession, path: str, **params: str) -> Any:
    """The ``data`` of a Prometheus HTTP API answer; fails on an error answer."""
    async with http.get(path, params=params) as response:
        body = await response.json()
    assert body.get("status") == "success", f"{path} {params}: {body}"
    return body["data"]


async def evaluate(http: aiohttp.ClientSession, query: Query) -> list[Any] | str:
    """The series an instant query returns, or Prometheus' error as a string."""
    async with http.get("/api/v1/query", params={"query": query.promql}) as response:
        body = await response.json()
    if body.get("status") != "success":
        return f"{body.get('errorType')}: {body.get('error')}"
    result = body["data"]["result"]
    return list(result) if isinstance(result, list) else [result]


async def failing_queries(http: aiohttp.ClientSession, queries: list[Query]) -> list[str]:
    """What is wrong with each query that errs or returns nothing."""
    results = await asyncio.gather(*(evaluate(http, query) for query in queries))
    failures = []
    for query, result in zip(queries, results, strict=True):
        if isinstance(result, str):
            failures.append(f"{query}\n    -> refused by Prometheus: {result}")
        elif not result:
            failures.append(f"{query}\n    -> no series ({query.promql})")
    return failures


@pytest.mark.slow
@pytest.mark.peer
@pytest.mark.timeout(120)
def test_prometheus_scrapes_the_service_and_every_dashboard_query_has_data(
    tmp_path: Path, astronaut: np.ndarray
) -> None:
    require("prometheus")
    clip = write_video(tmp_path / "face.mp4", face_clip(astronaut, 60, (640, 480)))
    dashboard = load_dashboard()
    # the Cluster row reads labels only a cluster's targets have (component, shard, node)
    queries = single_machine_queries(dashboard)

    async def run() -> None:
        async with receiving() as receiver:
            webhooks: dict[str, Any] = {"webhooks.endpoints": [endpoint(receiver, HOOK)]}
            async with serving(tmp_path / "state", **webhooks) as service:
                await service.add(str(clip), STREAM)
                target = urlsplit(service.base).netloc
                config = scrape_config(target, tmp_path)
                async with (
                    prometheus_server(config, tmp_path) as url,
                    aiohttp.ClientSession(base_url=url) as http,
                ):
                    await check(http, target, receiver)

    async def check(http: aiohttp.ClientSession, target: str, receiver: Receiver) -> None:
        deadline = time.monotonic() + DATA_TIMEOUT_S
        while failures := await failing_queries(http, queries):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(failures)} of {len(queries)} dashboard queries found no data "
                    f"after {DATA_TIMEOUT_S:.0f} s:\n" + "\n".join(failures)
                )
            await asyncio.sleep(1)
        received = [request.json()["type"] for request in receiver.requests]
        assert "stream.up" in received, f"the webhook endpoint got {received}"

        (scraped,) = (await api(http, "/api/v1/targets"))["activeTargets"]
        assert scraped["labels"] == {"instance": target, "job": "fakewatch"}
        assert scraped["health"] == "up", scraped

        # the stream variable's query: label_values(fakewatch_stream_up, stream)
        values = await api(
            http, "/api/v1/label/stream/values", **{"match[]": "fakewatch_stream_up"}
        )
        assert values == [STREAM]

        # annotation queries match only while something is wrong: they must be valid PromQL
        for query in annotation_queries(dashboard):
            assert not isinstance(await evaluate(http, query), str), query

        # every rule loaded and evaluated without error against the real series
        expected = {rule["alert"] for rule in alert_rules()}
        while True:
            (group,) = (await api(http, "/api/v1/rules"))["groups"]
            rules = {rule["name"]: rule for rule in group["rules"]}
            assert set(rules) == expected
            if all(rule["health"] != "unknown" for rule in rules.values()):
                break
            await asyncio.sleep(0.5)
        for name, rule in rules.items():
            assert rule["health"] == "ok", f"{name}: {rule.get('lastError')}"
        firing = [a["labels"] for a in (await api(http, "/api/v1/alerts"))["alerts"]
                  if a["state"] == "firing"]  # fmt: skip
        assert not firing, f"alerts fire on a healthy service showing a real face: {firing}"

    asyncio.run(run())


# ---------------------------------------------------------------- a cluster, simulated


@contextlib.asynccontextmanager
async def stand_in_front(targets: list[dict[str, Any]]) -> AsyncIterator[str]:
    """A local server answering as a cluster's front does for Prometheus: its own
    /metrics and GET /cluster/targets (HTTP service discovery). Its address."""

    async def discovery(request: web.Request) -> web.Response:
        return web.json_response(targets)

    async def metrics(request: web.Request) -> web.Response:
        # the front's own series that the Cluster row reads (cluster/front.py)
        text = (
            "fakewatch_ready 1\n"
            'fakewatch_cluster_shards{state="ready"} 1\n'
            'fakewatch_cluster_shards{state="not_ready"} 0\n'
            "fakewatch_cluster_streams 1\n"
            "fakewatch_cluster_alerts_pending 0\n"
        )
        return web.Response(text=text, content_type="text/plain")

    app = web.Application()
    app.router.add_get("/cluster/targets", discovery)
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@pytest.mark.slow
@pytest.mark.peer
@pytest.mark.timeout(120)
def test_cluster_queries_have_data_through_the_fronts_discovery(
    tmp_path: Path, astronaut: np.ndarray
) -> None:
    """deploy/prometheus/cluster.yml with a stand-in front whose service discovery lists
    one running service twice, as shard-0 and as a Segmenter replica (a simulation: no
    Ray, no real shard); the Cluster row's queries must all return data, and the
    service's own component label must survive on the engine restarts series."""
    require("prometheus")
    clip = write_video(tmp_path / "face.mp4", face_clip(astronaut, 60, (640, 480)))
    queries = [
        Query("Cluster", str(i), expr) for i, expr in enumerate(cluster_queries(load_dashboard()))
    ]

    async def run() -> None:
        async with serving(tmp_path / "state") as service:
            await service.add(str(clip), STREAM)
            worker = urlsplit(service.base).netloc
            node = {"node": "127.0.0.1"}
            targets = [
                {"targets": [worker], "labels": {"component": "shard", "shard": "shard-0", **node}},
                {
                    "targets": [worker],
                    "labels": {"component": "segmenter", "replica": "r0", **node},
                },
            ]
            async with stand_in_front(targets) as front:
                config = cluster_scrape_config(front, tmp_path)
                async with (
                    prometheus_server(config, tmp_path) as url,
                    aiohttp.ClientSession(base_url=url) as http,
                ):
                    await check(http)

    async def check(http: aiohttp.ClientSession) -> None:
        deadline = time.monotonic() + DATA_TIMEOUT_S
        while failures := await failing_queries(http, queries):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(failures)} of {len(queries)} Cluster queries found no data "
                    f"after {DATA_TIMEOUT_S:.0f} s:\n" + "\n".join(failures)
                )
            await asyncio.sleep(1)
        active = (await api(http, "/api/v1/targets"))["activeTargets"]
        components = sorted(target["labels"]["component"] for target in active)
        assert components == ["front", "segmenter", "shard"]
        assert {target["labels"]["job"] for target in active} == {"fakewatch"}
        restarts = Query("restarts", "-", 'fakewatch_engine_restarts_total{shard="shard-0"}')
        series = await evaluate(http, restarts)
        assert not isinstance(series, str)
        assert {s["metric"]["component"] for s in series} == {"engine", "detector"}

    asyncio.run(run())
