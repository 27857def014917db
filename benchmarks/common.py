"""What the benchmark scripts share: the service hosted in this process, and readings of
CPU and memory from /proc. Each script imports it as its sibling (``import common``)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"
DEMO_CACHE = ROOT / ".cache" / "demo"


@contextlib.asynccontextmanager
async def hosted(state: Path | None = None, **overrides: Any) -> AsyncIterator[tuple[Any, str]]:
    """``fakewatch serve`` in this process (``open_service`` and ``running``, as the
    command builds them) on a free port, without a token, local files allowed, its state
    under ``state`` (a temporary folder by default); ``overrides`` are dotted settings.
    Yields the service and the API's URL."""
    from fakewatch.stream.config import load_config
    from fakewatch.stream.host import open_service, running

    with contextlib.ExitStack() as stack:
        if state is None:
            state = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fakewatch-")))
        settings = {
            "server.port": 0,
            "server.token": None,
            "sources.allow_local_files": True,
            "evidence.folder": str(state / "evidence"),
            "webhooks.outbox": str(state / "outbox.sqlite3"),
            **overrides,
        }
        service = open_service(load_config(environ={}, overrides=settings))
        async with running(service) as (_, base):
            yield service, base


def _stat(pid: int | str) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def cpu_seconds(pid: int | str = "self") -> float:
    """User + system CPU seconds of a process (all its threads)."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int | str = "self") -> int:
    """A process's resident set size."""
    return int(_stat(pid)[21]) * os.sysconf("SC_PAGE_SIZE")


def machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values[:8]) - values[3] - values[4]) / tick, sum(values[:8]) / tick
