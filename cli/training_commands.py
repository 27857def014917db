"""``fakewatch train`` and ``fakewatch evaluate`` (need the ``train`` extra)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(commands: Any) -> None:
    train = commands.add_parser(
        "train", help="train a UNet (or the classifier baseline) into a bundle"
    )
    train.add_argument("config", type=Path, help="training config (YAML)")
    train.add_argument(
        "--fresh", action="store_true", help="ignore an earlier checkpoint in the run folder"
    )
    train.add_argument("--epochs", type=int, default=None, help="override optimisation.epochs")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser("evaluate", help="measure bundles on real and fake media")
    evaluate.add_argument("bundle", type=Path, help="bundle folder to evaluate (and calibrate)")
    evaluate.add_argument("data", type=Path, nargs="*", help="data folders (layout detected)")
    evaluate.add_argument(
        "--held-out-of",
        type=Path,
        default=None,
        metavar="CONFIG",
        help="evaluate on the whole sources/identities a training config held out",
    )
    evaluate.add_argument(
        "--compare", type=Path, nargs="*", default=[], help="more bundles, side by side"
    )
    evaluate.add_argument(
        "--out", type=Path, default=Path("evaluation"), help="report and plots folder"
    )
    evaluate.add_argument(
        "--calibrate",
        action="store_true",
        help="write the suspect/clear thresholds (1%%/5%% FPR on real windows) into BUNDLE",
    )
    evaluate.add_argument("--backend", default="auto")
    evaluate.add_argument(
        "--max-frames", type=int, default=150, help="analysed frames per video at most"
    )
    evaluate.add_argument("--quiet", action="store_true")
    evaluate.set_defaults(handler=cmd_evaluate)


def cmd_train(args: argparse.Namespace) -> int:
    from fakewatch.training.config import load_config
    from fakewatch.training.run import train

    config = load_config(args.config)
    if args.epochs is not None:
        config.optimisation.epochs = args.epochs
    bundle = train(config, resume=not args.fresh, progress=not args.quiet)
    print(f"wrote bundle {bundle}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fakewatch.training.config import load_config
    from fakewatch.training.evaluate import evaluate

    data, holdout = list(args.data), None
    if args.held_out_of is not None:
        recipe = load_config(args.held_out_of)
        data += [source.path for source in recipe.data]
        holdout = (recipe.validation.holdout_sources, recipe.validation.holdout_identities)
    if not data:
        raise ValueError("give data folders or --held-out-of CONFIG")
    report = evaluate(
        [args.bundle, *args.compare],
        data,
        args.out,
        backend=args.backend,
        write_thresholds=args.calibrate,
        max_frames=args.max_frames,
        progress=not args.quiet,
        holdout=holdout,
    )
    for summary in report["bundles"]:
        frame, video = summary["frame"], summary["video"] or {}
        print(
            f"{summary['engine']}: frame AUC {frame['auc']} AP {frame['ap']} "
            f"({frame['n_real']} real / {frame['n_fake']} fake frames); "
            f"video AUC {video.get('auc')} "
            f"({video.get('n_real')} real / {video.get('n_fake')} fake videos); "
            f"pixel IoU {(summary['pixel_pairs'] or {}).get('iou')}; "
            f"examples IoU {summary['examples_mean_iou']}"
        )
        for source, metrics in summary["frame_by_source"].items():
            print(
                f"  {source}: n {metrics['n_real'] + metrics['n_fake']} AUC {metrics['auc']} "
                f"mean score {metrics['mean_score']} FPR@thr {metrics['fpr_at_threshold']}"
            )
        if summary.get("thresholds_written"):
            print("  thresholds written: " + json.dumps(summary["calibrated_thresholds"]))
    print(f"report: {args.out / 'report.json'}")
    return 0
