"""``engine.precision: auto``: the fastest precision whose parity with f32 was measured,
and passed, for this bundle on this kind of machine; f32 otherwise.

A reduced precision is trusted only through a check in the bundle's manifest
(:class:`~fakewatch.engines.bundle.PrecisionCheck`) that

- passed: the largest frame-score difference against f32, and the mean mask difference,
  within their limits;
- ran on crops held apart from the int8 calibration (``held_out``);
- ran on the same kind of machine: on CPU the same architecture and instruction sets
  that pick the runtime's kernels (:func:`fakewatch.engines.machine.cpu_kind`: VNNI,
  AVX-512 BF16, AMX, ...), on a GPU the same CUDA compute capability; the CPU's model
  name is recorded but may differ;
- ran with the same runtime versions as are installed now.

Anything else (a check that is missing, failed, or measured elsewhere or with other
versions) falls through to the next precision, and finally to f32, which needs no check.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from importlib import metadata

from fakewatch.engines.bundle import Manifest, MeasuredOn, PrecisionCheck
from fakewatch.engines.machine import cpu_kind, cpu_name

FASTEST_FIRST: dict[tuple[str, str], tuple[str, ...]] = {
    ("openvino", "cpu"): ("int8", "bf16", "f32"),
    ("onnxruntime", "cpu"): ("f32",),
    ("onnxruntime", "cuda"): ("f32",),
    ("onnxruntime", "tensorrt"): ("f32",),
    ("torch", "cpu"): ("bf16", "f32"),
    ("torch", "cuda"): ("fp16", "f32"),
    ("tensorrt", "cuda"): ("fp16", "f32"),
}
"""The precisions ``auto`` considers per backend and device kind, fastest first (int8
before bf16 on CPU: 2.8x against 1.9x f32's crops/s in BENCHMARKS.md)."""

RUNTIME_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "openvino": ("openvino",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "torch": ("torch",),
    "tensorrt": ("tensorrt", "torch-tensorrt"),
}
"""The installed distributions whose versions a backend's check records."""


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision ``auto`` picked and why, for logs and metrics."""

    precision: str
    reason: str


def runtime_versions(backend: str) -> dict[str, str]:
    """Installed versions of the distributions ``backend`` runs on (absent ones left out)."""
    versions = {}
    for name in RUNTIME_DISTRIBUTIONS.get(backend, ()):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def measured_here(backend: str, device_kind: str = "cpu", gpu_index: int = 0) -> MeasuredOn:
    """This machine as a check records it; on ``cuda`` the GPU at ``gpu_index`` too."""
    gpu = capability = None
    if device_kind != "cpu":
        import torch

        gpu = torch.cuda.get_device_name(gpu_index)
        capability = "{}.{}".format(*torch.cuda.get_device_capability(gpu_index))
    return MeasuredOn(
        cpu=cpu_name(),
        cpu_kind=cpu_kind(),
        gpu=gpu,
        gpu_capability=capability,
        runtimes=runtime_versions(backend),
    )


def distrust(check: PrecisionCheck | None, here: MeasuredOn) -> str | None:
    """Why ``check`` does not make its precision safe here; None when it does."""
    if check is None:
        return "has no parity check with f32"
    if not check.passed:
        return (
            f"failed its parity check with f32 (score difference "
            f"{check.score_max_abs_diff:.4f}, limit {check.tolerance}; mean mask "
            f"difference {check.mean_abs_diff:.4f}, limit {check.mean_tolerance})"
        )
    measured = check.measured_on
    if measured is None or not check.held_out:
        return "has a parity check of an older format (no machine or held-out crops recorded)"
    if check.device == "cpu" and measured.cpu_kind != here.cpu_kind:
        return (
            f"was checked on another kind of CPU ({' '.join(measured.cpu_kind)}; this one: "
            f"{' '.join(here.cpu_kind)})"
        )
    if check.device != "cpu" and measured.gpu_capability != here.gpu_capability:
        return (
            f"was checked on a GPU of compute capability {measured.gpu_capability} "
            f"({measured.gpu}); this one is {here.gpu_capability} ({here.gpu})"
        )
    for name, version in sorted(measured.runtimes.items()):
        now = here.runtimes.get(name)
        if now != version:
            return f"was checked with {name} {version}; installed: {now or 'none'}"
    return None


def choose_precision(
    manifest: Manifest, backend: str, device_kind: str, here: MeasuredOn | None
) -> PrecisionChoice:
    """The fastest precision of :data:`FASTEST_FIRST` that ``manifest`` has a trusted
    check for on ``here``, else f32; the reason names every faster one passed over.

    ``here`` may be None where the backend offers f32 only (nothing to compare)."""
    candidates = FASTEST_FIRST.get((backend, device_kind), ("f32",))
    passed_over = []
    for precision in candidates:
        if precision == "f32":
            break
        check = manifest.precision_check(backend, precision, device_kind)
        why = distrust(check, here) if here is not None else "cannot be compared: no machine"
        if why is None and precision == "int8" and "onnx_int8" not in manifest.artifacts:
            why = "has a passing check but the bundle holds no int8 twin"
        if why is None:
            assert check is not None
            return PrecisionChoice(
                precision,
                f"{backend}/{precision} passed its parity check with f32 on this kind of "
                f"machine (score difference {check.score_max_abs_diff:.4f} <= "
                f"{check.tolerance} on {check.crops} held-out crops)",
            )
        passed_over.append(f"{precision} {why}")
    if not passed_over:
        return PrecisionChoice("f32", f"{backend}/{device_kind} offers no reduced precision")
    return PrecisionChoice("f32", f"{backend}: " + "; ".join(passed_over))
