"""Runtimes behind one :class:`Engine` interface, and how to pick one.

========== ======= ========================= =====================================
backend    device  precisions                notes
========== ======= ========================= =====================================
openvino   cpu     f32, bf16*, int8*         the embedded default on CPU
onnxruntime cpu    f32                       with onnxruntime-gpu also the devices
                                             cuda and tensorrt (execution providers)
torch      cpu     f32, bf16                 the reference (eager)
torch      cuda    f32, fp16, bf16           channels_last
tensorrt   cuda    fp16, f32                 torch-tensorrt, compiled per GPU
========== ======= ========================= =====================================

\\* only after ``fakewatch engine build --precision`` recorded a passing parity check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fakewatch.engines.bundle import EngineBundle
from fakewatch.engines.runtimes.base import (
    BackendUnavailable,
    Engine,
    EngineInfo,
    EngineInputError,
)

__all__ = [
    "BACKENDS",
    "BackendUnavailable",
    "Engine",
    "EngineInfo",
    "EngineInputError",
    "EngineOption",
    "engine_options",
    "open_engine",
]


def _torch(bundle: EngineBundle, device: str, precision: str, threads: int | None) -> Engine:
    try:
        from fakewatch.engines.runtimes.torch_engine import TorchEngine
    except ImportError as error:
        raise BackendUnavailable(
            f"torch: not installed ({error}); install fakewatch[torch]"
        ) from error
    return TorchEngine(bundle, device, precision, threads)


def _onnxruntime(bundle: EngineBundle, device: str, precision: str, threads: int | None) -> Engine:
    from fakewatch.engines.runtimes.onnxruntime_engine import OnnxRuntimeEngine

    return OnnxRuntimeEngine(bundle, device, precision, threads)


def _openvino(bundle: EngineBundle, device: str, precision: str, threads: int | None) -> Engine:
    try:
        from fakewatch.engines.runtimes.openvino_engine import OpenVinoEngine
    except ImportError as error:
        raise BackendUnavailable(f"openvino: not installed ({error})") from error
    return OpenVinoEngine(bundle, device, precision, threads)


def _tensorrt(bundle: EngineBundle, device: str, precision: str, threads: int | None) -> Engine:
    from fakewatch.engines.runtimes.tensorrt_engine import TensorRtEngine

    return TensorRtEngine(bundle, device, precision, threads)


BACKENDS: dict[str, Callable[[EngineBundle, str, str, int | None], Engine]] = {
    "openvino": _openvino,
    "onnxruntime": _onnxruntime,
    "torch": _torch,
    "tensorrt": _tensorrt,
}


@dataclass(frozen=True)
class EngineOption:
    """One runnable combination of backend, device and precision."""

    backend: str
    device: str
    precision: str

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.device}/{self.precision}"


ALL_OPTIONS = (
    EngineOption("torch", "cpu", "f32"),
    EngineOption("onnxruntime", "cpu", "f32"),
    EngineOption("openvino", "cpu", "f32"),
    EngineOption("openvino", "cpu", "bf16"),
    EngineOption("openvino", "cpu", "int8"),
    EngineOption("torch", "cuda", "f32"),
    EngineOption("torch", "cuda", "fp16"),
    EngineOption("onnxruntime", "cuda", "f32"),
    EngineOption("onnxruntime", "tensorrt", "f32"),
    EngineOption("tensorrt", "cuda", "fp16"),
)


def engine_options() -> tuple[EngineOption, ...]:
    """Every combination fakewatch knows; :func:`open_engine` says which run here."""
    return ALL_OPTIONS


def open_engine(
    bundle: EngineBundle,
    backend: str = "auto",
    device: str = "cpu",
    precision: str = "f32",
    threads: int | None = None,
) -> Engine:
    """Open ``bundle`` on a runtime; :class:`BackendUnavailable` says why one cannot run.

    ``backend="auto"`` picks OpenVINO on CPU (ONNX Runtime if OpenVINO is missing) and,
    on CUDA, TensorRT when the bundle holds an engine for this GPU, else torch.
    """
    if backend == "auto":
        order = ["openvino", "onnxruntime"] if device == "cpu" else ["tensorrt", "torch"]
        reasons = []
        for name in order:
            chosen = precision if not (name == "tensorrt" and precision == "f32") else "fp16"
            try:
                return BACKENDS[name](bundle, device, chosen, threads)
            except BackendUnavailable as error:
                reasons.append(str(error))
        raise BackendUnavailable("no runtime could open the bundle: " + "; ".join(reasons))
    if backend not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {backend!r}; one of {', '.join(BACKENDS)}")
    return BACKENDS[backend](bundle, device, precision, threads)
