"""Cheaper networks against the shipped default, timed side by side in one run.

    .venv/bin/python benchmarks/frontier.py DEFAULT_BUNDLE BUNDLE ... [--backend openvino]
        [--batch 1,8] [--seconds 6] [--rounds 3] [--json FILE]

The first bundle is the baseline. The bundles may take crops of different sizes, so each
is timed by ``fakewatch.engines.bench.bench`` (what ``fakewatch engine bench`` runs) on
crops of its own size, in ``--rounds`` interleaved turns (default, A, B, default, A, B,
...), and the turns are pooled: load from other processes falls on every bundle alike,
and the ratio to the baseline is the figure to compare across machines. GFLOP per crop is
counted by torch (``engines.bench.flops_per_crop``). The markdown table goes to stdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fakewatch.engines.bench import BenchResult, bench, flops_per_crop
from fakewatch.engines.bundle import EngineBundle
from fakewatch.engines.machine import cpu_name, describe_machine
from fakewatch.engines.runtimes import open_engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", type=Path, nargs="+", help="the baseline first")
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--seconds", type=float, default=6.0, help="per bundle and batch")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    batches = tuple(int(b) for b in args.batch.split(","))

    rows: list[dict[str, Any]] = []
    engines = []
    for folder in args.bundles:
        bundle = EngineBundle.load(folder)
        engines.append(open_engine(bundle, args.backend, "cpu", "f32", threads=args.threads))
        flops = flops_per_crop(bundle.spec)
        rows.append(
            {
                "bundle": str(folder),
                "input_size": bundle.spec.input_size,
                "mask_stride": bundle.spec.mask_stride,
                "gflop": None if flops is None else flops / 1e9,
                "engine": engines[-1].info.label,
            }
        )
    pooled: list[dict[int, BenchResult]] = [{} for _ in engines]
    for _ in range(args.rounds):
        for engine, results in zip(engines, pooled, strict=True):
            for result in bench([engine], batches, args.seconds / args.rounds, blocks=1):
                kept = results.setdefault(result.batch, BenchResult(result.label, result.batch))
                kept.latencies_s.extend(result.latencies_s)
    for row, results in zip(rows, pooled, strict=True):
        row["crops_per_s"] = {b: results[b].crops_per_s for b in batches}
        row["p50_ms"] = {b: results[b].p50_ms for b in batches}

    base = rows[0]["crops_per_s"]
    print(describe_machine(load=True))
    print(f"{args.backend} f32, ratios against {args.bundles[0]}\n")
    head = ["bundle", "input px", "mask stride", "GFLOP/crop"]
    head += [f"batch {b} crops/s" for b in batches] + [f"x default at batch {b}" for b in batches]
    print("| " + " | ".join(head) + " |")
    print("|---" * len(head) + "|")
    for row in rows:
        row["ratio"] = {b: row["crops_per_s"][b] / base[b] for b in batches}
        cells = [row["bundle"], str(row["input_size"]), str(row["mask_stride"])]
        cells.append("-" if row["gflop"] is None else f"{row['gflop']:.2f}")
        cells += [f"{row['crops_per_s'][b]:.1f}" for b in batches]
        cells += [f"{row['ratio'][b]:.2f}" for b in batches]
        print("| " + " | ".join(cells) + " |")
    if args.json:
        report = {"cpu": cpu_name(), "machine": describe_machine(load=True), "bundles": rows}
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
