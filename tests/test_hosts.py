"""Both hosts of the service, ``fakewatch serve`` and the cluster's front, build their
event sinks with one function, so they get the same sinks in the same order: recent
events, then the evidence store, then the webhooks (a webhook's body links to the
evidence the evidence store has written by then)."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from fakewatch.stream.analysis.events import EventSink
from fakewatch.stream.host import open_service
from fakewatch.stream.sinks.evidence import EvidenceStore
from fakewatch.stream.sinks.log import LogSink
from fakewatch.stream.sinks.recent import RecentEvents
from fakewatch.stream.sinks.webhooks import WebhookSink

REPO = Path(__file__).resolve().parent.parent
ORDER = [RecentEvents, EvidenceStore, WebhookSink]
STORES = {cls.__name__ for cls in ORDER}


def settings(folder: Path) -> dict[str, Any]:
    return {
        "evidence.folder": str(folder / "evidence"),
        "webhooks.outbox": str(folder / "outbox.sqlite3"),
        "webhooks.endpoints": [
            {
                "name": "ops",
                "url": "http://127.0.0.1:9/hook",
                "secrets": ["whsec_" + "A" * 32],
                "allow_private": True,
            }
        ],
    }


def kinds(sinks: list[EventSink]) -> list[type]:
    return [type(sink) for sink in sinks]


def _calls(path: Path) -> list[tuple[str, str]]:
    """(enclosing function, called name) of every call in ``path``."""
    found: list[tuple[str, str]] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                visit(child, child.name)
                continue
            if isinstance(child, ast.Call):
                func = child.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                found.append((function, name))
            visit(child, function)

    visit(ast.parse(path.read_text()), "")
    return found


def test_the_stores_are_built_in_one_function_that_both_hosts_call() -> None:
    builders = {
        (path.relative_to(REPO).as_posix(), function)
        for folder in ("stream", "cluster", "cli")
        for path in sorted((REPO / folder).rglob("*.py"))
        for function, name in _calls(path)
        if name in STORES
    }
    assert builders == {("stream/host.py", "open_sinks")}
    for host in ("stream/host.py", "cluster/front.py"):
        assert any(name == "open_sinks" for _, name in _calls(REPO / host)), host


def test_serve_and_the_cluster_front_get_the_same_sinks_in_the_same_order(
    tmp_path: Path,
) -> None:
    pytest.importorskip("ray", reason="ray is not installed (pip install fakewatch[cluster])")
    from fakewatch.cluster.config import load_cluster_config
    from fakewatch.cluster.front import FrontState

    config = load_cluster_config(environ={}, overrides=settings(tmp_path))
    service = open_service(config)
    front = FrontState(config)
    # serve: the pipeline logs each event, then hands it to the stores
    assert service.pipeline.sinks[0].__class__ is LogSink
    assert service.pipeline.sinks[1:] == service.sinks.ordered()
    # the front: its alert sender hands each event to the stores
    assert front.sender.sinks == front.sinks.ordered()
    assert kinds(service.sinks.ordered()) == kinds(front.sinks.ordered()) == ORDER
    # without endpoints there are no webhooks, and the order of the rest holds
    bare = load_cluster_config(environ={}, overrides={"evidence.folder": str(tmp_path / "e")})
    assert kinds(open_service(bare).sinks.ordered()) == ORDER[:2]
