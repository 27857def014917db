"""Print BENCHMARKS.md's network frontier table from the reports scripts/frontier.sh wrote.

Usage: .venv/bin/python scripts/frontier_table.py [docs/model]

Reads the shipped model's docs/model/{validation,test}/report.json, each variant's
docs/model/frontier/ARM/{validation,test}/report.json and the timing in
docs/model/frontier/bench.json. A variant is kept when its test frame AUC and its test
video AUC each drop by less than 0.01 against the default's.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ARMS = {
    "default": "default (shipped)",
    "stride2": "decoder stops at 1/2, logits upsampled",
    "px192": "192 px input",
    "px160": "160 px input",
}
DEFAULT_BUNDLE = "engines/default_bundle"
TOLERANCE = 0.01


def load(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    bundle: dict[str, Any] = json.loads(path.read_text())["bundles"][0]
    return bundle


def with_ci(metrics: dict[str, Any]) -> str:
    if metrics.get("auc") is None:
        return "-"
    low, high = metrics.get("auc_ci") or (None, None)
    text = f"{metrics['auc']:.3f}"
    return text if low is None else f"{text} [{low:.2f}, {high:.2f}]"


def speed(bench: dict[str, Any] | None, arm: str) -> tuple[str, str, str]:
    """GFLOP per crop, crops/s at batch 8 and its ratio to the default's."""
    if bench is None:
        return "-", "-", "-"
    wanted = DEFAULT_BUNDLE if arm == "default" else f"runs/frontier/{arm}/bundle"
    row = next((r for r in bench["bundles"] if r["bundle"] == wanted), None)
    if row is None:
        return "-", "-", "-"
    gflop = "-" if row["gflop"] is None else f"{row['gflop']:.2f}"
    return gflop, f"{row['crops_per_s']['8']:.1f}", f"{row['ratio']['8']:.2f}"


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/model")
    bench_path = root / "frontier" / "bench.json"
    bench = json.loads(bench_path.read_text()) if bench_path.is_file() else None
    reference = load(root / "test" / "report.json")
    assert reference is not None, f"no report of the shipped model in {root}/test"
    names = [
        "variant",
        "input px",
        "GFLOP/crop",
        "crops/s, batch 8",
        "x default",
        "val frame AUC",
        "val video AUC",
        "test frame AUC",
        "test video AUC",
        "kept",
    ]
    print("| " + " | ".join(names) + " |")
    print("|---" * len(names) + "|")
    for arm, label in ARMS.items():
        folder = root if arm == "default" else root / "frontier" / arm
        validation = load(folder / "validation" / "report.json")
        test = load(folder / "test" / "report.json")
        gflop, rate, ratio = speed(bench, arm)
        size = "224" if arm in ("default", "stride2") else arm.removeprefix("px")
        if validation is None or test is None:
            cells = [label, size, gflop, rate, ratio, *["not run"] * 4, "-"]
        else:
            drops = [reference[k]["auc"] - test[k]["auc"] for k in ("frame", "video")]
            kept = "shipped" if arm == "default" else ("yes" if max(drops) < TOLERANCE else "no")
            cells = [
                label,
                size,
                gflop,
                rate,
                ratio,
                with_ci(validation["frame"]),
                with_ci(validation["video"]),
                with_ci(test["frame"]),
                with_ci(test["video"]),
                kept,
            ]
        print("| " + " | ".join(cells) + " |")
    if bench is not None:
        print(f"\n{bench['machine']}")


if __name__ == "__main__":
    main()
