"""The shipped engine on an NVIDIA GPU: throughput, latency and accuracy of every way to run it.

The one command to run on the GPU machine, from the repository root, with the folder
``build/gpu-site`` carried along (made here first by ``--prepare``, see below)::

    python3 benchmarks/gpu.py --budget-s 360

It needs only ``torch`` with CUDA on that machine; fakewatch, segmentation-models-pytorch
and safetensors may be absent. It writes into ``--out`` (default ``$OUT`` when set, else
``./gpu-results``), rewritten after every batch size so that a run cut short still leaves
what it measured:

* ``gpu-bench.json``: the machine, the measured GEMM ceiling, FLOPs per crop, one row per
  variant and batch size, every skipped variant with its reason, host<->device copies;
* ``gpu-bench.md``: the same as markdown tables (also printed), ratios last.

What it measures, on the engine of the bundle ``engines/default_bundle`` (``--bundle``):

1. the device, driver (``nvidia-smi -L``), torch/CUDA/cuDNN versions, and the *measured
   GEMM ceiling*: the best rate of a large ``torch.matmul`` loop at fp16, bf16, tf32 and
   fp32, the yardstick for the fraction-of-ceiling column (not the datasheet peak);
2. for batch sizes 1 to 128, crops/s and p50/p99 latency of one batch (``perf_counter``
   around the call and ``torch.cuda.synchronize``; warm-up excluded; ``--cell-s``
   seconds each, split into ``--blocks`` interleaved turns) of each variant:

   ========================================== ===================================
   eager fp32                                 channels_last, TF32 off: the baseline
   eager tf32                                 torch's default (cuDNN convolutions in
                                              TF32): what fakewatch's torch/cuda/f32 runs
   eager fp16                                 ``.half()``, channels_last: fakewatch's
                                              torch/cuda/fp16
   eager fp16 +cudnn.benchmark                the same with cuDNN's algorithm search
   fp16 +cudnn.benchmark +CUDA graph          one ``torch.cuda.CUDAGraph`` per batch size,
                                              static input buffer
   fp16 +torch.compile(MODE)                  ``--compile-mode``; compile time printed, at
                                              most ``--compile-limit-s``
   onnxruntime CUDA EP (tf32 or fp32)         the bundle's ``model.onnx`` (f32 graph, TF32
                                              as the EP's use_tf32 says), IO bound to
                                              torch's device buffers
   torch-tensorrt fp16                        ``torch_tensorrt.compile(ir="dynamo")`` of the
                                              fp16 model, one engine for batch 1 to 128
   onnxruntime TensorRT EP fp16               ``model.onnx`` through TensorRT
   ========================================== ===================================

   Every variant runs the deployed model: uint8 NHWC crops (already on the device) in,
   normalisation to NCHW, the network and the sigmoid, float32 masks (on the device)
   out, as in fakewatch's engines. A variant that cannot run is skipped and says why.
   Host<->device copies of the crops and masks are measured apart;
3. accuracy: the largest absolute mask difference of each variant against fp32 (TF32
   off) on the same crops (smooth random images, the same for every variant);
4. GFLOP/s = crops/s x FLOPs per crop (``torch.utils.flop_counter.FlopCounterMode``,
   batch 1) and its fraction of the measured GEMM ceiling of the variant's precision.

The run stops starting new work when ``--budget-s`` is spent; the order of work is
the eager and CUDA-graph variants and onnxruntime's CUDA EP for every batch size, then
the TensorRT builds (each started only with ``--trt-min-s`` left), then torch.compile.
Rows of the later phases are compared with eager fp32 as measured in the first.
With the defaults it takes about 6 minutes on an H100 (allow 8: a TensorRT build
cannot be interrupted, and CUDA start-up comes on top).

How the network is built, in order of preference:

a. ``import fakewatch`` works: ``EngineBundle.load`` (hashes verified) and the package's
   own ``load_network`` and ``DeployedSegmenter``;
b. ``segmentation_models_pytorch`` imports: ``smp.create_model`` from the manifest's spec,
   weights from ``weights.safetensors`` (by ``safetensors``, or by the small reader
   here where safetensors is absent), the sha256 checked against the manifest;
c. neither: ``build/gpu-site`` is put first on ``sys.path`` and (b) is tried again (it
   still needs torchvision and Pillow from the machine);
d. last, a definition here in plain torch of the same network (the shipped spec only:
   Unet, mobilenet_v2 encoder, 5 stages), whose parameter names and outputs match
   segmentation-models-pytorch's (checked by ``tests/engines/test_gpu_benchmark.py``).
   It covers a machine without torchvision, which smp's mobilenet_v2 encoder imports.

``python benchmarks/gpu.py --prepare`` (run with the project's ``.venv/bin/python``) fills
``build/gpu-site`` with ``pip install --target --no-deps`` of the packages (b) imports
beyond torch, torchvision and numpy, at the versions of ``constraints.txt`` or, for those
it does not pin, of the running environment. All are pure Python except safetensors (an
abi3 wheel: any CPython >= 3.10 on x86-64 Linux) and pyyaml (whose compiled part is
optional). Where safetensors still does not import, the reader here stands in for
``safetensors.torch.load_file``, the one function smp imports from it.

Without a GPU (the smoke run of the test): ``.venv/bin/python benchmarks/gpu.py --device
cpu --quick``: batches 1 and 2, 0.3 s a cell, bf16 instead of fp16, no torch.compile.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import importlib
import importlib.metadata
import json
import math
import os
import platform
import shutil
import signal
import struct
import subprocess
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUNDLE = ROOT / "engines" / "default_bundle"
GPU_SITE = ROOT / "build" / "gpu-site"
CONSTRAINTS = ROOT / "constraints.txt"
JSON_NAME = "gpu-bench.json"
MARKDOWN_NAME = "gpu-bench.md"
BASELINE = "eager fp32"

# What segmentation-models-pytorch 0.6 imports beyond torch, torchvision and numpy
# (found by importing it in an interpreter that has only those).
GPU_SITE_PACKAGES = (
    "segmentation-models-pytorch",
    "timm",
    "huggingface_hub",
    "safetensors",
    "tqdm",
    "httpx2",
    "httpcore2",
    "h11",
    "idna",
    "truststore",
    "packaging",
    "pyyaml",
)
GPU_SITE_LIMIT_BYTES = 60 * 1024 * 1024

# ---------------------------------------------------------------------------------------
# --prepare: the packages for (c)


def _constraint_pins(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pins[_normalise(name)] = version.strip()
    return pins


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-").replace(".", "-")


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def prepare(target: Path = GPU_SITE) -> int:
    """``pip install --target`` the pinned packages that (b) needs; print the folder's size."""
    pins = _constraint_pins(CONSTRAINTS)
    requirements = []
    for name in GPU_SITE_PACKAGES:
        version = pins.get(_normalise(name))
        if version is None:
            try:
                version = importlib.metadata.version(name)
            except importlib.metadata.PackageNotFoundError:
                print(
                    f"--prepare: {name} is neither pinned in {CONSTRAINTS.name} nor installed "
                    f"here; run it with the project's .venv/bin/python",
                    file=sys.stderr,
                )
                return 2
        requirements.append(f"{name}=={version}")
    if target.exists():
        shutil.rmtree(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--no-compile",
        "--target",
        str(target),
        *requirements,
    ]
    print("+ " + " ".join(command), flush=True)
    status = subprocess.call(command)
    if status:
        return status
    size = _folder_bytes(target)
    print(f"{target}: {size / 1e6:.1f} MB in {len(list(target.iterdir()))} entries")
    for line in requirements:
        print(f"  {line}")
    if size > GPU_SITE_LIMIT_BYTES:
        print(f"--prepare: {target} is over {GPU_SITE_LIMIT_BYTES >> 20} MiB", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------------------
# Weights without the safetensors package

_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


def read_safetensors(path: Path | str) -> dict[str, torch.Tensor]:
    """A safetensors file as CPU tensors: an 8-byte little-endian header length, a JSON
    header (dtype, shape, data_offsets per tensor) and the raw little-endian bytes."""
    data = Path(path).read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    header.pop("__metadata__", None)
    body = bytearray(data[8 + length :])
    tensors: dict[str, torch.Tensor] = {}
    for name, entry in header.items():
        dtype = _SAFETENSORS_DTYPES[entry["dtype"]]
        start, end = entry["data_offsets"]
        count = (end - start) // torch.empty(0, dtype=dtype).element_size()
        flat = (
            torch.frombuffer(body, dtype=dtype, count=count, offset=start)
            if count
            else torch.empty(0, dtype=dtype)
        )
        tensors[name] = flat.reshape(entry["shape"]).clone()
    return tensors


def _load_state(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    try:
        from safetensors.torch import load_file

        if load_file is not read_safetensors:
            return load_file(str(path)), "safetensors"
    except ImportError:
        pass
    return read_safetensors(path), "reader in benchmarks/gpu.py"


def _stand_in_for_safetensors() -> str | None:
    """Where ``safetensors`` does not import, register the reader above as
    ``safetensors.torch.load_file`` (what smp imports from it); say so."""
    try:
        import safetensors.torch  # noqa: F401
    except ImportError as error:
        package = types.ModuleType("safetensors")
        module = types.ModuleType("safetensors.torch")
        module.load_file = read_safetensors  # type: ignore[attr-defined]
        package.torch = module  # type: ignore[attr-defined]
        sys.modules["safetensors"] = package
        sys.modules["safetensors.torch"] = module
        return f"safetensors does not import ({error}); its load_file is the reader here"
    return None


# ---------------------------------------------------------------------------------------
# The network


@dataclass(frozen=True)
class Spec:
    """The manifest's model spec (what ``fakewatch.engines.spec.ModelSpec`` holds)."""

    head: str = "segmentation"
    architecture: str = "Unet"
    encoder: str = "mobilenet_v2"
    encoder_depth: int = 5
    decoder_channels: tuple[int, ...] = (128, 64, 32, 16, 16)
    input_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


class Deployed(nn.Module):
    """uint8 crops (N, S, S, 3) to probabilities (N, S, S): fakewatch's DeployedSegmenter."""

    def __init__(self, network: nn.Module, spec: Spec) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1) * 255.0)
        self.register_buffer("inv_std", 1.0 / (torch.tensor(spec.std).view(1, 3, 1, 1) * 255.0))

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        mean = self.get_buffer("mean")
        x = (crops.permute(0, 3, 1, 2).to(mean.dtype) - mean) * self.get_buffer("inv_std")
        logits: torch.Tensor = self.network(x)[:, 0]
        return torch.sigmoid(logits.float())


def _conv_bn(
    cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: type | None = None
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


class _InvertedResidual(nn.Module):
    """torchvision's MobileNetV2 block (same parameter names)."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = round(cin * expand)
        self.residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn(cin, hidden, 1, act=nn.ReLU6))
        layers += [
            _conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
            nn.Conv2d(hidden, cout, 1, 1, 0, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(x)
        return x + out if self.residual else out


class _MobileNetV2Encoder(nn.Module):
    """smp's ``mobilenet_v2`` encoder: torchvision's MobileNetV2 features, five skips."""

    settings = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2))
    settings += ((6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
    skips = (1, 3, 6, 13, 18)
    out_channels = (3, 16, 24, 32, 96, 1280)

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, 32, 3, 2, act=nn.ReLU6)]
        cin = 32
        for expand, cout, repeats, stride in self.settings:
            for i in range(repeats):
                layers.append(_InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers.append(_conv_bn(cin, 1280, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = [x]
        for i, module in enumerate(self.features):
            x = module(x)
            if i in self.skips:
                features.append(x)
        return features


class _DecoderBlock(nn.Module):
    def __init__(self, cin: int, skip: int, cout: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn(cin + skip, cout, 3, act=nn.ReLU)
        self.conv2 = _conv_bn(cout, cout, 3, act=nn.ReLU)

    def forward(self, x: torch.Tensor, size: Any, skip: torch.Tensor | None) -> torch.Tensor:
        x = functional.interpolate(x, size=size, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        out: torch.Tensor = self.conv2(self.conv1(x))
        return out


class _UnetDecoder(nn.Module):
    def __init__(self, encoder_channels: tuple[int, ...], widths: tuple[int, ...]) -> None:
        super().__init__()
        deep_first = encoder_channels[1:][::-1]
        ins = [deep_first[0], *widths[:-1]]
        skips = [*deep_first[1:], 0]
        self.blocks = nn.ModuleList(
            _DecoderBlock(i, s, o) for i, s, o in zip(ins, skips, widths, strict=True)
        )

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        sizes = [f.shape[2:] for f in features][::-1]
        deep_first = features[1:][::-1]
        x, skips = deep_first[0], deep_first[1:]
        for i, block in enumerate(self.blocks):
            x = block(x, sizes[i + 1], skips[i] if i < len(skips) else None)
        return x


class PlainUnet(nn.Module):
    """smp's ``Unet(encoder_name="mobilenet_v2", encoder_depth=5)`` in plain torch, with
    the same parameter names: loads the bundle's weights and computes the same logits."""

    def __init__(self, spec: Spec) -> None:
        super().__init__()
        shipped = (spec.head, spec.architecture, spec.encoder, spec.encoder_depth)
        if shipped != ("segmentation", "Unet", "mobilenet_v2", 5):
            raise ValueError(
                f"the plain-torch network covers segmentation Unet/mobilenet_v2 with 5 stages, "
                f"not {shipped}; install segmentation-models-pytorch (--prepare)"
            )
        self.encoder = _MobileNetV2Encoder()
        self.decoder = _UnetDecoder(_MobileNetV2Encoder.out_channels, spec.decoder_channels)
        self.segmentation_head = nn.Sequential(
            nn.Conv2d(spec.decoder_channels[-1], 1, kernel_size=3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.segmentation_head(self.decoder(self.encoder(x)))
        return out


@dataclass
class Loaded:
    """The deployed model on CPU in float32, and where it came from."""

    deployed: nn.Module
    network: nn.Module
    spec: Spec
    source: str
    notes: list[str] = field(default_factory=list)


def _read_manifest(bundle: Path) -> dict[str, Any]:
    manifest: dict[str, Any] = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    return manifest


def _verified(bundle: Path, role: str) -> Path:
    """The artefact's path after checking its size and sha256 against the manifest."""
    artifact = _read_manifest(bundle)["artifacts"][role]
    path = (bundle / artifact["path"]).resolve()
    if not path.is_relative_to(bundle.resolve()):
        raise ValueError(f"{role} ({artifact['path']}) resolves outside {bundle}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if path.stat().st_size != artifact["bytes"] or digest != artifact["sha256"]:
        raise ValueError(f"{path} does not match the sha256 and size in {bundle}/manifest.json")
    return path


def _spec(bundle: Path) -> Spec:
    raw = _read_manifest(bundle)["spec"]
    known = {k: raw[k] for k in Spec.__dataclass_fields__ if k in raw}
    for key in ("decoder_channels", "mean", "std"):
        if key in known:
            known[key] = tuple(known[key])
    return Spec(**known)


def _from_fakewatch(bundle: Path) -> Loaded:
    from fakewatch.engines.bundle import EngineBundle
    from fakewatch.engines.export import load_network
    from fakewatch.engines.model import DeployedSegmenter

    loaded = EngineBundle.load(bundle)
    network = load_network(loaded)
    deployed = DeployedSegmenter(network, loaded.spec).eval()
    return Loaded(deployed, network, _spec(bundle), "fakewatch (EngineBundle.load, load_network)")


def _load_into(network: nn.Module, bundle: Path) -> str:
    state, reader = _load_state(_verified(bundle, "weights"))
    missing, unexpected = network.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"weights do not fit: missing {sorted(missing)[:5]}, "
            f"unexpected {sorted(unexpected)[:5]}"
        )
    return reader


def _from_smp(bundle: Path) -> Loaded:
    notes = []
    stand_in = _stand_in_for_safetensors()
    if stand_in:
        notes.append(stand_in)
    import segmentation_models_pytorch as smp

    spec = _spec(bundle)
    if spec.head != "segmentation":
        raise ValueError(f"head {spec.head!r}: only segmentation bundles are benchmarked")
    network = smp.create_model(
        spec.architecture,
        encoder_name=spec.encoder,
        encoder_depth=spec.encoder_depth,
        encoder_weights=None,
        decoder_channels=list(spec.decoder_channels),
        in_channels=3,
        classes=1,
    )
    reader = _load_into(network, bundle)
    network.eval()
    where = Path(smp.__file__).parent.parent
    source = f"segmentation-models-pytorch {smp.__version__} from {where}, weights by {reader}"
    return Loaded(Deployed(network, spec).eval(), network, spec, source, notes)


def _from_plain_torch(bundle: Path) -> Loaded:
    spec = _spec(bundle)
    network = PlainUnet(spec)
    reader = _load_into(network, bundle)
    network.eval()
    source = f"plain-torch Unet/mobilenet_v2 in benchmarks/gpu.py, weights by {reader}"
    return Loaded(Deployed(network, spec).eval(), network, spec, source)


def load_model(bundle: Path, source: str = "auto") -> Loaded:
    """The bundle's deployed model on CPU (float32), by the first way that works."""
    reasons: list[str] = []
    attempts: list[tuple[str, Callable[[Path], Loaded]]] = []
    if source in ("auto", "fakewatch"):
        attempts.append(("fakewatch", _from_fakewatch))
    if source in ("auto", "smp"):
        attempts.append(("smp", _from_smp))
        attempts.append(("smp from build/gpu-site", _from_gpu_site))
    if source in ("auto", "plain"):
        attempts.append(("plain torch", _from_plain_torch))
    for name, attempt in attempts:
        try:
            loaded = attempt(bundle)
        except Exception as error:
            reasons.append(f"{name}: {type(error).__name__}: {error}")
            continue
        loaded.notes[:0] = [f"not used: {reason}" for reason in reasons]
        return loaded
    raise RuntimeError("the network could not be built: " + "; ".join(reasons))


def _from_gpu_site(bundle: Path) -> Loaded:
    if not GPU_SITE.is_dir():
        raise FileNotFoundError(f"{GPU_SITE} is absent (make it with --prepare)")
    if str(GPU_SITE) not in sys.path:
        sys.path.insert(0, str(GPU_SITE))
        importlib.invalidate_caches()
        # forget the first try's failed imports (and the stand-in for safetensors)
        stand_in = getattr(sys.modules.get("safetensors.torch"), "load_file", None)
        stale = {"segmentation_models_pytorch"}
        if stand_in is read_safetensors:
            stale.add("safetensors")
        for name in [m for m in sys.modules if m.split(".")[0] in stale]:
            del sys.modules[name]
    return _from_smp(bundle)


def count_flops(network: nn.Module, size: int) -> float:
    """FLOPs (2 x multiply-adds) of one crop through the network, counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 3, size, size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        network(x)
    return float(counter.get_total_flops())


# ---------------------------------------------------------------------------------------
# Timing helpers


class OutOfTime(BaseException):
    """A step ran past its time limit (a BaseException so library code does not catch it)."""


class Skip(Exception):
    """A variant that cannot run here; the message says why."""


@contextlib.contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Raise :class:`OutOfTime` in this (main) thread when ``seconds`` have passed.

    Nests: an enclosing limit that ends sooner still applies, and it is re-armed after.
    """
    if seconds <= 0:
        raise OutOfTime(f"{what}: no time left in the budget")
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return
    outer, _ = signal.getitimer(signal.ITIMER_REAL)
    if outer:
        seconds = min(seconds, outer)

    def expire(signum: int, frame: object) -> None:
        raise OutOfTime(f"{what} took longer than {seconds:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    start = time.monotonic()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - start), 1e-3))


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@contextlib.contextmanager
def backend_flags(tf32: bool, benchmark: bool) -> Iterator[None]:
    """cuDNN/cuBLAS TF32 and cuDNN's algorithm search for the calls inside."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.allow_tf32, cudnn.benchmark, matmul.allow_tf32)
    cudnn.allow_tf32, cudnn.benchmark, matmul.allow_tf32 = tf32, benchmark, tf32
    try:
        yield
    finally:
        cudnn.allow_tf32, cudnn.benchmark, matmul.allow_tf32 = saved


def sample_crops(size: int, count: int, seed: int = 0) -> torch.Tensor:
    """Smooth random uint8 images (N, S, S, 3): nearer to faces than white noise."""
    generator = torch.Generator().manual_seed(seed)
    small = torch.randint(0, 256, (count, 3, 8, 8), generator=generator).float()
    big = functional.interpolate(small, size=(size, size), mode="bicubic", align_corners=False)
    return big.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


# ---------------------------------------------------------------------------------------
# Variants


class Variant:
    """One way to run the deployed model. ``prepare`` readies it for a batch size (and may
    raise :class:`Skip`); calling it runs the prepared batch and returns the masks."""

    name: str = ""
    precision: str = "fp32"  # which GEMM ceiling it is measured against
    phase: int = 1

    def prepare(self, crops: torch.Tensor) -> None:
        self.crops = crops

    def __call__(self) -> torch.Tensor:
        raise NotImplementedError

    def release(self) -> None:
        """Free what ``prepare`` made for this batch size."""

    def close(self) -> None:
        """Free what the variant holds for every batch size."""


class Eager(Variant):
    def __init__(
        self, name: str, model: nn.Module, precision: str, tf32: bool, benchmark: bool
    ) -> None:
        self.name, self.model, self.precision = name, model, precision
        self.tf32, self.benchmark = tf32, benchmark

    def __call__(self) -> torch.Tensor:
        with torch.inference_mode(), backend_flags(self.tf32, self.benchmark):
            out: torch.Tensor = self.model(self.crops)
            return out


class Graphed(Variant):
    """One CUDA graph per batch size around the fp16 model; a static input buffer."""

    def __init__(self, name: str, model: nn.Module) -> None:
        self.name, self.model, self.precision = name, model, "fp16"

    def prepare(self, crops: torch.Tensor) -> None:
        self.crops = crops
        self.static_in = crops.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.inference_mode(), backend_flags(False, True):
            with torch.cuda.stream(stream):
                for _ in range(3):
                    self.model(self.static_in)
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.static_out: torch.Tensor = self.model(self.static_in)

    def __call__(self) -> torch.Tensor:
        self.static_in.copy_(self.crops)
        self.graph.replay()
        return self.static_out

    def release(self) -> None:
        for name in ("graph", "static_in", "static_out"):
            self.__dict__.pop(name, None)


class Compiled(Variant):
    """``torch.compile`` of the fp16 model; the first call per batch size compiles."""

    phase = 3

    def __init__(
        self, model: nn.Module, mode: str, dynamic: bool, precision: str, limit_s: float
    ) -> None:
        self.name = f"{precision} +torch.compile({mode})"
        self.precision, self.mode, self.limit_s = precision, mode, limit_s
        self.model = model
        self.compiled = torch.compile(model, mode=mode, dynamic=dynamic)
        self.spent_s = 0.0
        self.compile_s: dict[int, float] = {}
        from torch import _dynamo

        config = _dynamo.config
        for key in ("cache_size_limit", "recompile_limit"):
            if hasattr(config, key):
                setattr(config, key, max(64, getattr(config, key)))

    def prepare(self, crops: torch.Tensor) -> None:
        self.crops = crops
        left = self.limit_s - self.spent_s
        if left <= 0:
            raise Skip(f"--compile-limit-s {self.limit_s:.0f} s is spent")
        start = time.perf_counter()
        try:
            with time_limit(left, f"torch.compile({self.mode})"):
                self()
                _sync(crops.device)
        finally:
            elapsed = time.perf_counter() - start
            self.spent_s += elapsed
            self.compile_s[crops.shape[0]] = elapsed
        print(f"    torch.compile({self.mode}) batch {crops.shape[0]}: first call {elapsed:.1f} s")

    def __call__(self) -> torch.Tensor:
        with torch.inference_mode(), backend_flags(False, True):
            mark = getattr(torch.compiler, "cudagraph_mark_step_begin", None)
            if mark is not None and self.crops.is_cuda:
                mark()
            out: torch.Tensor = self.compiled(self.crops)
            return out

    def close(self) -> None:
        from torch import _dynamo

        _dynamo.reset()


class TorchTensorRT(Variant):
    """torch-tensorrt, compiled once for batch sizes 1 to ``max_batch`` from the fp16
    model (so the engine is fp16 whether or not this version honours
    ``enabled_precisions``)."""

    name, precision, phase = "torch-tensorrt fp16", "fp16", 2

    def __init__(self, half: nn.Module, size: int, max_batch: int, limit_s: float) -> None:
        probe_import("torch_tensorrt")
        import torch_tensorrt

        model = copy.deepcopy(half).eval()
        spec = torch_tensorrt.Input(
            min_shape=(1, size, size, 3),
            opt_shape=(max(1, max_batch // 4), size, size, 3),
            max_shape=(max_batch, size, size, 3),
            dtype=torch.uint8,
        )
        start = time.perf_counter()
        with time_limit(limit_s, "torch_tensorrt.compile"):
            self.module = torch_tensorrt.compile(
                model, ir="dynamo", inputs=[spec], enabled_precisions={torch.float16}
            )
        self.build_s = time.perf_counter() - start
        self.version = str(getattr(torch_tensorrt, "__version__", "?"))
        print(f"    torch-tensorrt {self.version}: built in {self.build_s:.1f} s")

    def __call__(self) -> torch.Tensor:
        with torch.inference_mode():
            out: torch.Tensor = self.module(self.crops)
            return out

    def close(self) -> None:
        del self.module


class OnnxRuntime(Variant):
    """The bundle's ONNX graph; input and output bound to torch's buffers (no copies)."""

    def __init__(
        self,
        onnx_path: Path,
        provider: str,
        options: dict[str, str],
        name: str,
        precision: str,
        limit_s: float,
    ) -> None:
        if provider != "CPUExecutionProvider":
            probe_import("onnxruntime")
        import numpy
        import onnxruntime as ort

        self.numpy = numpy
        self.name, self.precision = name, precision
        self.phase = 2 if provider == "TensorrtExecutionProvider" else 1
        available = ort.get_available_providers()
        if provider not in available:
            raise Skip(f"onnxruntime {ort.__version__} has no {provider} ({', '.join(available)})")
        providers: list[Any] = [(provider, options)]
        if provider != "CPUExecutionProvider":
            providers.append("CPUExecutionProvider")
        session_options = ort.SessionOptions()
        session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        start = time.perf_counter()
        with time_limit(limit_s, f"onnxruntime {provider} session"):
            self.session = ort.InferenceSession(
                str(onnx_path), sess_options=session_options, providers=providers
            )
        if self.session.get_providers()[0] != provider:
            raise Skip(f"onnxruntime: {provider} did not initialise")
        self.build_s = time.perf_counter() - start
        self.provider_options = self.session.get_provider_options().get(provider, {})
        if provider == "CUDAExecutionProvider":
            tf32 = self.provider_options.get("use_tf32", "1") != "0"
            self.precision = "tf32" if tf32 else "fp32"
            self.name = f"{name} ({self.precision})"
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.version = ort.__version__
        print(f"    onnxruntime {ort.__version__} {provider}: session in {self.build_s:.1f} s")

    def prepare(self, crops: torch.Tensor) -> None:
        self.crops = crops
        n, size = crops.shape[0], crops.shape[1]
        self.out = torch.empty((n, size, size), dtype=torch.float32, device=crops.device)
        kind = "cuda" if crops.is_cuda else "cpu"
        index = crops.device.index or 0
        binding = self.session.io_binding()
        binding.bind_input(
            self.input_name, kind, index, self.numpy.uint8, tuple(crops.shape), crops.data_ptr()
        )
        binding.bind_output(
            self.output_name,
            kind,
            index,
            self.numpy.float32,
            tuple(self.out.shape),
            self.out.data_ptr(),
        )
        self.binding = binding

    def __call__(self) -> torch.Tensor:
        self.session.run_with_iobinding(self.binding)
        return self.out

    def release(self) -> None:
        for name in ("binding", "out"):
            self.__dict__.pop(name, None)

    def close(self) -> None:
        del self.session


# ---------------------------------------------------------------------------------------
# Measurement


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Row:
    """One variant at one batch size."""

    variant: str
    batch: int
    precision: str
    phase: int
    latencies_s: list[float] = field(default_factory=list, repr=False)
    crops_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    calls: int = 0
    max_abs_diff: float | None = None
    mean_abs_diff: float | None = None
    peak_memory_mb: float | None = None
    gflops_per_s: float | None = None
    ceiling_fraction: float | None = None
    ratio_vs_baseline: float | None = None

    def finish(self) -> None:
        self.calls = len(self.latencies_s)
        self.crops_per_s = self.batch * self.calls / sum(self.latencies_s)
        self.p50_ms = percentile(self.latencies_s, 50) * 1000
        self.p99_ms = percentile(self.latencies_s, 99) * 1000


@dataclass
class Report:
    """Everything the run found; written after every batch size."""

    environment: dict[str, Any]
    settings: dict[str, Any]
    model: dict[str, Any] = field(default_factory=dict)
    gemm_ceiling_flops: dict[str, float] = field(default_factory=dict)
    flops_per_crop: float = 0.0
    rows: list[Row] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    transfers: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    complete: bool = False

    def skip(self, variant: str, batch: int | None, reason: str) -> None:
        where = f" at batch {batch}" if batch is not None else ""
        print(f"  skipped {variant}{where}: {reason}", flush=True)
        self.skipped.append({"variant": variant, "batch": batch, "reason": reason})

    def fill_derived(self) -> None:
        base = {r.batch: r for r in self.rows if r.variant == BASELINE}
        for row in self.rows:
            row.gflops_per_s = row.crops_per_s * self.flops_per_crop / 1e9
            ceiling = self.gemm_ceiling_flops.get(row.precision)
            row.ceiling_fraction = row.gflops_per_s * 1e9 / ceiling if ceiling else None
            ref = base.get(row.batch)
            row.ratio_vs_baseline = row.crops_per_s / ref.crops_per_s if ref else None

    def write(self, out: Path) -> None:
        self.fill_derived()
        out.mkdir(parents=True, exist_ok=True)
        data = asdict(self)
        for row in data["rows"]:
            row.pop("latencies_s")
        (out / JSON_NAME).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        (out / MARKDOWN_NAME).write_text(markdown(self) + "\n", encoding="utf-8")


def measure_batch(
    variants: list[Variant],
    crops: torch.Tensor,
    reference: torch.Tensor,
    report: Report,
    cell_s: float,
    blocks: int,
    warmup_s: float,
    deadline: float,
) -> None:
    """Prepare, warm up, time in interleaved turns and check the accuracy of ``variants``
    at one batch size; add a row per variant that ran."""
    device, batch = crops.device, crops.shape[0]
    ready: list[Variant] = []
    peaks: dict[str, float | None] = {}
    for variant in variants:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        try:
            with time_limit(deadline - time.monotonic(), f"{variant.name} warm-up"):
                variant.prepare(crops)
                start, calls = time.perf_counter(), 0
                while calls < 3 or time.perf_counter() - start < warmup_s:
                    variant()
                    _sync(device)
                    calls += 1
        except (Exception, OutOfTime) as error:
            report.skip(variant.name, batch, _reason(error))
            variant.release()
            continue
        peaks[variant.name] = (
            torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        )
        ready.append(variant)
    rows = {v.name: Row(v.name, batch, v.precision, v.phase) for v in ready}
    turn = cell_s / blocks
    for _ in range(blocks):
        for variant in ready:
            latencies = rows[variant.name].latencies_s
            spent, calls = 0.0, 0
            while spent < turn or calls < 2:
                start = time.perf_counter()
                variant()
                _sync(device)
                elapsed = time.perf_counter() - start
                latencies.append(elapsed)
                spent += elapsed
                calls += 1
    for variant in ready:
        row = rows[variant.name]
        row.finish()
        masks = variant().float()
        _sync(device)
        difference = (masks.reshape(reference.shape) - reference).abs()
        row.max_abs_diff = float(difference.max())
        row.mean_abs_diff = float(difference.mean())
        row.peak_memory_mb = peaks[variant.name]
        variant.release()
        report.rows.append(row)
        print(
            f"  {row.variant:<44} batch {batch:>3}: {row.crops_per_s:9.1f} crops/s  "
            f"p50 {row.p50_ms:8.2f} ms  p99 {row.p99_ms:8.2f} ms  "
            f"max|d| {row.max_abs_diff:.2e}  ({row.calls} calls)",
            flush=True,
        )
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _reason(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip()
    first = text.splitlines()[0] if text else type(error).__name__
    return first[:300]


def probe_import(module: str, timeout_s: float = 120.0) -> None:
    """Raise :class:`Skip` unless ``module`` is installed and imports in a child process
    (a mismatched CUDA extension can crash the interpreter that imports it)."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise Skip(f"{module} is not installed")
    try:
        done = subprocess.run(
            [sys.executable, "-c", f"import torch, {module}"],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as error:
        raise Skip(f"import {module} took over {timeout_s:.0f} s") from error
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise Skip(f"import {module} failed in a child process (status {done.returncode}): {last}")


def gemm_ceiling(device: torch.device, n: int, seconds: float) -> dict[str, float]:
    """The best FLOP/s of ``torch.matmul`` on n x n matrices, per precision."""
    kinds = [("fp16", torch.float16, False), ("bf16", torch.bfloat16, False)]
    kinds += [("tf32", torch.float32, True), ("fp32", torch.float32, False)]
    if device.type == "cpu":
        kinds = [k for k in kinds if k[0] in ("fp32", "bf16")]
    rates: dict[str, float] = {}
    for key, dtype, tf32 in kinds:
        generator = torch.Generator(device=device).manual_seed(0)
        a = torch.randn(n, n, device=device, dtype=dtype, generator=generator)
        b = torch.randn(n, n, device=device, dtype=dtype, generator=generator)
        with backend_flags(tf32, False):
            for _ in range(3):
                torch.matmul(a, b)
            _sync(device)
            best, total, start = 0.0, 0.0, time.perf_counter()
            while total < seconds:
                t0 = time.perf_counter()
                for _ in range(5):
                    torch.matmul(a, b)
                _sync(device)
                elapsed = time.perf_counter() - t0
                best = max(best, 5 * 2 * n**3 / elapsed)
                total = time.perf_counter() - start
        rates[key] = best
        print(f"  measured GEMM ceiling {key:>4}: {best / 1e12:8.2f} TFLOP/s ({n} x {n} matmul)")
        del a, b
    return rates


def measure_transfers(device: torch.device, size: int, batches: list[int]) -> list[dict[str, Any]]:
    """Pinned host -> device copies of uint8 crops and device -> host copies of masks."""
    results = []
    for batch in batches:
        host_in = torch.zeros((batch, size, size, 3), dtype=torch.uint8).pin_memory()
        host_out = torch.empty((batch, size, size), dtype=torch.float32).pin_memory()
        dev_in = torch.empty_like(host_in, device=device)
        dev_out = torch.zeros((batch, size, size), dtype=torch.float32, device=device)
        timings: dict[str, float] = {}
        for label, target, source in (("h2d_ms", dev_in, host_in), ("d2h_ms", host_out, dev_out)):
            samples = []
            for i in range(21):
                start = time.perf_counter()
                target.copy_(source, non_blocking=True)
                _sync(device)
                if i:  # the first copy is a warm-up
                    samples.append(time.perf_counter() - start)
            timings[label] = percentile(samples, 50) * 1000
        results.append(
            {
                "batch": batch,
                "h2d_ms": timings["h2d_ms"],
                "h2d_gb_per_s": host_in.numel() / timings["h2d_ms"] / 1e6,
                "d2h_ms": timings["d2h_ms"],
                "d2h_gb_per_s": host_out.numel() * 4 / timings["d2h_ms"] / 1e6,
            }
        )
    return results


# ---------------------------------------------------------------------------------------
# Environment and output


def environment(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_cores": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "device": "cpu",
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            device=torch.cuda.get_device_name(device),
            compute_capability=f"{props.major}.{props.minor}",
            multiprocessors=props.multi_processor_count,
            memory_gib=round(props.total_memory / 2**30, 1),
        )
    smi = shutil.which("nvidia-smi")
    if smi:
        for key, args in (
            ("nvidia_smi_L", ["-L"]),
            (
                "nvidia_smi_query",
                [
                    "--query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,"
                    "power.limit,pstate,temperature.gpu",
                    "--format=csv",
                ],
            ),
        ):
            try:
                done = subprocess.run([smi, *args], capture_output=True, text=True, timeout=20)
                info[key] = (done.stdout or done.stderr).strip()
            except (OSError, subprocess.SubprocessError) as error:
                info[key] = f"failed: {error}"
    else:
        info["nvidia_smi_L"] = "nvidia-smi not found"
    for package in ("torch_tensorrt", "tensorrt", "onnxruntime", "triton", "numpy"):
        try:
            info[f"{package}_version"] = importlib.metadata.version(
                package.replace("_", "-") if package == "torch_tensorrt" else package
            )
        except importlib.metadata.PackageNotFoundError:
            info[f"{package}_version"] = None
    return info


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def ratio_matrix(report: Report) -> str:
    """crops/s of each variant divided by eager fp32's at the same batch size."""
    batches = sorted({r.batch for r in report.rows})
    names = list(dict.fromkeys(r.variant for r in report.rows))
    cells = {(r.variant, r.batch): r.ratio_vs_baseline for r in report.rows}
    lines = [
        "| x crops/s vs eager fp32 | " + " | ".join(f"batch {b}" for b in batches) + " |",
        "|---|" + "---|" * len(batches),
    ]
    for name in names:
        values = " | ".join(_fmt(cells.get((name, b)), ".2f") for b in batches)
        lines.append(f"| {name} | {values} |")
    return "\n".join(lines)


def markdown(report: Report) -> str:
    report.fill_derived()
    env, settings = report.environment, report.settings
    out = [
        f"# fakewatch engine on {env.get('device')} "
        f"({'complete' if report.complete else 'partial: the run stopped early'})",
        "",
        f"- time: {env.get('time_utc')}; torch {env.get('torch')}, CUDA {env.get('cuda')}, "
        f"cuDNN {env.get('cudnn')}, Python {env.get('python')}",
        f"- driver: {env.get('nvidia_smi_L', '-')}".replace("\n", "; "),
        f"- CPU: {env.get('cpu', '-')} ({env.get('cpu_cores')} cores)",
        f"- model: {report.model.get('source')} ({report.model.get('bundle')})",
        f"- FLOPs per crop: {report.flops_per_crop / 1e9:.3f} GFLOP "
        "(torch.utils.flop_counter, batch 1)",
        f"- settings: {json.dumps(settings)}",
        "- timing: one batch, uint8 NHWC crops on the device in, float32 masks on the device "
        "out; perf_counter around the call and a synchronize; warm-up excluded",
        "",
        "Measured GEMM ceiling (best torch.matmul rate; not the datasheet peak):",
        "",
        "| precision | TFLOP/s |",
        "|---|---|",
        *[f"| {k} | {v / 1e12:.2f} |" for k, v in report.gemm_ceiling_flops.items()],
        "",
        "| variant | batch | crops/s | p50 ms | p99 ms | x crops/s vs eager fp32 | GFLOP/s "
        "| % of GEMM ceiling | max abs diff vs fp32 | peak MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(report.rows, key=lambda r: (r.batch, r.phase)):
        fraction = None if r.ceiling_fraction is None else 100 * r.ceiling_fraction
        out.append(
            f"| {r.variant} | {r.batch} | {r.crops_per_s:.1f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} "
            f"| {_fmt(r.ratio_vs_baseline, '.2f')} | {_fmt(r.gflops_per_s, '.0f')} "
            f"| {_fmt(fraction, '.1f')} ({r.precision}) | {_fmt(r.max_abs_diff, '.2e')} "
            f"| {_fmt(r.peak_memory_mb, '.0f')} |"
        )
    if report.transfers:
        out += [
            "",
            "Host <-> device copies (pinned memory; not in the timings above):",
            "",
            "| batch | uint8 crops h2d ms | GB/s | float32 masks d2h ms | GB/s |",
            "|---|---|---|---|---|",
        ]
        for t in report.transfers:
            out.append(
                f"| {t['batch']} | {t['h2d_ms']:.3f} | {t['h2d_gb_per_s']:.1f} "
                f"| {t['d2h_ms']:.3f} | {t['d2h_gb_per_s']:.1f} |"
            )
    if report.skipped:
        out += ["", "Skipped:", ""]
        out += [
            f"- {s['variant']}"
            + (f" (batch {s['batch']})" if s["batch"] is not None else "")
            + f": {s['reason']}"
            for s in report.skipped
        ]
    if report.notes:
        out += ["", "Notes:", "", *[f"- {note}" for note in report.notes]]
    out += ["", ratio_matrix(report)]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------
# The run


def _parse_batches(text: str) -> list[int]:
    return sorted({int(part) for part in text.split(",") if part.strip()})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prepare", action="store_true", help="fill build/gpu-site and stop")
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--quick", action="store_true", help="batches 1,2 and short cells")
    parser.add_argument("--bundle", type=Path, default=DEFAULT_BUNDLE)
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu-results"))
    parser.add_argument("--batches", default=None, help="default 1,2,4,...,128 (quick: 1,2)")
    parser.add_argument("--budget-s", type=float, default=360.0, help="stop starting work then")
    parser.add_argument("--cell-s", type=float, default=None, help="timed s per variant+batch")
    parser.add_argument("--blocks", type=int, default=2, help="interleaved turns per cell")
    parser.add_argument("--warmup-s", type=float, default=None)
    parser.add_argument(
        "--model",
        default="auto",
        choices=("auto", "fakewatch", "smp", "plain"),
        help="how to build the network (auto: the first that works, in that order)",
    )
    parser.add_argument("--compile", default="auto", choices=("auto", "on", "off"))
    parser.add_argument("--compile-mode", default="reduce-overhead")
    parser.add_argument("--compile-static", action="store_true", help="one compile per batch size")
    parser.add_argument("--compile-limit-s", type=float, default=150.0)
    parser.add_argument("--tensorrt", default="auto", choices=("auto", "off"))
    parser.add_argument("--trt-min-s", type=float, default=120.0)
    parser.add_argument("--trt-limit-s", type=float, default=240.0)
    parser.add_argument("--gemm-n", type=int, default=None)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.prepare:
        return prepare()
    started = time.monotonic()
    deadline = started + args.budget_s
    if args.device == "cuda" and not torch.cuda.is_available():
        print(
            f"no CUDA device is visible to torch {torch.__version__} (CUDA build "
            f"{torch.version.cuda}); on a machine without one run --device cpu --quick",
            file=sys.stderr,
        )
        return 2
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    batches = _parse_batches(args.batches or ("1,2" if args.quick else "1,2,4,8,16,32,64,128"))
    cell_s = args.cell_s if args.cell_s is not None else (0.3 if args.quick else 1.0)
    warmup_s = args.warmup_s if args.warmup_s is not None else (0.05 if args.quick else 0.2)
    gemm_n = args.gemm_n or (1024 if args.quick or not cuda else 8192)
    compile_on = args.compile == "on" or (args.compile == "auto" and cuda)
    settings = {
        "batches": batches,
        "cell_s": cell_s,
        "blocks": args.blocks,
        "warmup_s": warmup_s,
        "budget_s": args.budget_s,
        "compile_mode": args.compile_mode,
        "compile_dynamic": not args.compile_static,
        "compile_limit_s": args.compile_limit_s,
        "gemm_n": gemm_n,
        "device": args.device,
    }
    report = Report(environment(device), settings)
    out: Path = args.out
    print(f"device: {report.environment['device']}; torch {torch.__version__}; out: {out}")
    if "nvidia_smi_L" in report.environment:
        print(f"nvidia-smi -L: {report.environment['nvidia_smi_L']}")

    loaded = load_model(args.bundle, args.model)
    report.model = {"source": loaded.source, "bundle": str(args.bundle)}
    report.notes += loaded.notes
    print(f"model: {loaded.source}")
    for note in loaded.notes:
        print(f"  {note}")
    size = loaded.spec.input_size
    report.flops_per_crop = count_flops(loaded.network, size)
    print(f"FLOPs per crop: {report.flops_per_crop / 1e9:.3f} GFLOP")
    report.gemm_ceiling_flops = gemm_ceiling(device, gemm_n, 0.2 if args.quick else 1.5)
    if cuda:
        report.transfers = measure_transfers(device, size, batches)
    report.write(out)

    fp32 = copy.deepcopy(loaded.deployed).to(device)
    low_dtype, low = (torch.float16, "fp16") if cuda else (torch.bfloat16, "bf16")
    half = copy.deepcopy(loaded.deployed).to(device, dtype=low_dtype)
    if cuda:
        fp32 = fp32.to(memory_format=torch.channels_last)
        half = half.to(memory_format=torch.channels_last)
        with torch.inference_mode():
            small = sample_crops(size, 2, seed=3)
            on_cpu = loaded.deployed(small)
            with backend_flags(False, False):
                on_gpu = fp32(small.to(device)).cpu()
        report.notes.append(
            f"eager fp32 on the GPU vs on the CPU, 2 crops: max abs diff "
            f"{float((on_cpu - on_gpu).abs().max()):.2e}"
        )
    layout = "channels_last" if cuda else "contiguous, as fakewatch's torch/cpu"
    report.notes.append(f"eager variants: {layout}; reduced precision is {low} on {device.type}")

    phase1: list[Variant] = [
        Eager(BASELINE, fp32, "fp32", tf32=False, benchmark=False),
        Eager(f"eager {low}", half, low, tf32=False, benchmark=False),
    ]
    if cuda:
        phase1.insert(1, Eager("eager tf32", fp32, "tf32", tf32=True, benchmark=False))
        phase1.append(Eager("eager fp16 +cudnn.benchmark", half, "fp16", False, True))
        phase1.append(Graphed("fp16 +cudnn.benchmark +CUDA graph", half))
    else:
        for name in ("eager tf32", "eager fp16 +cudnn.benchmark", "fp16 +CUDA graph"):
            report.skip(name, None, "needs a CUDA device")
    ort_provider = "CUDAExecutionProvider" if cuda else "CPUExecutionProvider"
    ort_name = f"onnxruntime {ort_provider.removesuffix('ExecutionProvider')} EP"
    try:
        onnx_path = _verified(args.bundle, "onnx")
        phase1.append(
            OnnxRuntime(
                onnx_path, ort_provider, {}, ort_name, "fp32", max(1.0, deadline - time.monotonic())
            )
        )
    except (Exception, OutOfTime) as error:
        report.skip(ort_name, None, _reason(error))

    pool = sample_crops(size, max(batches), seed=0)
    references: dict[int, torch.Tensor] = {}

    def reference(batch: int, crops: torch.Tensor) -> torch.Tensor:
        if batch not in references:
            with torch.inference_mode(), backend_flags(False, False):
                references[batch] = fp32(crops).float()
        return references[batch]

    def run_phase(variants: list[Variant], title: str) -> None:
        print(f"\n{title}", flush=True)
        for batch in batches:
            left = deadline - time.monotonic()
            needed = len(variants) * (cell_s + warmup_s)
            if left < needed:
                for variant in variants:
                    report.skip(variant.name, batch, f"budget: {left:.0f} s left of --budget-s")
                continue
            crops = pool[:batch].to(device)
            measure_batch(
                variants,
                crops,
                reference(batch, crops),
                report,
                cell_s,
                args.blocks,
                warmup_s,
                deadline,
            )
            report.write(out)
        for variant in variants:
            with contextlib.suppress(Exception):
                variant.close()

    run_phase(phase1, "eager, CUDA graph and onnxruntime" if cuda else "eager and onnxruntime")

    if not cuda or args.tensorrt == "off":
        why = "needs a CUDA device" if not cuda else "--tensorrt off"
        report.skip("torch-tensorrt fp16", None, why)
        report.skip("onnxruntime TensorRT EP fp16", None, why)
    else:
        trt_variants: list[Variant] = []
        left = deadline - time.monotonic()
        max_batch = max(batches)
        if left < args.trt_min_s:
            report.skip("torch-tensorrt fp16", None, f"budget: {left:.0f} s left")
        else:
            try:
                trt_variants.append(
                    TorchTensorRT(half, size, max_batch, min(args.trt_limit_s, left))
                )
            except (Exception, OutOfTime) as error:
                report.skip("torch-tensorrt fp16", None, _reason(error))
        left = deadline - time.monotonic()
        if left < args.trt_min_s:
            report.skip("onnxruntime TensorRT EP fp16", None, f"budget: {left:.0f} s left")
        else:
            shape = f"{size}x{size}x3"
            options = {
                "trt_fp16_enable": "True",
                "trt_profile_min_shapes": f"crops:1x{shape}",
                "trt_profile_opt_shapes": f"crops:{max(1, max_batch // 4)}x{shape}",
                "trt_profile_max_shapes": f"crops:{max_batch}x{shape}",
            }
            try:
                trt_variants.append(
                    OnnxRuntime(
                        _verified(args.bundle, "onnx"),
                        "TensorrtExecutionProvider",
                        options,
                        "onnxruntime TensorRT EP fp16",
                        "fp16",
                        min(args.trt_limit_s, left),
                    )
                )
            except (Exception, OutOfTime) as error:
                report.skip("onnxruntime TensorRT EP fp16", None, _reason(error))
        if trt_variants:
            run_phase(trt_variants, "TensorRT")

    if not compile_on:
        report.skip("torch.compile", None, "off on cpu by default (--compile on to run it)")
    else:
        try:
            compiled = Compiled(
                half, args.compile_mode, not args.compile_static, low, args.compile_limit_s
            )
            run_phase([compiled], f"torch.compile(mode={args.compile_mode!r})")
            report.notes.append(
                "torch.compile first-call seconds per batch: "
                + ", ".join(f"{b}: {s:.1f}" for b, s in compiled.compile_s.items())
            )
        except (Exception, OutOfTime) as error:
            report.skip("torch.compile", None, _reason(error))

    report.complete = True
    report.notes.append(f"wall time {time.monotonic() - started:.0f} s")
    report.write(out)
    print("\n" + markdown(report).rsplit("\n\n", 1)[0])
    print(f"\nwrote {out / JSON_NAME} and {out / MARKDOWN_NAME}")
    print(
        f"\nFLOPs per crop {report.flops_per_crop / 1e9:.3f} GFLOP; measured GEMM ceiling: "
        + ", ".join(f"{k} {v / 1e12:.1f} TFLOP/s" for k, v in report.gemm_ceiling_flops.items())
    )
    print("\n" + ratio_matrix(report))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except OutOfTime as error:
        traceback.print_exc()
        print(f"stopped: {error}", file=sys.stderr)
        sys.exit(3)
