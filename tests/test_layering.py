"""Imports flow one way, between the packages and inside the streaming service, and
nothing in the package can unpickle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PRODUCT = ("engines", "training", "stream", "cluster", "cli")
FORBIDDEN = {
    "engines": ("fakewatch.training", "fakewatch.stream", "fakewatch.cluster", "fakewatch.cli"),
    "training": ("fakewatch.stream", "fakewatch.cluster"),
    "stream": ("fakewatch.training", "fakewatch.cluster", "fakewatch.cli"),
    "cluster": ("fakewatch.training", "fakewatch.cli"),
}
STREAM = "fakewatch.stream."
STAGES = ("sources", "analysis", "sinks", "http")
STAGE_FORBIDDEN = {
    # sources <- analysis <- host -> sinks, http
    "sources": ("analysis", "sinks", "http", "host"),
    "analysis": ("sinks", "http", "host"),
    "sinks": ("http", "host"),
    "http": ("host",),
}
"""What each stage of ``stream/`` must not import (as ``fakewatch.stream.<name>``)."""


def _imports(path: Path) -> list[str]:
    """Every module ``path`` imports; ``from a import b`` counts as ``a`` and ``a.b``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _sources(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def _stage_of(path: Path) -> str | None:
    """The stage folder of a module of ``stream/`` (None for its top-level modules)."""
    parts = path.relative_to(REPO / "stream").parts
    return parts[0] if len(parts) > 1 else None


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_imports_flow_one_way(folder: str) -> None:
    for path in _sources(folder):
        for name in _imports(path):
            assert not name.startswith(FORBIDDEN[folder]), f"{path} imports {name}"


@pytest.mark.parametrize("stage", STAGES)
def test_stream_stages_import_one_way(stage: str) -> None:
    forbidden = tuple(STREAM + name for name in STAGE_FORBIDDEN[stage])
    paths = _sources(f"stream/{stage}")
    assert paths, stage
    for path in paths:
        for name in _imports(path):
            assert not name.startswith(forbidden), f"{path} imports {name}"


def test_only_the_host_imports_the_http_layer() -> None:
    for path in _sources("stream"):
        if _stage_of(path) == "http" or path == REPO / "stream" / "host.py":
            continue
        for name in _imports(path):
            assert not name.startswith(STREAM + "http"), f"{path} imports {name}"


def test_the_shared_modules_of_stream_import_no_stage() -> None:
    """config, logs, metrics, backoff, ...: what every stage uses, and uses nothing."""
    shared = [p for p in _sources("stream") if _stage_of(p) is None]
    shared = [p for p in shared if p.name not in ("host.py", "live_scan.py", "__init__.py")]
    assert shared
    stages = tuple(STREAM + name for name in (*STAGES, "host", "live_scan"))
    for path in shared:
        for name in _imports(path):
            assert not name.startswith(stages), f"{path} imports {name}"


def test_tests_and_benchmarks_stay_apart_from_the_product() -> None:
    """The product imports neither ``tests`` nor ``benchmarks``."""
    for folder in PRODUCT:
        for path in _sources(folder):
            for name in _imports(path):
                assert name.split(".")[0] not in ("tests", "benchmarks"), f"{path} imports {name}"


def test_benchmarks_and_tests_never_import_each_other() -> None:
    """A benchmark drives the product (and its sibling ``common``), never the tests'
    helpers; a test runs a benchmark as a program, never loads it as a module."""
    benchmarks = _sources("benchmarks")
    assert benchmarks
    for path in benchmarks:
        for name in _imports(path):
            assert name.split(".")[0] not in ("tests", "benchmarks"), f"{path} imports {name}"
    for path in _sources("tests"):
        for name in _imports(path):
            assert name.split(".")[0] != "benchmarks", f"{path} imports {name}"
        text = path.read_text()
        if path != Path(__file__) and ("spec_from_file_location" in text or "run_path" in text):
            assert "benchmarks" not in text, f"{path} loads a benchmark script as a module"


def test_no_pickle_anywhere_in_the_package() -> None:
    # (Ray pickles what the cluster's processes pass each other, inside the cluster's own
    # trust boundary; fakewatch's own code unpickles nothing, there either.)
    for folder in PRODUCT:
        for path in _sources(folder):
            text = path.read_text()
            for name in _imports(path):
                assert name.split(".")[0] not in {"pickle", "dill", "joblib", "cloudpickle"}, path
            tree = ast.parse(text)
            for node in ast.walk(tree):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "load"
                    and ast.unparse(node.func.value) == "torch"
                ):
                    keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
                    assert keywords.get("weights_only") == "True", f"{path}: {ast.unparse(node)}"
