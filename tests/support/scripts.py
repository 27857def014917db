"""The benchmark scripts, loaded from their files for the tests that check them.

``benchmarks/`` is not a package the tests import: each script is a program. Its own
tests load it from its file, as a module of its own, and call what they check.
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests.support.peers import REPO

BENCHMARKS = REPO / "benchmarks"


def benchmark_script(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module (loaded once per test session)."""
    module_name = f"fakewatch_benchmark_{name}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module
