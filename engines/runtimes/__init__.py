"""Runtimes behind one :class:`Engine` interface, and how to pick one.

========== ======= ========================= =====================================
backend    device  precisions                notes
========== ======= ========================= =====================================
openvino   cpu     f32, bf16*, int8*         the embedded default on CPU
onnxruntime cpu    f32                       with onnxruntime-gpu also the devices
                                             cuda[:N] and tensorrt[:N] (execution
                                             providers)
torch      cpu     f32, bf16                 the reference (eager)
torch      cuda    f32, fp16, bf16           channels_last; cuda or cuda:N
tensorrt   cuda    fp16, f32                 a serialized TensorRT engine, built
                                             per GPU model and TensorRT version
========== ======= ========================= =====================================

\\* only after ``fakewatch engine build --precision`` recorded a passing parity check.

``precision="auto"`` (the default) opens the fastest precision whose parity check passed
on this kind of machine (:mod:`fakewatch.engines.auto_precision`), else f32.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

from fakewatch.engines.bundle import EngineBundle
from fakewatch.engines.runtimes.base import (
    BackendUnavailable,
    Engine,
    EngineInfo,
    EngineInputError,
)
from fakewatch.engines.runtimes.devices import parse_device

logger = logging.getLogger("fakewatch.engines")

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
    precision: str = "auto",
    threads: int | None = None,
) -> Engine:
    """Open ``bundle`` on a runtime; :class:`BackendUnavailable` says why one cannot run.

    ``backend="auto"`` picks OpenVINO on CPU (ONNX Runtime if OpenVINO is missing) and,
    on CUDA, TensorRT when the bundle holds an engine for this GPU, else torch.
    ``precision="auto"`` picks, per backend, the fastest precision with a trusted parity
    check (see :mod:`fakewatch.engines.auto_precision`); the engine's
    :attr:`EngineInfo.reason` says why, and the choice is logged.
    """
    where = parse_device(device)
    if backend == "auto":
        order = ["openvino", "onnxruntime"] if where.kind == "cpu" else ["tensorrt", "torch"]
        reasons = []
        for name in order:
            try:
                return _open(bundle, name, device, precision, threads)
            except BackendUnavailable as error:
                reasons.append(str(error))
        raise BackendUnavailable("no runtime could open the bundle: " + "; ".join(reasons))
    if backend not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {backend!r}; one of {', '.join(BACKENDS)}")
    return _open(bundle, backend, device, precision, threads)


def _open(
    bundle: EngineBundle, backend: str, device: str, precision: str, threads: int | None
) -> Engine:
    if precision != "auto":
        return BACKENDS[backend](bundle, device, precision, threads)
    from fakewatch.engines.auto_precision import FASTEST_FIRST, choose_precision, measured_here

    where = parse_device(device)
    here = None
    if FASTEST_FIRST.get((backend, where.kind), ("f32",)) != ("f32",):
        if where.kind != "cpu":
            _check_gpu(backend, device)
        here = measured_here(backend, where.kind, where.gpu_index)
    choice = choose_precision(bundle.manifest, backend, where.kind, here)
    engine = BACKENDS[backend](bundle, device, choice.precision, threads)
    engine.info = dataclasses.replace(engine.info, reason=choice.reason)
    logger.info("engine precision %s (auto): %s", engine.info.label, choice.reason)
    return engine


def _check_gpu(backend: str, device: str) -> None:
    """Raise :class:`BackendUnavailable` unless torch imports and sees the GPU."""
    from fakewatch.engines.runtimes.devices import check_cuda_index

    try:
        import torch
    except ImportError as error:
        raise BackendUnavailable(f"{backend}/{device}: torch does not import ({error})") from error
    check_cuda_index(torch, parse_device(device), backend)
