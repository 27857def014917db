"""The Grafana dashboard and provisioning under deploy/grafana: structure and coverage.

Whether every query returns data is checked against the running service by
test_prometheus.py; this checks what needs no server: the panels reference the
provisioned data source through the ``datasource`` variable, filter per-stream series by
``$stream``, do not overlap, and together cover every metric the service exports.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from fakewatch.stream.metrics import PipelineMetrics
from tests.deploy.dashboard import (
    CLUSTER_ROW,
    GRAFANA_DIR,
    GRAFANA_VARIABLES,
    all_panels,
    annotation_queries,
    cluster_queries,
    load_dashboard,
    panel_queries,
    row_panels,
    single_machine_queries,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def exported_metrics() -> dict[str, tuple[str, ...]]:
    """The name and label names of every metric of ``PipelineMetrics``."""
    metrics = PipelineMetrics()
    return {
        metric._name: tuple(metric._labelnames)
        for metric in vars(metrics).values()
        if isinstance(metric, MetricWrapperBase)
    }


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


def test_the_dashboard_selects_its_data_source_and_streams_by_variable(
    dashboard: dict[str, Any],
) -> None:
    assert dashboard["uid"] == "fakewatch"
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    stream = variables["stream"]
    assert stream["query"]["query"] == "label_values(fakewatch_stream_up, stream)"
    assert stream["datasource"] == DATASOURCE
    assert stream["multi"] and stream["includeAll"] and stream["allValue"] == ".*"
    shard = variables["shard"]  # the Cluster row's
    assert shard["query"]["query"] == 'label_values(fakewatch_streams{component="shard"}, shard)'
    assert shard["datasource"] == DATASOURCE
    assert shard["multi"] and shard["includeAll"] and shard["allValue"] == ".*"
    # every variable a query uses is either defined here or one of Grafana's own
    assert set(variables) - {"datasource"} <= set(GRAFANA_VARIABLES)


def test_every_panel_reads_the_variable_data_source_and_has_a_description(
    dashboard: dict[str, Any],
) -> None:
    ids = [panel["id"] for panel in all_panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in all_panels(dashboard):
        if panel["type"] == "row":
            continue
        title = panel["title"]
        assert panel["datasource"] == DATASOURCE, title
        assert panel.get("description"), f"panel {title!r} has no description"
        targets = panel["targets"]
        assert targets, f"panel {title!r} has no query"
        refs = [target["refId"] for target in targets]
        assert len(refs) == len(set(refs)), f"panel {title!r} repeats a refId"
        for target in targets:
            assert target["datasource"] == DATASOURCE, title
            assert target["expr"].strip(), title
    for item in dashboard["annotations"]["list"]:
        if "expr" in item:
            assert item["datasource"] == DATASOURCE, item["name"]


def test_panels_fit_the_grid_without_overlapping(dashboard: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in all_panels(dashboard):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] >= 1 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                other = cells.setdefault((x, y), panel["title"])
                assert other == panel["title"], f"{panel['title']!r} overlaps {other!r}"


def test_per_stream_series_are_filtered_by_the_stream_variable(
    dashboard: dict[str, Any],
) -> None:
    per_stream = {name for name, labels in exported_metrics().items() if "stream" in labels}
    assert per_stream, "PipelineMetrics has no per-stream metric?"
    for query in [*panel_queries(dashboard), *annotation_queries(dashboard)]:
        for name in query.metrics:
            base = re.sub(r"_(total|bucket|sum|count|info)$", "", name)
            if base in per_stream:
                assert f'{name}{{stream=~"$stream"' in query.expr, (
                    f'{query}: {name} is per stream; filter it with {{stream=~"$stream"}}'
                )


def test_the_cluster_row_reads_cluster_targets_and_sums_over_them(
    dashboard: dict[str, Any],
) -> None:
    """The Cluster row reads only the series of a cluster's front, shards and Segmenter
    replicas (the component label its scrape configuration attaches), shards filtered
    by ``$shard``, always aggregated (a shard or replica restarts on another node as a
    new series); the other panels read no cluster label, so a single service fills them."""
    panels = row_panels(dashboard, CLUSTER_ROW)
    assert panels, "the dashboard has no Cluster panels"
    all_queries = panel_queries(dashboard)
    machine = single_machine_queries(dashboard)
    assert len(machine) + len(cluster_queries(dashboard)) == len(all_queries)
    for query in all_queries:
        if query in machine:
            cluster_labels = r'\b(shard|replica|node)\b|component="(shard|segmenter)"'
            assert not re.search(cluster_labels, query.expr), query
            continue
        aggregated = r"(histogram_quantile\(0\.\d+, )?(sum|count) ?(by \([\w, ]+\) )?\(.*"
        assert re.fullmatch(aggregated, query.expr, re.S), f"{query}: aggregate it"
        for name in query.metrics:
            for match in re.finditer(rf"\b{name}\b(\{{[^}}]*\}})?", query.expr):
                selector = match[1] or ""
                assert re.search(r'component="(shard|segmenter|front)"', selector), (
                    f"{query}: {name} without a component matcher"
                )
                if 'component="shard"' in selector:
                    assert 'shard=~"$shard"' in selector, f"{query}: filter by $shard"
    assert "$shard" not in " ".join(q.expr for q in machine)


def test_every_exported_metric_has_a_panel(dashboard: dict[str, Any]) -> None:
    used = {
        re.sub(r"_(total|bucket|sum|count|info)$", "", name)
        for query in panel_queries(dashboard)
        for name in query.metrics
    }
    missing = sorted(set(exported_metrics()) - used)
    assert not missing, f"metrics with no panel in deploy/grafana/dashboards: {missing}"


def test_provisioning_points_grafana_at_prometheus_and_the_dashboards() -> None:
    sources = yaml.safe_load((GRAFANA_DIR / "provisioning/datasources/prometheus.yaml").read_text())
    (source,) = sources["datasources"]
    assert (source["uid"], source["type"]) == ("prometheus", "prometheus")
    assert source["url"] == "http://prometheus:9090"
    assert source["isDefault"] is True
    providers = yaml.safe_load((GRAFANA_DIR / "provisioning/dashboards/fakewatch.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    readme = (GRAFANA_DIR / "README.md").read_text()
    for path in ("/etc/grafana/provisioning", "/var/lib/grafana/dashboards"):
        assert path in readme, f"deploy/grafana/README.md does not say where {path} comes from"
