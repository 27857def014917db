"""Print MODEL_CARD.md's result tables from the reports `fakewatch evaluate` wrote.

Usage: .venv/bin/python scripts/model_card_tables.py [docs/model]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def fmt(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def header(*names: str) -> str:
    return row(*names) + "\n" + "|---" * len(names) + "|"


def overall(name: str, report: dict[str, Any]) -> list[str]:
    rows = []
    for bundle in report["bundles"]:
        frame, video, pixel = bundle["frame"], bundle["video"] or {}, bundle["pixel_pairs"] or {}
        rows.append(
            row(
                name,
                bundle["engine"],
                f"{frame['n_real']}/{frame['n_fake']}",
                fmt(frame["auc"]),
                fmt(frame["ap"]),
                fmt(frame["tpr_at_fpr"].get("0.05")),
                f"{video.get('n_real', '-')}/{video.get('n_fake', '-')}",
                fmt(video.get("auc")),
                fmt(pixel.get("iou")),
            )
        )
    return rows


def sources(name: str, report: dict[str, Any]) -> list[str]:
    rows = []
    for bundle in report["bundles"]:
        threshold = bundle["threshold"]
        for source, m in bundle["frame_by_source"].items():
            kind = "fake" if m["n_fake"] else "real"
            rate = m["tpr_at_threshold"] if kind == "fake" else m["fpr_at_threshold"]
            rows.append(
                f"| {name} | {bundle['engine']} | {source} | {kind} | {m['n_real'] + m['n_fake']} "
                f"| {fmt(m['mean_score'])} | {fmt(rate)} (at {threshold:.3f}) |"
            )
    return rows


def videos(name: str, report: dict[str, Any]) -> list[str]:
    rows = []
    for bundle in report["bundles"]:
        for v in bundle["videos"]:
            label = "fake" if v["label"] else "real"
            rows.append(row(name, bundle["engine"], v["name"], label, v["frames"], fmt(v["score"])))
    return rows


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/model")
    reports = {p.parent.name: json.loads(p.read_text()) for p in sorted(root.glob("*/report.json"))}
    print(
        header(
            "data",
            "model",
            "frames real/fake",
            "frame AUC",
            "frame AP",
            "TPR at 5% FPR",
            "videos real/fake",
            "video AUC",
            "pixel IoU",
        )
    )
    for name, report in reports.items():
        print("\n".join(overall(name, report)))
    print("\n| data | model | source | kind | frames | mean score | flagged at suspect |")
    print("|---|---|---|---|---|---|---|")
    for name, report in reports.items():
        print("\n".join(sources(name, report)))
    print("\n| data | model | video | kind | frames | video score |")
    print("|---|---|---|---|---|---|")
    for name, report in reports.items():
        print("\n".join(videos(name, report)))
    examples = reports.get("ffpp-examples")
    if examples:
        print("\n| example | manipulated | score | pixel IoU | Dice |")
        print("|---|---|---|---|---|")
        for e in examples["bundles"][0]["examples"]:
            print(
                row(
                    e["image"],
                    e.get("manipulated"),
                    *(fmt(e.get(k)) for k in ("score", "iou", "dice")),
                )
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
