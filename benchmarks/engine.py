"""Segmentation engines against this CPU's measured peak and torch eager, and what each
reduced precision costs in accuracy.

    .venv/bin/python benchmarks/engine.py [--batch 1,8,32] [--seconds 3] [--no-accuracy]
        [--calibration PATH ...] [--out FILE]

The markdown report goes to stdout (and ``--out``), progress to stderr: the machine; the
peak rate of each precision, measured by ``peak.c`` (compiled here with ``cc -O2
-march=native``, one pinned thread per core) beside ``torch.matmul``; every CPU engine
(torch eager f32, the baseline; onnxruntime f32; openvino f32, bf16, int8) timed by
``fakewatch.engines.bench`` in interleaved turns, as ratios to torch eager and fractions
of the peak of its precision (every precision is timed, whatever its parity: the int8
twin is calibrated in a copy of the bundle when it has none, and the bundle's recorded
checks are listed beside the timings); openvino's per-layer profile; the
accuracy cost of bf16 and int8 on real face crops (``engines.precision.compare``) and on
the recipe's validation split (``training.evaluate``, needs ``../shared/data``); the
ratios last. int8 calibration media: ``--calibration``, else the real faces the recipe
does not hold out, else the demo clip.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common
import numpy as np
from common import num, pct

ROOT = Path(__file__).resolve().parent.parent
PEAK_SOURCE = Path(__file__).with_name("peak.c")
SHARED_DATA = ROOT.parent / "shared" / "data"
BASELINE, REFERENCE = "torch/cpu/f32", "openvino/cpu/f32"
TARGET_FRACTION = 0.70
CPU_OPTIONS = (
    ("torch", "f32"),
    ("onnxruntime", "f32"),
    ("openvino", "f32"),
    ("openvino", "bf16"),
    ("openvino", "int8"),
)
FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16")
PRECISIONS = ("f32", "bf16", "int8")
LIBRARIES = ("numpy", "torch", "onnxruntime", "openvino")


def log(message: str) -> None:
    """Progress, kept off stdout (which carries the report)."""
    print(message, file=sys.stderr, flush=True)


def machine_section(compiler: str | None) -> list[str]:
    from fakewatch.engines.defaults import installed_version
    from fakewatch.engines.machine import cpu_flags, cpu_info, describe_machine

    info, flags = cpu_info(), " ".join(f for f in FLAGS if f in cpu_flags())
    versions = [f"{m.__name__} {m.__version__}" for m in map(__import__, LIBRARIES)]
    return [
        "## Machine",
        "",
        f"- {describe_machine(load=True)}; family {info.get('cpu family')} model "
        f"{info.get('model')}; {flags or 'no AVX2'}",
        f"- {', '.join(versions)}, fakewatch {installed_version()}; C compiler: {compiler}",
    ]


@dataclass(frozen=True)
class Peak:
    """The peak rate of one precision on all cores (GFLOP/s; int8: 10^9 operations/s)."""

    precision: str
    gflops: float
    kernel: str
    ops_per_instruction: int
    sustained_gflops: float
    cores: int
    ghz: float | None  # each core's clock while measured

    @property
    def per_cycle(self) -> float | None:
        """Operations per cycle and core."""
        return self.gflops / (self.cores * self.ghz) if self.cores and self.ghz else None


def find_compiler() -> str | None:
    """``$CC``, else ``cc``, ``gcc`` or ``clang`` on the PATH."""
    names = (os.environ.get("CC"), "cc", "gcc", "clang")
    return next((path for name in names if name and (path := shutil.which(name))), None)


def measure_peak(seconds: float, compiler: str) -> dict[str, Peak]:
    """Compile :data:`PEAK_SOURCE` and run it on one pinned thread per usable core."""
    from fakewatch.engines.machine import usable_cores

    with tempfile.TemporaryDirectory(prefix="fakewatch-peak-") as tmp:
        binary = Path(tmp) / "peak"
        command = [compiler, "-O2", "-march=native", "-pthread", str(PEAK_SOURCE), "-o"]
        build = subprocess.run([*command, str(binary)], capture_output=True, text=True)
        if build.returncode != 0:
            raise RuntimeError(
                f"{compiler} could not build {PEAK_SOURCE.name}: {build.stderr[-600:]}"
            )
        argv = [str(binary), f"{seconds:.6f}", str(usable_cores()), "1"]
        ran = subprocess.run(argv, capture_output=True, text=True, timeout=60 + 4 * seconds)
    if ran.returncode != 0:
        raise RuntimeError(f"the peak loop failed ({ran.returncode}): {ran.stderr[-600:]}")
    rows = [line.split() for line in ran.stdout.splitlines()]
    clock = next((float(r[3]) / int(r[5]) for r in rows if r[0] == "clock"), None)
    peaks = {
        name: Peak(name, float(best), isa, int(ops), float(sustained), int(n), clock)
        for name, isa, ops, best, sustained, n, _ in rows
        if isa != "none" and name != "clock"
    }
    if "f32" not in peaks:
        raise RuntimeError("the compiler has no FMA kernel for this CPU (no AVX2/FMA)")
    return peaks


def peak_flops(seconds: float) -> tuple[dict[str, Peak], str | None]:
    """The measured peaks, or none and the reason they could not be measured."""
    try:
        if (compiler := find_compiler()) is None:
            raise RuntimeError("no C compiler (cc, gcc or clang) on the PATH")
        return measure_peak(seconds, compiler), None
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        return {}, str(error)


def library_gemm(seconds: float) -> dict[str, float]:
    """Best GFLOP/s of ``torch.matmul`` of 2048 x 2048 matrices, f32 and bf16."""
    import torch

    pairs = (("f32", torch.float32), ("bf16", torch.bfloat16))
    return {name: common.matmul_rate(dtype, 2048, seconds) / 1e9 for name, dtype in pairs}


def peak_section(peaks: dict[str, Peak], reason: str | None, gemm: dict[str, float]) -> list[str]:
    how = (
        f"**Not measured** ({reason}): no fraction of the peak below."
        if reason
        else f"Measured by `{PEAK_SOURCE.name}`: each core's best 20 ms window, summed over the "
        "cores (sustained: the whole run); int8 counts multiply and add as 2 operations; GHz "
        "from a chain of dependent adds during the run."
    )
    lines = [
        "## Peak arithmetic rate of this CPU",
        "",
        how,
        "",
        "| precision | kernel | ops/instr | cores x GHz | FLOP/cycle/core | peak GFLOP/s "
        "| sustained GFLOP/s | torch.matmul 2048 GFLOP/s | matmul / peak |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in PRECISIONS:
        if (p := peaks.get(name)) is None:
            lines.append(f"| {name} | no kernel for this CPU/compiler |" + " - |" * 7)
            continue
        matmul = gemm.get(name)
        lines.append(
            f"| {name} | {p.kernel} | {p.ops_per_instruction or '-'} "
            f"| {p.cores} x {num(p.ghz, '.2f')} | {num(p.per_cycle, '.1f')} | {p.gflops:.0f} "
            f"| {num(p.sustained_gflops, '.0f')} | {num(matmul, '.0f')} "
            f"| {pct(matmul / p.gflops if matmul else None)} |"
        )
    return lines


def measure_engines(
    engines: Sequence[Any],
    batches: list[int],
    seconds: float,
    peaks: dict[str, Peak],
    flops: float | None,
) -> list[common.Cell]:
    """``fakewatch.engines.bench.bench`` (interleaved turns), against torch eager and the
    peak of each engine's precision."""
    from fakewatch.engines.bench import bench

    results = bench(list(engines), tuple(batches), seconds)
    return common.cells(results, engines, BASELINE, flops, lambda info: peak_of(peaks, info))


def peak_of(peaks: dict[str, Peak], info: Any) -> float | None:
    return peaks[info.precision].gflops if info.precision in peaks else None


def prepare_bundle(
    source: Path, folder: Path, calibration: Sequence[Path]
) -> tuple[Any, list[str]]:
    """Copy ``source`` to ``folder`` with an int8 twin calibrated on ``calibration`` (where
    the bundle has none), so that every precision can be timed; the notes name the
    bundle's recorded parity checks, which decide what ``engine.precision: auto`` opens."""
    from fakewatch.engines.bundle import EngineBundle
    from fakewatch.engines.faces import default_face_detector
    from fakewatch.engines.precision import collect_crops, quantize_int8

    shutil.copytree(source, folder)
    bundle = EngineBundle.load(folder)
    notes = []
    for precision in ("bf16", "int8"):
        check = bundle.manifest.precision_check("openvino", precision)
        state = "none" if check is None else ("passed" if check.passed else "failed")
        detail = f", score difference {check.score_max_abs_diff:.4f}" if check else ""
        notes.append(f"openvino/{precision}: recorded parity check {state}{detail}")
    if "onnx_int8" not in bundle.manifest.artifacts:
        if not calibration:
            notes.append("openvino/int8: not built (no calibration media)")
        else:
            log("calibrating an int8 twin ...")
            crops = collect_crops(calibration, bundle, default_face_detector())
            quantize_int8(bundle, crops)
            notes.append(f"openvino/int8: twin calibrated here on {len(crops)} face crops")
    return bundle, notes


def open_cpu_engine(bundle: Any, backend: str, precision: str) -> Any:
    """A CPU engine for timing: OpenVINO's reduced precisions open without a parity gate
    (their accuracy is measured in its own section)."""
    from fakewatch.engines.runtimes import open_engine

    if backend == "openvino" and precision != "f32":
        from fakewatch.engines.runtimes import BackendUnavailable
        from fakewatch.engines.runtimes.openvino_engine import OpenVinoEngine

        if precision == "int8" and "onnx_int8" not in bundle.manifest.artifacts:
            raise BackendUnavailable("openvino/int8: the bundle has no int8 twin")

        return OpenVinoEngine(bundle, "cpu", precision, require_check=False)
    return open_engine(bundle, backend, "cpu", precision)


def engine_section(
    table: Sequence[common.Cell], engines: Sequence[Any], notes: Sequence[str], flops: float | None
) -> list[str]:
    lines = [
        "## Engines",
        "",
        "Interleaved turns; ratios against torch eager f32 at the same batch; GFLOP/s = crops/s"
        f" x {num(flops and flops / 1e9, '.2f')} GFLOP a crop (int8 counted as the same); % of"
        " peak against the peak of the engine's own precision.",
        "",
        *(f"- {e.info.label}: {e.info.detail}" for e in engines),
        *(f"- {note}" for note in notes),
        "",
        "| engine | batch | calls | crops/s | p50 ms | p99 ms | x crops/s vs torch "
        "| GFLOP/s | % of peak |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in table:
        lines.append(
            f"| {c.label} | {c.batch} | {c.calls} | {c.crops_per_s:.1f} | {c.p50_ms:.1f} "
            f"| {c.p99_ms:.1f} | {num(c.vs_baseline, '.2f')} | {num(c.gflops, '.0f')} "
            f"| {pct(c.peak_fraction)} |"
        )
    return lines


@dataclass
class LayerKind:
    """Layers of one kind in OpenVINO's executed graph, summed."""

    kind: str
    nodes: int = 0
    seconds: float = 0.0
    flops: float = 0.0
    bytes: float = 0.0
    primitives: set[str] = field(default_factory=set)


def _static(shape: Any, batch: int) -> list[int] | None:
    dims = []
    for i, dim in enumerate(shape):
        if dim.is_static:
            dims.append(dim.get_length())
        elif i == 0:
            dims.append(batch)
        else:
            return None
    return dims


def profile_openvino(bundle: Any, precision: str, batch: int, runs: int = 5) -> list[LayerKind]:
    """OpenVINO's per-layer times (``PERF_COUNT``) at ``batch``, by layer kind, with the
    FLOPs and the bytes (inputs, outputs and weights once each) of each convolution."""
    import openvino as ov

    from fakewatch.engines.bench import sample_crops

    config = {
        "INFERENCE_PRECISION_HINT": precision,
        "PERFORMANCE_HINT": "LATENCY",
        "PERF_COUNT": "YES",
    }
    compiled = ov.Core().compile_model(str(bundle.path("onnx")), "CPU", config)
    request = compiled.create_infer_request()
    crops = sample_crops(bundle.spec.input_size, batch)
    times: dict[str, float] = {}
    types: dict[str, tuple[str, str]] = {}
    request.infer({0: crops})  # warm-up
    for _ in range(runs):
        request.infer({0: crops})
        for info in request.get_profiling_info():
            times[info.node_name] = times.get(info.node_name, 0.0) + info.real_time.total_seconds()
            types[info.node_name] = (info.node_type, info.exec_type)
    kinds: dict[str, LayerKind] = {}
    element = 2 if precision == "bf16" else 4
    for op in compiled.get_runtime_model().get_ordered_ops():
        if (name := op.get_friendly_name()) not in times:
            continue
        node_type, primitive = types[name]
        kind, flops, moved = node_type, 0.0, 0.0
        if node_type in ("Convolution", "GroupConvolution") and op.get_input_size() >= 2:
            data = _static(op.input(0).get_partial_shape(), batch)
            weights = _static(op.input(1).get_partial_shape(), batch)
            out = _static(op.get_output_partial_shape(0), batch)
            if data and weights and out:
                grouped = node_type == "GroupConvolution"  # (G, Cout/G, Cin/G, kh, kw)
                depthwise = grouped and weights[2] == 1
                kind = f"{'depthwise ' if depthwise else ''}conv {weights[-2]}x{weights[-1]}"
                flops = 2.0 * math.prod(out) * math.prod(weights[2:] if grouped else weights[-3:])
                moved = element * (math.prod(data) + math.prod(out) + math.prod(weights))
        group = kinds.setdefault(kind, LayerKind(kind))
        group.nodes += 1
        group.seconds += times[name] / runs
        group.flops += flops
        group.bytes += moved
        group.primitives.add(primitive)
    return sorted(kinds.values(), key=lambda k: k.seconds, reverse=True)


def breakdown_section(
    kinds: Sequence[LayerKind], precision: str, batch: int, peak: Peak | None
) -> list[str]:
    total_time = sum(k.seconds for k in kinds) or 1.0
    total_flops = sum(k.flops for k in kinds) or 1.0
    lines = [
        f"## Where openvino/{precision} spends its time (batch {batch}, PERF_COUNT)",
        "",
        f"Layer times summed: {total_time * 1000:.1f} ms a batch. FLOP/byte from each "
        "convolution's shapes (a lower bound on its traffic).",
        "",
        "| layer kind | nodes | time share | FLOP share | GFLOP/s in these layers | % of peak "
        "| FLOP/byte | primitives |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k in kinds[:8]:
        rate = k.flops / k.seconds / 1e9 if k.seconds and k.flops else None
        lines.append(
            f"| {k.kind} | {k.nodes} | {k.seconds / total_time:.1%} | {k.flops / total_flops:.1%} "
            f"| {num(rate, '.0f')} | {pct(rate / peak.gflops if rate and peak else None)} "
            f"| {num(k.flops / k.bytes if k.bytes else None, '.0f')} "
            f"| {', '.join(sorted(k.primitives))} |"
        )
    if peak is not None:
        slow = [k for k in kinds if k.seconds and k.flops / k.seconds < 0.25 * peak.gflops * 1e9]
        slow_time, slow_flops = sum(k.seconds for k in slow), sum(k.flops for k in slow)
        without = total_flops / max(total_time - slow_time, 1e-12) / 1e9 / peak.gflops
        lines += [
            "",
            f"Layer kinds below a quarter of the peak ({', '.join(k.kind for k in slow)}) take "
            f"{slow_time / total_time:.0%} of the time for {slow_flops / total_flops:.0%} of "
            f"the FLOPs; without them the engine would run at {without:.0%} of the peak.",
        ]
    return lines


@dataclass(frozen=True)
class Media:
    """What the accuracy part runs on, and where it came from."""

    calibration: list[Path]
    parity: list[Path]
    holdout: Any | None  # training.evaluate.EvaluationData
    note: str


def find_media(data: Path, recipe: Path, calibration: Sequence[Path], want_holdout: bool) -> Media:
    """Calibration media (never held out), real media for parity (held out where there is
    the development data) and the recipe's validation split."""
    if not data.is_dir():
        from fakewatch.training.demo_clip import fetch_demo_clip

        chosen = list(calibration) or [fetch_demo_clip(ROOT / ".cache" / "demo")]
        note = f"no development samples at {data}: calibration and parity on {chosen}"
        return Media(chosen, chosen, None, note)
    from fakewatch.training.config import load_config
    from fakewatch.training.evaluate import read_evaluation_data, split_data

    config = load_config(recipe)
    kept = split_data(config, "validation")
    held = {r.path.resolve() for r in kept.index.reals} | {
        p.real.resolve() for p in kept.index.pairs
    }
    if not calibration:
        faces = (data / "real-faces").resolve()
        reals = read_evaluation_data([source.path for source in config.data]).index.reals
        calibration = [r.path.resolve() for r in reals if r.path.resolve().is_relative_to(faces)]
        calibration = [p for p in calibration if p not in held]
    note = (
        f"calibration: {len(calibration)} real files {recipe.name} does not hold out; parity: "
        f"the {len(held)} real media of its validation split ({len(kept.index.reals)} real "
        f"media and {len(kept.index.pairs)} real/fake pairs)"
    )
    return Media(list(calibration), sorted(held), kept if want_holdout else None, note)


def parity_rows(engines: Sequence[Any], crops: np.ndarray) -> list[str]:
    """Every engine against openvino f32 (``engines.precision.compare``) on ``crops``."""
    from fakewatch.engines.precision import compare

    reference = next(e for e in engines if e.info.label == REFERENCE)
    rows = []
    for engine in engines:
        if engine is not reference:
            c = compare(reference, engine, crops, tolerance=1.0, calibration="benchmark")
            rows.append(
                f"| {engine.info.label} | {c.crops} | {c.max_abs_diff:.4f} "
                f"| {c.mean_abs_diff:.5f} | {c.score_max_abs_diff:.4f} |"
            )
    return rows


def holdout_rows(engines: Sequence[Any], data: Any, detector: Any, max_frames: int) -> list[str]:
    """Frame and video AUC of each engine on the validation split, scored as ``fakewatch
    evaluate`` scores it; changes and flipped decisions against openvino f32."""
    from fakewatch.engines.aggregate import DEFAULT_WINDOW
    from fakewatch.training.evaluate import Evaluator
    from fakewatch.training.metrics import binary_metrics, video_metrics

    rows, reference = [], None
    for engine in engines:
        threshold = engine.bundle.manifest.thresholds["suspect"].value
        log(f"evaluating {engine.info.label} on the validation split ...")
        started = time.perf_counter()
        result = Evaluator(engine, detector, DEFAULT_WINDOW, max_frames).run(
            data, engine.info.label, progress=False
        )
        scores = np.asarray(result.frame_scores, dtype=float)
        frame = binary_metrics(np.asarray(result.frame_labels), result.frame_scores, threshold)
        video = (
            video_metrics(result.videos, DEFAULT_WINDOW, threshold).auc if result.videos else None
        )
        reference = reference or (frame.auc, video, scores)
        same = len(reference[2]) == len(scores)
        change = f"{np.abs(scores - reference[2]).max():.4f}" if same and len(scores) else "-"
        flips = int(((scores >= threshold) != (reference[2] >= threshold)).sum()) if same else "-"
        rows.append(
            f"| {engine.info.label} | {frame.n_real}/{frame.n_fake} | {num(frame.auc, '.4f')} "
            f"| {_delta(frame.auc, reference[0])} | {num(video, '.3f')} "
            f"| {_delta(video, reference[1])} | {change} | {flips} "
            f"| {time.perf_counter() - started:.0f} |"
        )
    return rows


def _delta(value: float | None, reference: float | None) -> str:
    return "-" if value is None or reference is None else f"{value - reference:+.4f}"


def accuracy_section(
    bundle: Any, engines: Sequence[Any], media: Media, max_frames: int
) -> list[str]:
    from fakewatch.engines.faces import default_face_detector
    from fakewatch.engines.precision import collect_crops

    lines = ["## Accuracy cost of reduced precision", "", f"{media.note}.", ""]
    if REFERENCE not in {e.info.label for e in engines}:
        return [*lines, f"Skipped: {REFERENCE} did not open."]
    detector = default_face_detector()
    log("parity on real face crops ...")
    try:
        crops = collect_crops(media.parity, bundle, detector)
        lines += [
            "| engine | crops | largest mask difference | mean mask difference "
            "| largest crop-score difference |",
            "|---|---|---|---|---|",
            *parity_rows(engines, crops),
        ]
    except ValueError as error:
        lines.append(f"Parity skipped: {error}")
    lines += ["", "### Validation split (openvino engines)", ""]
    if media.holdout is None:
        return [*lines, "Skipped: no development samples, or --no-accuracy."]
    openvino = [e for e in engines if e.info.backend == "openvino"]
    return [
        *lines,
        "| engine | frames real/fake | frame AUC | change vs f32 | video AUC | change vs f32 "
        "| largest frame-score change | decisions flipped at suspect | evaluation s |",
        "|---|---|---|---|---|---|---|---|---|",
        *holdout_rows(openvino, media.holdout, detector, max_frames),
    ]


def ratios_section(table: Sequence[common.Cell]) -> list[str]:
    lines = ["## Ratios", "", "crops/s against torch eager f32 at the same batch:", ""]
    lines += common.ratio_table(table, "engine", lambda c: num(c.vs_baseline, ".2f"))
    lines += ["", "Fraction of the measured peak of the engine's precision:", ""]
    lines += common.ratio_table(table, "engine", lambda c: pct(c.peak_fraction))
    best = max(table, key=lambda c: c.peak_fraction or 0.0, default=None)
    if best is not None and best.peak_fraction is not None:
        verdict = "met" if best.peak_fraction >= TARGET_FRACTION else "NOT met"
        lines += [
            "",
            f"Target {TARGET_FRACTION:.0%} of peak: {verdict} (best {best.label} at batch "
            f"{best.batch}: {best.peak_fraction:.1%}; {best.vs_baseline or 0:.2f}x torch eager).",
        ]
    return lines


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=None, help="default: the shipped one")
    parser.add_argument("--batch", type=common.int_list, default=[1, 8, 32], help="e.g. 1,8,32")
    parser.add_argument("--seconds", type=float, default=3.0, help="per engine and batch")
    parser.add_argument("--peak-seconds", type=float, default=2.0, help="per precision")
    parser.add_argument("--gemm-seconds", type=float, default=1.0, help="per dtype")
    parser.add_argument("--calibration", type=Path, nargs="+", default=[], help="int8 media")
    parser.add_argument("--data", type=Path, default=SHARED_DATA, help="development samples")
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "default.yaml")
    parser.add_argument("--max-frames", type=int, default=150, help="validation: per video")
    parser.add_argument("--profile-batch", type=int, default=8, help="PERF_COUNT batch")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the validation AUC")
    parser.add_argument("--out", type=Path, default=None, help="also write the report here")
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> Iterator[list[str]]:
    """The report, one section at a time (printed as it is made)."""
    from fakewatch.engines.bench import flops_per_crop
    from fakewatch.engines.bundle import EngineBundle
    from fakewatch.engines.defaults import default_bundle_path
    from fakewatch.engines.runtimes import BackendUnavailable

    source = args.bundle or default_bundle_path()
    spec = EngineBundle.load(source).spec
    yield [
        f"# Engine benchmark: {spec.architecture}/{spec.encoder}, {spec.input_size} px",
        "",
        f"{time.strftime('%Y-%m-%d %H:%M')}; bundle {source}. On a machine shared with other "
        "work the timings are noisy: compare ratios taken in the same run.",
    ]
    yield machine_section(find_compiler())
    log(f"measuring the peak ({args.peak_seconds:g} s a precision) and torch.matmul ...")
    peaks, reason = peak_flops(args.peak_seconds)
    yield peak_section(peaks, reason, library_gemm(args.gemm_seconds))
    media = find_media(args.data, args.recipe, args.calibration, not args.no_accuracy)
    with tempfile.TemporaryDirectory(prefix="fakewatch-engine-bench-") as tmp:
        bundle, notes = prepare_bundle(source, Path(tmp) / "bundle", media.calibration)
        engines = []
        for backend, precision in CPU_OPTIONS:
            try:
                engines.append(open_cpu_engine(bundle, backend, precision))
            except (BackendUnavailable, ImportError) as error:
                notes.append(f"skipped {backend}/cpu/{precision}: {error}")
        flops = flops_per_crop(bundle.spec)
        log(f"timing {len(engines)} engines at batches {args.batch}, {args.seconds:g} s each ...")
        table = measure_engines(engines, args.batch, args.seconds, peaks, flops)
        yield engine_section(table, engines, notes, flops)
        labels = {e.info.label for e in engines}
        precision = "bf16" if "openvino/cpu/bf16" in labels else "f32"
        if f"openvino/cpu/{precision}" in labels:
            log(f"profiling openvino/{precision} at batch {args.profile_batch} ...")
            kinds = profile_openvino(bundle, precision, args.profile_batch)
            yield breakdown_section(kinds, precision, args.profile_batch, peaks.get(precision))
        yield accuracy_section(bundle, engines, media, args.max_frames)
        for engine in engines:
            engine.close()
    yield ratios_section(table)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    report = []
    for section in run(args):
        text = "\n".join(section) + "\n"
        print(text, flush=True)
        report.append(text)
    log(f"done in {time.perf_counter() - started:.0f} s on {platform.node()}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
