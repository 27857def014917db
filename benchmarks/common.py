"""What the benchmark scripts share: the machine's description."""

from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def machine(load: bool = False) -> str:
    """CPU model, the CPUs this process may use, memory, Python; the load average too
    when ``load``."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, IndexError, ValueError):
        kib = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
        memory = f", {kib / 1024**2:.1f} GiB memory"
    text = (
        f"{model}, {len(os.sched_getaffinity(0))} CPUs{memory}, Python {platform.python_version()}"
    )
    if load:
        text += ", load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    return text
