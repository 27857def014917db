"""Two bundles' engines timed side by side in one run, as MODEL_CARD.md reports them.

Usage: .venv/bin/python scripts/bundle_speed.py OLD_BUNDLE NEW_BUNDLE
           [--backend openvino] [--precision bf16 | OLD,NEW] [--batch 1,8] [--seconds 6]

Both engines take turns on the same crops (engines.bench.bench), so frequency scaling
and other load on the machine fall on both alike; the ratio is what to compare across
machines, not the crops/s. ``--precision bf16,f32`` runs the old bundle in bf16 and the
new one in f32: each at the precision its own parity check allows.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from fakewatch.engines.bench import bench, format_table
from fakewatch.engines.bundle import EngineBundle
from fakewatch.engines.machine import cpu_name
from fakewatch.engines.runtimes import open_engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--precision", default="bf16", help="one for both, or OLD,NEW")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    precisions = args.precision.split(",")
    old_precision, new_precision = precisions[0], precisions[-1]
    engines = []
    for name, folder, precision in (
        ("old", args.old, old_precision),
        ("new", args.new, new_precision),
    ):
        bundle = EngineBundle.load(folder)
        engine = open_engine(bundle, args.backend, "cpu", precision, threads=args.threads)
        label = f"{name} {bundle.spec.encoder}"
        engine.info = dataclasses.replace(engine.info, backend=label)
        engines.append(engine)
    batches = tuple(int(b) for b in args.batch.split(","))
    results = bench(engines, batches, seconds_per_engine=args.seconds)
    print(f"{cpu_name()}, {args.backend}; ratios against the old bundle")
    table = format_table(results, baseline=engines[0].info.label, flops_per_crop=None)
    print(table.replace("vs torch", "vs old"))


if __name__ == "__main__":
    main()
