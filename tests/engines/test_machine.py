"""``fakewatch.engines.machine``: the line that names the machine behind a figure."""

from __future__ import annotations

import platform

from fakewatch.engines.machine import cpu_flags, cpu_info, describe_machine, usable_cores


def test_the_machine_line_names_cpu_cores_memory_and_python() -> None:
    line = describe_machine()
    assert f"{usable_cores()} CPUs" in line and f"Python {platform.python_version()}" in line
    if cpu_info():  # Linux
        assert cpu_info()["model name"] in line and "GiB memory" in line
        assert cpu_flags() and "load average" in describe_machine(load=True)
