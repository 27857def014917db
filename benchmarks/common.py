"""What the benchmark scripts share: the service hosted in this process, readings of CPU
and memory from /proc, and the rate of a large matrix product. Each script imports it as
its sibling (``import common``)."""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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


def scrape(text: str, wanted: dict[str, str | None]) -> dict[tuple[str, str], float]:
    """The samples of ``/metrics`` text named in ``wanted``, summed over every label but
    ``wanted[name]``: ``(name, that label's value or "") -> sum``."""
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                label = wanted[sample.name]
                key = (sample.name, sample.labels[label] if label else "")
                found[key] = found.get(key, 0.0) + sample.value
    return found


@dataclass(frozen=True)
class Analysed:
    """One analysed frame: its stream, presentation time, capture, decision and score."""

    stream: str
    pts_s: float | None
    capture_time: float
    decided: float
    score: float | None = None


class Recorder:
    """Analysed frames, from any thread; as a pipeline observer it records the service's.
    :meth:`take` returns those since the last take."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._frames: list[Analysed] = []

    def add(self, frame: Analysed) -> None:
        with self._lock:
            self._frames.append(frame)

    def __call__(self, state: Any, frame: Any, faces: list[Any]) -> None:
        score = max((face.score for face in faces), default=None)
        self.add(Analysed(state.id, frame.pts_s, frame.capture_time, time.time(), score))

    def take(self) -> list[Analysed]:
        with self._lock:
            taken, self._frames = self._frames, []
        return taken


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


def matmul_rate(dtype: Any, n: int, seconds: float, device: str = "cpu") -> float:
    """The best FLOP/s of ``torch.matmul`` of two n x n matrices of ``dtype``, five at a
    time for ``seconds``: what a tuned library reaches, the yardstick beside a peak."""
    import torch

    a, b = (torch.randn(n, n, device=device).to(dtype) for _ in range(2))
    torch.matmul(a, b)
    best, spent = 0.0, 0.0
    while spent < seconds:
        if device != "cpu":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(5):
            torch.matmul(a, b)
        if device != "cpu":
            torch.cuda.synchronize()
        spent += (elapsed := time.perf_counter() - start)
        best = max(best, 5 * 2 * n**3 / elapsed)
    return best


def int_list(text: str) -> list[int]:
    """``1,8,32`` as sorted positive integers (an argparse type)."""
    values = sorted({int(v) for v in text.split(",") if v.strip()})
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` percentile (0..100); NaN when empty."""
    return float(np.percentile(values, q, method="inverted_cdf")) if values else float("nan")


@dataclass(frozen=True)
class Cell:
    """One engine at one batch size, against the baseline engine and a peak rate."""

    label: str
    precision: str
    batch: int
    crops_per_s: float
    p50_ms: float
    p99_ms: float
    calls: int
    vs_baseline: float | None
    gflops: float | None
    peak_fraction: float | None


def cells(
    results: Sequence[Any],
    engines: Sequence[Any],
    baseline: str,
    flops: float | None,
    peak: Callable[[Any], float | None],
) -> list[Cell]:
    """``fakewatch.engines.bench`` results with their ratio to ``baseline`` at the same
    batch, GFLOP/s (crops/s x ``flops`` a crop) and its fraction of ``peak(engine.info)``
    (GFLOP/s)."""
    info = {e.info.label: e.info for e in engines}
    base = {r.batch: r.crops_per_s for r in results if r.label == baseline}
    found = []
    for r in results:
        gflops = r.crops_per_s * flops / 1e9 if flops else None
        ceiling = peak(info[r.label])
        vs = r.crops_per_s / base[r.batch] if r.batch in base else None
        fraction = gflops / ceiling if gflops and ceiling else None
        found.append(
            Cell(r.label, info[r.label].precision, r.batch, r.crops_per_s, r.p50_ms, r.p99_ms,
                 len(r.latencies_s), vs, gflops, fraction)
        )  # fmt: skip
    return found


def ratio_table(table: Sequence[Cell], head: str, value: Callable[[Cell], str]) -> list[str]:
    """A markdown matrix of ``value(cell)``, an engine a row and a batch size a column."""
    batches = sorted({c.batch for c in table})
    by = {(c.label, c.batch): c for c in table}
    lines = [f"| {head} | " + " | ".join(f"batch {b}" for b in batches) + " |"]
    lines.append("|---|" + "---|" * len(batches))
    for label in dict.fromkeys(c.label for c in table):
        values = [value(by[label, b]) if (label, b) in by else "-" for b in batches]
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    return lines


def num(value: float | None, spec: str) -> str:
    """``value`` formatted by ``spec``, or ``-`` for None."""
    return "-" if value is None else format(value, spec)


def pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
