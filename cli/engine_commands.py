"""``fakewatch engine ...``: create, build, inspect and benchmark engine bundles."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fakewatch.engines.defaults import default_bundle_path


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v)
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from error
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def register(commands: Any) -> None:
    engine = commands.add_parser(
        "engine", help="create, build, inspect and benchmark engine bundles"
    )
    sub = engine.add_subparsers(dest="engine_command", required=True, metavar="ACTION")

    init = sub.add_parser("init", help="write an untrained bundle (for benchmarks and tests)")
    init.add_argument("bundle", type=Path, help="folder to create")
    init.add_argument("--architecture", default="Unet")
    init.add_argument("--encoder", default="mobilenet_v2")
    init.add_argument("--size", type=int, default=224, help="crop side in pixels")
    init.add_argument("--decoder-channels", type=_ints, default=(128, 64, 32, 16, 16))
    init.add_argument("--seed", type=int, default=0)
    init.set_defaults(handler=cmd_init)

    build = sub.add_parser("build", help="export or compile a bundle for a runtime")
    build.add_argument("bundle", type=Path)
    build.add_argument("--backend", required=True, choices=["onnx", "openvino", "tensorrt"])
    build.add_argument(
        "--precision", default=None, help="openvino: f32|bf16|int8; tensorrt: fp16|f32"
    )
    build.add_argument(
        "--calibration",
        type=Path,
        nargs="+",
        default=[],
        help="images/videos of real faces (two or more files): the even-numbered ones "
        "calibrate int8, the others are held apart for the parity check",
    )
    build.add_argument(
        "--tolerance", type=float, default=0.03, help="largest frame-score change allowed vs f32"
    )
    build.add_argument(
        "--mean-tolerance",
        type=float,
        default=None,
        help="largest mean mask-probability change allowed vs f32 (default 0.02)",
    )
    build.add_argument("--max-batch", type=int, default=64, help="tensorrt: largest batch")
    build.add_argument("--device", default="cuda", help="tensorrt: cuda or cuda:N")
    build.set_defaults(handler=cmd_build)

    info = sub.add_parser("info", help="verify a bundle and print its manifest summary")
    info.add_argument("bundle", type=Path, nargs="?", default=None)
    info.set_defaults(handler=cmd_info)

    bench = sub.add_parser("bench", help="crops/s and latency of every runtime vs torch eager")
    bench.add_argument("bundle", type=Path, nargs="?", default=None)
    bench.add_argument("--batch", type=_ints, default=(1, 8), help="batch sizes, e.g. 1,8,32")
    bench.add_argument("--seconds", type=float, default=3.0, help="time per engine and batch")
    bench.add_argument("--threads", type=int, default=None, help="threads per engine")
    bench.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    bench.set_defaults(handler=cmd_bench)


def cmd_init(args: argparse.Namespace) -> int:
    import torch

    from fakewatch.engines.bundle import Provenance
    from fakewatch.engines.export import write_bundle
    from fakewatch.engines.model import build_model
    from fakewatch.engines.spec import ModelSpec

    spec = ModelSpec(
        architecture=args.architecture,
        encoder=args.encoder,
        input_size=args.size,
        decoder_channels=args.decoder_channels,
    )
    torch.manual_seed(args.seed)
    network = build_model(spec).eval()
    provenance = Provenance(recipe=f"untrained: random initialisation, seed {args.seed}")
    bundle = write_bundle(
        args.bundle, network, spec, name=f"untrained-{spec.encoder}", provenance=provenance
    )
    print(f"wrote untrained bundle {bundle.folder} (weights sha256 {bundle.model_sha256[:12]})")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from fakewatch.engines.bundle import EngineBundle

    bundle = EngineBundle.load(args.bundle)
    if args.backend == "onnx":
        return _rebuild_onnx(bundle)
    from fakewatch.engines.precision import DEFAULT_MEAN_TOLERANCE

    limits = (args.tolerance, args.mean_tolerance or DEFAULT_MEAN_TOLERANCE)
    if args.backend == "tensorrt":
        from fakewatch.engines.runtimes.tensorrt_engine import compile_tensorrt

        precision = args.precision or "fp16"
        artifact = compile_tensorrt(bundle, precision, args.max_batch, args.device)
        print(f"compiled TensorRT engine {artifact.path} for {artifact.notes['device']}")
        if precision == "f32":
            return 0
        if not args.calibration:
            print(
                f"no parity check: engine.precision auto keeps f32 until `fakewatch engine "
                f"build {bundle.folder} --backend tensorrt --calibration DIR` records one"
            )
            return 0
        return _check_tensorrt(bundle, args.device, precision, args.calibration, limits)
    return _build_openvino(bundle, args.precision or "f32", args.calibration, limits)


def _rebuild_onnx(bundle: Any) -> int:
    from fakewatch.engines.bundle import make_artifact
    from fakewatch.engines.export import ONNX_FILE, ONNX_OPSET, export_onnx, load_network

    half = bundle.manifest.artifacts["weights"].notes.get("stored") == "float16"
    export_onnx(load_network(bundle), bundle.spec, bundle.folder / ONNX_FILE, half)
    stored = "float16" if half else "float32"
    bundle.manifest.artifacts["onnx"] = make_artifact(
        bundle.folder, ONNX_FILE, opset=str(ONNX_OPSET), stored=stored
    )
    bundle.manifest.artifacts.pop("onnx_int8", None)
    bundle.manifest.precision_checks = []
    bundle.save_manifest()
    print(f"exported {bundle.folder / ONNX_FILE}; earlier precision checks were cleared")
    return 0


def _build_openvino(
    bundle: Any, precision: str, calibration: list[Path], limits: tuple[float, float]
) -> int:
    from fakewatch.engines.auto_precision import measured_here
    from fakewatch.engines.faces import default_face_detector
    from fakewatch.engines.precision import calibration_and_check_crops, quantize_int8
    from fakewatch.engines.runtimes.openvino_engine import OpenVinoEngine

    reference = OpenVinoEngine(bundle, "cpu", "f32")
    if precision == "f32":
        reference.warmup()
        print(f"openvino/f32 compiles and runs: {reference.info.detail}")
        return 0
    if not calibration:
        raise ValueError(
            f"--precision {precision} needs --calibration with images or videos of real faces"
        )
    calibrate, held = calibration_and_check_crops(calibration, bundle, default_face_detector())
    if precision == "int8":
        quantize_int8(bundle, calibrate.crops)
    candidate = OpenVinoEngine(bundle, "cpu", precision, require_check=False)
    return _record(bundle, reference, candidate, held, limits, measured_here("openvino"))


def _check_tensorrt(
    bundle: Any, device: str, precision: str, media: list[Path], limits: tuple[float, float]
) -> int:
    from fakewatch.engines.auto_precision import measured_here
    from fakewatch.engines.faces import default_face_detector
    from fakewatch.engines.precision import calibration_and_check_crops
    from fakewatch.engines.runtimes import open_engine
    from fakewatch.engines.runtimes.devices import parse_device

    _, held = calibration_and_check_crops(media, bundle, default_face_detector())
    reference = open_engine(bundle, "torch", device, "f32")
    candidate = open_engine(bundle, "tensorrt", device, precision)
    here = measured_here("tensorrt", "cuda", parse_device(device).gpu_index)
    return _record(bundle, reference, candidate, held, limits, here)


def _record(
    bundle: Any,
    reference: Any,
    candidate: Any,
    held: Any,
    limits: tuple[float, float],
    here: Any,
) -> int:
    from fakewatch.engines.precision import compare, record_check

    tolerance, mean_tolerance = limits
    check = compare(
        reference,
        candidate,
        held.crops,
        tolerance,
        held.description,
        mean_tolerance=mean_tolerance,
        check_set=held,
        measured_on=here,
    )
    record_check(bundle, check)
    verdict = "passed" if check.passed else "FAILED (engine.precision auto keeps f32)"
    print(
        f"{candidate.info.label} vs f32 on {check.crops} held-out crops: largest mask "
        f"difference {check.max_abs_diff:.4f}, mean {check.mean_abs_diff:.4f} (limit "
        f"{mean_tolerance}), largest score difference {check.score_max_abs_diff:.4f} "
        f"(limit {tolerance}): {verdict}"
    )
    return 0 if check.passed else 1


def cmd_info(args: argparse.Namespace) -> int:
    from fakewatch.engines.bundle import EngineBundle

    bundle = EngineBundle.load(args.bundle or default_bundle_path())
    m = bundle.manifest
    print(f"bundle   {bundle.folder}  (all {len(m.artifacts)} files verified)")
    print(f"name     {m.name}")
    print(
        f"model    {m.spec.architecture}/{m.spec.encoder} {m.spec.input_size}px "
        f"decoder {list(m.spec.decoder_channels)} margin {m.spec.crop_margin}"
    )
    print(f"weights  sha256 {bundle.model_sha256}")
    for role, artifact in m.artifacts.items():
        notes = " ".join(f"{k}={v}" for k, v in artifact.notes.items())
        print(f"  {role:10} {artifact.path} {artifact.bytes / 1e6:.1f} MB {notes}")
    for name, threshold in m.thresholds.items():
        print(f"threshold {name} = {threshold.value:.4f} (FPR {threshold.false_positive_rate})")
    for check in m.precision_checks:
        where = check.measured_on.cpu if check.measured_on else "an unrecorded machine"
        print(
            f"precision {check.backend}/{check.device}/{check.precision}: score diff "
            f"{check.score_max_abs_diff:.4f} (limit {check.tolerance}), mean mask diff "
            f"{check.mean_abs_diff:.4f} (limit {check.mean_tolerance}) on {check.crops} "
            f"crops, {where}: {'passed' if check.passed else 'failed'}"
        )
    print(f"auto     {_auto_summary(bundle)}")
    sources = ", ".join(m.provenance.data) or "-"
    print(f"created  {m.provenance.created:%Y-%m-%d %H:%M} from {sources}")
    for name, value in m.provenance.metrics.items():
        print(f"metric   {name} = {value}")
    return 0


def _auto_summary(bundle: Any) -> str:
    """What ``engine.precision: auto`` picks on this machine's CPU, and why."""
    from fakewatch.engines.auto_precision import choose_precision, measured_here

    choice = choose_precision(bundle.manifest, "openvino", "cpu", measured_here("openvino"))
    return f"openvino/cpu picks {choice.precision}: {choice.reason}"


def cmd_bench(args: argparse.Namespace) -> int:
    from fakewatch.engines.bench import bench, flops_per_crop, format_table
    from fakewatch.engines.bundle import EngineBundle
    from fakewatch.engines.machine import describe_machine
    from fakewatch.engines.runtimes import BackendUnavailable, engine_options, open_engine

    bundle = EngineBundle.load(args.bundle or default_bundle_path())
    engines = []
    for option in engine_options():
        if option.device != args.device and not (
            args.device == "cuda" and option.device == "tensorrt"
        ):
            continue
        try:
            engines.append(
                open_engine(bundle, option.backend, option.device, option.precision, args.threads)
            )
        except BackendUnavailable as error:
            print(f"skipped {option.label}: {error}")
    baseline = f"torch/{args.device}/f32"
    if baseline not in {e.info.label for e in engines}:
        print(f"note: {baseline} is unavailable, so ratios are missing")
    print(f"machine: {describe_machine()}")
    for engine in engines:
        print(f"  {engine.info.label}: {engine.info.detail}")
    results = bench(engines, args.batch, args.seconds)
    print()
    print(format_table(results, baseline, flops_per_crop(bundle.spec)))
    return 0
