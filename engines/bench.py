"""Engine throughput and latency, measured side by side against torch eager.

Every engine runs the same crops in interleaved turns (engine A, B, C, A, B, C, ...) so
that frequency scaling or a noisy neighbour affects them alike, and each figure is
reported as a ratio to torch eager on the same model in the same run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from fakewatch.engines.runtimes.base import Engine


@dataclass
class BenchResult:
    """Latencies of one engine at one batch size."""

    label: str
    batch: int
    latencies_s: list[float] = field(default_factory=list)

    @property
    def p50_ms(self) -> float:
        return float(np.percentile(self.latencies_s, 50) * 1000)

    @property
    def p99_ms(self) -> float:
        return float(np.percentile(self.latencies_s, 99) * 1000)

    @property
    def crops_per_s(self) -> float:
        return self.batch * len(self.latencies_s) / sum(self.latencies_s)


def sample_crops(size: int, count: int, seed: int = 0) -> np.ndarray:
    """Smooth random images: closer to faces than white noise, identical for every engine."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (count, 8, 8, 3), dtype=np.uint8)
    return np.stack([cv2.resize(img, (size, size), interpolation=cv2.INTER_CUBIC) for img in small])


def bench(
    engines: list[Engine],
    batch_sizes: tuple[int, ...] = (1, 8),
    seconds_per_engine: float = 3.0,
    blocks: int = 3,
) -> list[BenchResult]:
    """Measure each engine at each batch size for about ``seconds_per_engine`` each.

    The time is split into ``blocks`` turns per engine (A, B, C, A, B, C, ...): turns
    spread slow drifts evenly over the engines, while a turn of several calls keeps one
    runtime's idle worker threads from disturbing the next runtime's first calls.
    """
    results: list[BenchResult] = []
    if not engines:
        return results
    size = engines[0].size
    turn = seconds_per_engine / blocks
    for batch in batch_sizes:
        crops = sample_crops(size, batch)
        for engine in engines:
            engine.infer(crops)  # warm-up (compilation, allocation) excluded
        row = {engine.info.label: BenchResult(engine.info.label, batch) for engine in engines}
        for _ in range(blocks):
            for engine in engines:
                latencies = row[engine.info.label].latencies_s
                spent, calls = 0.0, 0
                while spent < turn or calls < 2:
                    start = time.perf_counter()
                    engine.infer(crops)
                    elapsed = time.perf_counter() - start
                    latencies.append(elapsed)
                    spent += elapsed
                    calls += 1
        results.extend(row.values())
    return results


def format_table(results: list[BenchResult], baseline: str, flops_per_crop: float | None) -> str:
    """A markdown table; ratios are against ``baseline`` at the same batch size."""
    base = {r.batch: r for r in results if r.label == baseline}
    header = "| engine | batch | crops/s | p50 ms | p99 ms | x crops/s vs torch | x p50 vs torch |"
    if flops_per_crop:
        header += " GFLOP/s |"
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for r in results:
        ref = base.get(r.batch)
        speed = f"{r.crops_per_s / ref.crops_per_s:.2f}" if ref else "-"
        latency = f"{ref.p50_ms / r.p50_ms:.2f}" if ref else "-"
        line = (
            f"| {r.label} | {r.batch} | {r.crops_per_s:.1f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} "
            f"| {speed} | {latency} |"
        )
        if flops_per_crop:
            line += f" {r.crops_per_s * flops_per_crop / 1e9:.0f} |"
        lines.append(line)
    return "\n".join(lines)


def flops_per_crop(bundle_spec: object) -> float | None:
    """Multiply-adds x 2 of one forward pass, counted by torch (None without torch)."""
    try:
        import torch
        from torch.utils.flop_counter import FlopCounterMode

        from fakewatch.engines.model import build_model
    except ImportError:
        return None
    from fakewatch.engines.spec import ModelSpec

    assert isinstance(bundle_spec, ModelSpec)
    network = build_model(bundle_spec).eval()
    x = torch.zeros(1, 3, bundle_spec.input_size, bundle_spec.input_size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        network(x)
    return float(counter.get_total_flops())
