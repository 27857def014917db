"""Device names: ``cpu``, ``cuda`` or ``cuda:N`` (the GPU's index), and ``tensorrt`` or
``tensorrt:N`` for ONNX Runtime's TensorRT execution provider."""

from __future__ import annotations

import re
from dataclasses import dataclass

from fakewatch.engines.runtimes.base import BackendUnavailable

DEVICE_PATTERN = r"^(cpu|cuda(:[0-9]{1,2})?|tensorrt(:[0-9]{1,2})?)$"


@dataclass(frozen=True)
class Device:
    """A parsed device name: its kind and, for a GPU, the index given (None: the current
    one, index 0 unless ``CUDA_VISIBLE_DEVICES`` says otherwise)."""

    kind: str
    index: int | None = None

    @property
    def gpu_index(self) -> int:
        """The GPU's index (0 when none was given)."""
        return self.index or 0

    @property
    def torch_name(self) -> str:
        """The name ``torch.device`` takes: ``cpu``, ``cuda`` or ``cuda:N``."""
        if self.kind == "cpu":
            return "cpu"
        return "cuda" if self.index is None else f"cuda:{self.index}"

    def __str__(self) -> str:
        return self.kind if self.index is None else f"{self.kind}:{self.index}"


def parse_device(text: str) -> Device:
    """Parse ``text``; :class:`BackendUnavailable` names the forms accepted."""
    if not isinstance(text, str) or not re.fullmatch(DEVICE_PATTERN, text):
        raise BackendUnavailable(
            f"unknown device {text!r}: use cpu, cuda or cuda:N (N the GPU's index), or "
            "tensorrt[:N] for onnxruntime's TensorRT provider"
        )
    kind, _, index = text.partition(":")
    return Device(kind, int(index) if index else None)


def check_cuda_index(torch: object, device: Device, backend: str) -> None:
    """Raise :class:`BackendUnavailable` unless torch sees a CUDA device at the index."""
    cuda = getattr(torch, "cuda")  # noqa: B009 - torch is passed in, imported lazily
    if not cuda.is_available():
        raise BackendUnavailable(f"{backend}/{device}: no CUDA device is visible to PyTorch")
    count = cuda.device_count()
    if device.gpu_index >= count:
        raise BackendUnavailable(
            f"{backend}/{device}: there is no GPU {device.gpu_index}; PyTorch sees {count} "
            f"(cuda:0 to cuda:{count - 1}; CUDA_VISIBLE_DEVICES renumbers them)"
        )
