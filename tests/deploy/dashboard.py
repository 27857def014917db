"""The Grafana dashboard and the Prometheus files under deploy/, read for the tests."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO / "deploy" / "prometheus"
GRAFANA_DIR = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "fakewatch.json"

STREAM = "cam"
"""The stream the live test watches; ``$stream`` becomes its name."""
CLUSTER_ROW = "Cluster"
"""The row of the panels that only a cluster has data for (``component`` and ``shard``
labels come from the front's service discovery)."""

# What Grafana puts in place of its variables, for running a panel's query directly
# against Prometheus: the test scrapes every second, so 1m windows hold many samples.
GRAFANA_VARIABLES = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "1m",
    "stream": STREAM,
    "shard": ".*",  # the variable's "All"
}
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")
METRIC = re.compile(r"\b(?:fakewatch_\w+|up)\b(?!\s*\()")


@dataclass(frozen=True)
class Query:
    """One PromQL expression of the dashboard and where it sits."""

    panel: str
    ref: str
    expr: str

    def __str__(self) -> str:
        return f"panel {self.panel!r} query {self.ref}: {self.expr}"

    @property
    def promql(self) -> str:
        """The expression with Grafana's variables replaced, as Prometheus takes it."""
        return substitute(self.expr)

    @property
    def metrics(self) -> set[str]:
        """The series names the expression reads."""
        return metric_names(self.expr)


def substitute(expr: str) -> str:
    """``expr`` with every ``$name`` / ``${name}`` replaced from ``GRAFANA_VARIABLES``."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in GRAFANA_VARIABLES:
            raise KeyError(f"no test value for the Grafana variable ${name} in {expr}")
        return GRAFANA_VARIABLES[name]

    return _VARIABLE.sub(value, expr)


def metric_names(expr: str) -> set[str]:
    """The metric names in ``expr`` (``fakewatch_*`` and ``up``), labels and strings aside."""
    bare = re.sub(r'"[^"]*"', '""', expr)  # label values
    bare = re.sub(r"\{[^}]*\}", "{}", bare)  # label matchers
    bare = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", bare)  # grouping labels
    return set(METRIC.findall(bare))


def load_dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def _queries(panels: Iterable[dict[str, Any]]) -> list[Query]:
    return [
        Query(panel["title"], target["refId"], target["expr"])
        for panel in panels
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def panel_queries(dashboard: dict[str, Any]) -> list[Query]:
    """Every ``targets[].expr`` of every panel."""
    return _queries(all_panels(dashboard))


def row_panels(dashboard: dict[str, Any], title: str) -> list[dict[str, Any]]:
    """The panels of the row ``title``: a collapsed row's own panels, or the panels that
    follow an open row up to the next row."""
    found: list[dict[str, Any]] | None = None
    for panel in dashboard.get("panels", []):
        if panel["type"] == "row":
            if found is not None:
                break
            if panel["title"] == title:
                found = list(panel.get("panels", []))
        elif found is not None:
            found.append(panel)
    if found is None:
        raise KeyError(f"the dashboard has no row {title!r}")
    return found


def single_machine_queries(dashboard: dict[str, Any]) -> list[Query]:
    """The queries that ``fakewatch serve`` answers: all but the Cluster row's."""
    cluster = {id(panel) for panel in row_panels(dashboard, CLUSTER_ROW)}
    return _queries(panel for panel in all_panels(dashboard) if id(panel) not in cluster)


def cluster_queries(dashboard: dict[str, Any]) -> list[str]:
    """The PromQL of the Cluster row's panels, Grafana's variables replaced as for the
    other panels (``$stream`` is ``STREAM``, ``$shard`` every shard), to check against a
    running cluster that each returns data."""
    return [query.promql for query in _queries(row_panels(dashboard, CLUSTER_ROW))]


def annotation_queries(dashboard: dict[str, Any]) -> list[Query]:
    return [
        Query(f"annotation {item['name']}", "-", item["expr"])
        for item in dashboard["annotations"]["list"]
        if item.get("expr")
    ]


def alert_rules() -> list[dict[str, Any]]:
    """The alerting rules of ``alerts.yml``."""
    groups = yaml.safe_load((PROMETHEUS_DIR / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]
