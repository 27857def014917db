"""Print MODEL_CARD.md's result tables from the reports `fakewatch evaluate` wrote.

Usage: .venv/bin/python scripts/model_card_tables.py [docs/model]

Reads docs/model/{validation,test}/report.json (the shipped model) and
docs/model/ablation/ARM/{validation,test}/report.json (scripts/ablation.sh).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ARMS = {
    "random-nosbi": ("random", "no"),
    "random-sbi": ("random", "yes"),
    "nsfwjs-nosbi": ("nsfwjs MobileNetV2", "no"),
    "nsfwjs-sbi": ("nsfwjs MobileNetV2", "yes"),
    "lite0-nosbi": ("EfficientNet-Lite0", "no"),
    "lite0-sbi": ("EfficientNet-Lite0", "yes"),
    "classifier": ("nsfwjs MobileNetV2, classifier head", "yes"),
}
LIVE_SWAP = "live-swap-dev/live-swap"


def fmt(value: Any, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def with_ci(metrics: dict[str, Any] | None, key: str = "auc") -> str:
    if not metrics or metrics.get(key) is None:
        return "-"
    interval = metrics.get(f"{key}_ci" if key == "auc" else key.replace("_at_threshold", "_ci"))
    if not interval:
        return fmt(metrics[key])
    return f"{fmt(metrics[key])} [{fmt(interval[0])}, {fmt(interval[1])}]"


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def header(*names: str) -> str:
    return row(*names) + "\n" + "|---" * len(names) + "|"


def load(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    bundle: dict[str, Any] = json.loads(path.read_text())["bundles"][0]
    return bundle


def rate(metrics: dict[str, Any] | None, key: str) -> str:
    """A rate at the suspect threshold with its interval, as a percentage."""
    if not metrics or metrics.get(key) is None:
        return "-"
    interval = metrics.get(key.replace("_at_threshold", "_ci"))
    text = f"{100 * metrics[key]:.0f}%"
    if interval:
        text += f" [{100 * interval[0]:.0f}, {100 * interval[1]:.0f}]"
    return text


def windows(bundle: dict[str, Any]) -> str:
    w = bundle.get("real_windows")
    if not w:
        return "-"
    interval = ""
    if w["rate_ci"]:
        low, high = w["rate_ci"]
        interval = f" [{100 * low:.1f}, {100 * high:.1f}]"
    return f"{100 * w['rate']:.1f}%{interval} of {w['n']}"


def pairs(bundle: dict[str, Any]) -> str:
    ranked = bundle.get("pairs_ranked")
    return "-" if not ranked else f"{ranked['fake_above_real']}/{ranked['pairs']}"


def ablation(root: Path) -> str:
    lines = [
        header(
            "encoder start",
            "SBI",
            "val frame AUC",
            "test frame AUC",
            "test video AUC",
            "live-swap video AUC",
            "FF++ pair",
            "real windows flagged",
            "live swaps alerted",
            "swap above its original",
        )
    ]
    for arm, (start, sbi) in ARMS.items():
        validation = load(root / arm / "validation" / "report.json")
        test = load(root / arm / "test" / "report.json")
        if test is None or validation is None:
            lines.append(row(start, sbi, *["not run"] * 8))
            continue
        family = test["video_by_family"].get(LIVE_SWAP)
        ffpp = next((v for v in test["videos"] if v["name"] == "519_515.mp4"), None)
        real = next((v for v in test["videos"] if v["name"] == "519.mp4"), None)
        ffpp_text = "-" if not ffpp or not real else f"{fmt(ffpp['score'])} vs {fmt(real['score'])}"
        lines.append(
            row(
                start,
                sbi,
                with_ci(validation["frame"]),
                with_ci(test["frame"]),
                with_ci(test["video"]),
                with_ci(family),
                ffpp_text,
                windows(test),
                rate(family, "tpr_at_threshold"),
                pairs(test),
            )
        )
    return "\n".join(lines)


def summary(name: str, bundle: dict[str, Any]) -> str:
    lines = [
        header(
            "split",
            "frames real/fake",
            "frame AUC",
            "videos real/fake",
            "video AUC",
            "real windows flagged",
            "fake videos alerted",
            "real videos alerted",
        ),
        row(
            name,
            f"{bundle['frame']['n_real']}/{bundle['frame']['n_fake']}",
            with_ci(bundle["frame"]),
            f"{bundle['video']['n_real']}/{bundle['video']['n_fake']}",
            with_ci(bundle["video"]),
            windows(bundle),
            rate(bundle["video"], "tpr_at_threshold"),
            rate(bundle["video"], "fpr_at_threshold"),
        ),
    ]
    return "\n".join(lines)


def families(bundle: dict[str, Any]) -> str:
    lines = [header("fake family (against every real video)", "videos", "video AUC", "frame AUC")]
    for family, video in bundle["video_by_family"].items():
        frame = bundle["frame_by_family"].get(family)
        lines.append(
            row(family, f"{video['n_real']}/{video['n_fake']}", with_ci(video), with_ci(frame))
        )
    return "\n".join(lines)


def sources(bundle: dict[str, Any]) -> str:
    threshold = bundle["threshold"]
    lines = [
        header("source", "kind", "frames", "mean score", f"frames at or above {threshold:.3f}")
    ]
    for source, m in bundle["frame_by_source"].items():
        kind = "fake" if m["n_fake"] else "real"
        key = "tpr_at_threshold" if kind == "fake" else "fpr_at_threshold"
        lines.append(
            row(source, kind, m["n_real"] + m["n_fake"], fmt(m["mean_score"], 3), rate(m, key))
        )
    return "\n".join(lines)


def videos(bundle: dict[str, Any]) -> str:
    lines = [header("video", "source", "label", "frames", "video score")]
    for v in bundle["videos"]:
        label = "fake" if v["label"] else "real"
        lines.append(row(v["name"], v["source"], label, v["frames"], fmt(v["score"], 3)))
    return "\n".join(lines)


def stream_study(bundle: dict[str, Any]) -> str:
    study = bundle.get("stream_study")
    if not study:
        return "(no stream study)"
    lines = [
        header(
            "rule",
            "real windows alerting",
            "real streams alerting",
            "switched streams alerted after / before the switch",
            "windows to alert (median)",
            "fake-from-the-start streams alerted",
        )
    ]
    for rule in ("absolute", "baseline"):
        s = study[rule]
        lines.append(
            row(
                rule,
                f"{100 * (s['real_windows_alerting'] or 0):.1f}% of {s['real_windows']}",
                f"{s['real_streams_alerting']}/{s['real_streams']}",
                f"{s['switched_alerted_after']} / {s['switched_alerted_before']} of "
                f"{s['switched_streams']}",
                fmt(s["median_windows_to_alert"], 1),
                f"{s['fake_streams_alerted']}/{s['fake_streams']}",
            )
        )
    return "\n".join(lines)


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("docs/model")
    print("## Ablation (test split; validation frame AUC for reference)\n")
    print(ablation(root / "ablation"))
    for name in ("validation", "test"):
        bundle = load(root / name / "report.json")
        if bundle is None:
            continue
        print(f"\n## Shipped model, {name} split (suspect {bundle['threshold']:.3f})\n")
        print(summary(name, bundle))
        print()
        print(families(bundle))
        print()
        print(sources(bundle))
        print()
        print(stream_study(bundle))
        print()
        print(videos(bundle))


if __name__ == "__main__":
    main()
