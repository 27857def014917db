"""fakewatch's own engines on an NVIDIA GPU against torch eager and the GPU's measured
GEMM ceiling, with each engine's mask difference from torch f32.

Here: ``.venv/bin/python benchmarks/gpu.py --prepare`` builds fakewatch's wheel (``pip
wheel --no-deps .``, the shipped bundle inside) into ``build/gpu-wheels`` with the wheels
a machine with only torch lacks (:data:`DEVICE_EXTRAS`, for CPython 3.12, at the versions
of constraints.txt). There, carrying that folder, from the repository root::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site build/gpu-wheels/*.whl
    PYTHONPATH=/tmp/site python3 benchmarks/gpu.py --budget-s 300

The engines are opened by ``open_engine`` as the service opens them: torch/cuda f32 (the
baseline; torch's default TF32 convolutions), fp16 and bf16; onnxruntime's cuda and
tensorrt providers where onnxruntime-gpu is installed; tensorrt fp16 built into a copy
of the bundle by ``compile_tensorrt`` (TensorRT's serialised plan for batch 1 to the
largest measured) where torch-tensorrt imports; one that cannot run is listed with the
reason. The report also names what ``engine.precision: auto`` opens there, and why.
``fakewatch.engines.bench`` times them in interleaved turns, numpy in and out, so
host-device copies count as in the service; GFLOP/s is set against the best
``torch.matmul`` rate at the engine's precision (TF32 for f32). ``gpu-bench.json`` and
``.md`` go to ``--out`` (``$OUT`` when set) after every batch size; the ratios come
last. Without a GPU, ``--device cpu --quick`` runs torch/cpu f32 and bf16.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import common
from common import num, pct

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / "build" / "gpu-wheels"
DEVICE_EXTRAS = (
    "pydantic",
    "pydantic-core",
    "annotated-types",
    "typing-inspection",
    "segmentation-models-pytorch",
)
"""What fakewatch's engines import that the GPU machine's image lacks (it has torch,
torchvision, timm, safetensors, numpy, opencv and pyyaml)."""
DEVICE_PYTHON = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
CUDA_OPTIONS = (
    ("torch", "cuda", "f32"),
    ("torch", "cuda", "fp16"),
    ("torch", "cuda", "bf16"),
    ("onnxruntime", "cuda", "f32"),
    ("onnxruntime", "tensorrt", "f32"),
)
CPU_OPTIONS = (("torch", "cpu", "f32"), ("torch", "cpu", "bf16"))
JSON_NAME, MARKDOWN_NAME = "gpu-bench.json", "gpu-bench.md"


def prepare(target: Path, extras: Sequence[str]) -> int:
    """fakewatch's wheel and the ``extras`` for the GPU machine's Python, into ``target``;
    the extras at the versions installed here (constraints.txt pins them)."""
    from importlib.metadata import version

    if target.exists():
        shutil.rmtree(target)
    pip = [sys.executable, "-m", "pip"]
    build = [*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w"]
    build += [str(target), str(ROOT)]
    commands = [build]
    if extras:
        download = [*pip, "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(target)]
        download += ["--python-version", DEVICE_PYTHON, "--implementation", "cp"]
        download += [f"--platform={name}" for name in PLATFORMS]
        commands.append(download + [f"{name}=={version(name)}" for name in extras])
    for command in commands:
        print("+ " + " ".join(command), flush=True)
        if status := subprocess.call(command):
            return status
    for wheel in sorted(target.glob("*.whl")):
        print(f"{wheel.name}: {wheel.stat().st_size / 1e6:.1f} MB")
    return 0


@dataclass
class Report:
    """What the run found so far; written after every batch size."""

    environment: dict[str, Any]
    settings: dict[str, Any]
    flops_per_crop: float = 0.0
    ceiling_flops: dict[str, float] = field(default_factory=dict)
    engines: dict[str, str] = field(default_factory=dict)
    """Each engine that ran and its runtime's own description."""
    skipped: dict[str, str] = field(default_factory=dict)
    max_abs_diff: dict[str, float] = field(default_factory=dict)
    """Largest mask difference from the baseline on the same crops."""
    precision_auto: str = ""
    """The engine ``engine.precision: auto`` opens here, and why."""
    rows: list[common.Cell] = field(default_factory=list)
    complete: bool = False

    def write(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / JSON_NAME).write_text(json.dumps(asdict(self), indent=2) + "\n")
        (out / MARKDOWN_NAME).write_text(markdown(self) + "\n")


def ceiling_key(device: str, precision: str) -> str:
    """The GEMM ceiling an engine is set against: torch runs f32 convolutions on CUDA in
    TF32 (``torch.backends.cudnn.allow_tf32`` is on by default), as onnxruntime does."""
    if precision == "f32":
        return "tf32" if device != "cpu" else "fp32"
    return precision


def gemm_ceiling(device: str, n: int, seconds: float) -> dict[str, float]:
    """The best FLOP/s of ``torch.matmul`` on n x n matrices, per precision."""
    import torch

    kinds = {"fp16": torch.float16, "bf16": torch.bfloat16, "tf32": torch.float32}
    kinds = {"bf16": torch.bfloat16} if device == "cpu" else kinds
    rates = {}
    for key, dtype in {**kinds, "fp32": torch.float32}.items():
        torch.backends.cuda.matmul.allow_tf32 = key == "tf32"
        rates[key] = common.matmul_rate(dtype, n, seconds, device)
        print(f"GEMM ceiling {key}: {rates[key] / 1e12:.2f} TFLOP/s ({n} x {n})", flush=True)
    torch.backends.cuda.matmul.allow_tf32 = False  # torch's default
    return rates


def environment(device: str) -> dict[str, Any]:
    import torch

    from fakewatch.engines.defaults import installed_version
    from fakewatch.engines.machine import describe_machine

    info = {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": describe_machine(),
        "fakewatch": installed_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
    }
    if smi := shutil.which("nvidia-smi"):
        done = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
        info["nvidia_smi"] = done.stdout.strip()
    return info


def open_engines(
    bundle: Any, device: str, folder: Path, report: Report, max_batch: int
) -> list[Any]:
    """Every engine of :data:`CUDA_OPTIONS` (or :data:`CPU_OPTIONS`) that opens, the
    baseline first; TensorRT compiled into a copy of the bundle in ``folder``."""
    from fakewatch.engines.bundle import EngineBundle
    from fakewatch.engines.runtimes import BackendUnavailable, open_engine

    engines = []
    for backend, where, precision in CPU_OPTIONS if device == "cpu" else CUDA_OPTIONS:
        label = f"{backend}/{where}/{precision}"
        try:
            engines.append(open_engine(bundle, backend, where, precision))
        except (BackendUnavailable, ImportError) as error:
            report.skipped[label] = str(error)
    built = bundle
    if device == "cuda" and report.settings["tensorrt"]:
        from fakewatch.engines.runtimes.tensorrt_engine import compile_tensorrt

        try:
            copy = EngineBundle.load(shutil.copytree(bundle.folder, folder / "bundle"))
            started = time.perf_counter()
            compile_tensorrt(copy, "fp16", max_batch)
            engines.append(open_engine(copy, "tensorrt", "cuda", "fp16"))
            report.engines["tensorrt build"] = f"{time.perf_counter() - started:.0f} s"
            built = copy
        except Exception as error:  # torch-tensorrt's own errors are of many kinds
            report.skipped["tensorrt/cuda/fp16"] = str(error).splitlines()[0][:300]
    for engine in engines:
        report.engines[engine.info.label] = engine.info.detail
    try:  # as the service opens it: the TensorRT plan is fp16 with no parity check here
        auto = open_engine(built, "auto", device)
        report.precision_auto = f"{auto.info.label}: {auto.info.reason}"
        auto.close()
    except (BackendUnavailable, ImportError) as error:
        report.precision_auto = f"nothing opened: {error}"
    return engines


def mask_differences(engines: Sequence[Any], batch: int) -> dict[str, float]:
    """Each engine's largest mask difference from the first one's on the same crops."""
    import numpy as np

    from fakewatch.engines.bench import sample_crops

    crops = sample_crops(engines[0].size, batch, seed=3)
    reference = engines[0].infer(crops)
    return {e.info.label: float(np.abs(e.infer(crops) - reference).max()) for e in engines}


def ratios(report: Report) -> list[str]:
    """crops/s against the baseline and the fraction of the ceiling, engine by batch."""
    head = "x crops/s vs torch f32 / % of ceiling"
    return common.ratio_table(
        report.rows, head, lambda c: f"{num(c.vs_baseline, '.2f')} / {pct(c.peak_fraction)}"
    )


def markdown(report: Report) -> str:
    env = report.environment
    state = "complete" if report.complete else "partial: the run stopped early"
    lines = [
        f"# fakewatch engines on {env['device']} ({state})",
        "",
        f"- {env['time_utc']}; fakewatch {env['fakewatch']}, torch {env['torch']}, CUDA "
        f"{env['cuda']}; {env['machine']}; {env.get('nvidia_smi', 'no nvidia-smi')}",
        f"- {report.flops_per_crop / 1e9:.3f} GFLOP a crop; settings {json.dumps(report.settings)}",
        *(f"- {label}: {detail}" for label, detail in report.engines.items()),
        *(f"- skipped {label}: {reason}" for label, reason in report.skipped.items()),
        f"- engine.precision auto: {report.precision_auto or '-'}",
        "",
        "| GEMM ceiling | TFLOP/s |",
        "|---|---|",
        *(f"| {k} | {v / 1e12:.2f} |" for k, v in report.ceiling_flops.items()),
        "",
        "| engine | batch | calls | crops/s | p50 ms | p99 ms | x torch f32 | GFLOP/s "
        "| % of ceiling | max mask diff vs torch f32 |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report.rows:
        lines.append(
            f"| {r.label} | {r.batch} | {r.calls} | {r.crops_per_s:.1f} | {r.p50_ms:.2f} "
            f"| {r.p99_ms:.2f} | {num(r.vs_baseline, '.2f')} | {num(r.gflops, '.0f')} "
            f"| {pct(r.peak_fraction)} ({ceiling_key(r.label.split('/')[1], r.precision)}) "
            f"| {num(report.max_abs_diff.get(r.label), '.2e')} |"
        )
    return "\n".join([*lines, "", *ratios(report)])


def measure(args: argparse.Namespace) -> int:
    import torch

    from fakewatch.engines.bench import bench, flops_per_crop
    from fakewatch.engines.bundle import EngineBundle
    from fakewatch.engines.defaults import default_bundle_path

    deadline = time.monotonic() + args.budget_s
    if args.device == "cuda" and not torch.cuda.is_available():
        print(f"no CUDA device visible to torch {torch.__version__}; try --device cpu --quick")
        return 2
    batches = args.batches or ([1, 2] if args.quick else [1, 2, 4, 8, 16, 32, 64, 128])
    seconds = args.seconds or (0.3 if args.quick else 1.0)
    settings = {"batches": batches, "seconds": seconds, "budget_s": args.budget_s}
    report = Report(environment(args.device), {**settings, "tensorrt": args.tensorrt})
    bundle = EngineBundle.load(args.bundle or default_bundle_path())
    report.flops_per_crop = flops_per_crop(bundle.spec) or 0.0
    n = 1024 if args.quick or args.device == "cpu" else 8192
    report.ceiling_flops = gemm_ceiling(args.device, n, 0.2 if args.quick else 1.5)

    def ceiling(info: Any) -> float | None:  # GFLOP/s
        rate = report.ceiling_flops.get(ceiling_key(info.device, info.precision))
        return rate / 1e9 if rate else None

    with tempfile.TemporaryDirectory(prefix="fakewatch-gpu-") as tmp:
        engines = open_engines(bundle, args.device, Path(tmp), report, max(batches))
        for label, reason in report.skipped.items():
            print(f"skipped {label}: {reason}", flush=True)
        if not engines or engines[0].info.precision != "f32" or engines[0].info.backend != "torch":
            print("the baseline, torch f32, did not open")
            report.write(args.out)
            return 1
        report.max_abs_diff = mask_differences(engines, min(8, max(batches)))
        for batch in batches:
            if time.monotonic() + len(engines) * (seconds + 2) > deadline:
                report.skipped[f"batch {batch}"] = f"--budget-s {args.budget_s:g} spent"
                continue
            results = bench(engines, (batch,), seconds, blocks=2)
            baseline = engines[0].info.label
            rows = common.cells(results, engines, baseline, report.flops_per_crop, ceiling)
            report.rows += rows
            report.write(args.out)
            for row in rows:
                print(
                    f"{row.label:<28} batch {batch:>3}: {row.crops_per_s:9.1f} crops/s", flush=True
                )
        for engine in engines:
            engine.close()
    report.complete = True
    report.write(args.out)
    print(f"\n{markdown(report).rsplit(chr(10) * 2, 1)[0]}\n\nwrote {args.out / MARKDOWN_NAME}")
    print("\n" + "\n".join(ratios(report)))
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prepare", action="store_true", help=f"build {WHEELS} and stop")
    parser.add_argument("--wheels", type=Path, default=WHEELS, help="--prepare: where to")
    parser.add_argument(
        "--only-fakewatch",
        action="store_true",
        help="--prepare: fakewatch's wheel alone (the GPU machine has the rest)",
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="batches 1,2 and 0.3 s a cell")
    parser.add_argument("--bundle", type=Path, default=None, help="default: the shipped one")
    parser.add_argument("--batches", type=common.int_list, default=None, help="e.g. 1,8,64")
    parser.add_argument("--seconds", type=float, default=None, help="per engine and batch")
    parser.add_argument("--budget-s", type=float, default=300.0, help="start no batch after")
    parser.add_argument("--no-tensorrt", dest="tensorrt", action="store_false")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu-results"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.prepare:
        return prepare(args.wheels, () if args.only_fakewatch else DEVICE_EXTRAS)
    return measure(args)


if __name__ == "__main__":
    sys.exit(main())
