"""Imports flow one way, and nothing in the package can unpickle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FORBIDDEN = {
    "engines": ("fakewatch.training", "fakewatch.stream", "fakewatch.cluster", "fakewatch.cli"),
    "training": ("fakewatch.stream", "fakewatch.cluster"),
    "stream": ("fakewatch.training", "fakewatch.cluster", "fakewatch.cli"),
    "cluster": ("fakewatch.training", "fakewatch.cli"),
}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def _sources(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_imports_flow_one_way(folder: str) -> None:
    for path in _sources(folder):
        for name in _imports(path):
            assert not name.startswith(FORBIDDEN[folder]), f"{path} imports {name}"


def test_no_pickle_anywhere_in_the_package() -> None:
    # (Ray pickles what the cluster's processes pass each other, inside the cluster's own
    # trust boundary; fakewatch's own code unpickles nothing, there either.)
    for folder in ("engines", "training", "stream", "cluster", "cli"):
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
