"""The one interface every runtime implements: a batch of uint8 crops in, masks out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from fakewatch.engines.bundle import EngineBundle


class EngineInputError(ValueError):
    """Crops of the wrong type, dtype or shape were passed to an engine."""


class BackendUnavailable(RuntimeError):
    """The runtime, device or precision asked for cannot run here; the message says why."""


@dataclass(frozen=True)
class EngineInfo:
    """What an engine is, for logs, metrics and benchmark tables."""

    backend: str
    device: str
    precision: str
    detail: str = ""
    reason: str = ""
    """Why this precision: what ``precision="auto"`` weighed (empty when asked for)."""

    @property
    def label(self) -> str:
        return f"{self.backend}/{self.device}/{self.precision}"


class Engine(ABC):
    """Segments face crops: ``uint8 (N, S, S, 3)`` RGB in, ``float32 (N, S, S)`` out.

    ``N`` may be anything from 1 to :attr:`max_batch`. Implementations are not required
    to be thread-safe: one inference worker owns an engine.
    """

    max_batch: int = 256

    def __init__(self, bundle: EngineBundle, info: EngineInfo) -> None:
        self.bundle = bundle
        self.info = info
        self.size = bundle.spec.input_size

    def infer(self, crops: np.ndarray) -> np.ndarray:
        """Manipulation probabilities for ``crops``; see the class docstring."""
        self.check_input(crops)
        masks = self._run(np.ascontiguousarray(crops))
        return np.asarray(masks, dtype=np.float32).reshape(crops.shape[0], self.size, self.size)

    def infer_batches(self, crops: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Masks for any number of crops, run ``batch_size`` (default :attr:`max_batch`)
        at a time."""
        size = min(batch_size or self.max_batch, self.max_batch)
        if len(crops) == 0:
            return np.zeros((0, self.size, self.size), dtype=np.float32)
        return np.concatenate([self.infer(crops[i : i + size]) for i in range(0, len(crops), size)])

    def warmup(self, batch_sizes: tuple[int, ...] = (1,)) -> None:
        """Run each batch size once so the first real call is not slowed by compilation."""
        for n in batch_sizes:
            self.infer(np.zeros((n, self.size, self.size, 3), dtype=np.uint8))

    def check_input(self, crops: object) -> None:
        """Raise :class:`EngineInputError` with the expected form unless ``crops`` fits."""
        expected = f"uint8 RGB crops of shape (N, {self.size}, {self.size}, 3)"
        if not isinstance(crops, np.ndarray):
            raise EngineInputError(f"expected a numpy array of {expected}, got {type(crops)}")
        if crops.dtype != np.uint8:
            raise EngineInputError(
                f"expected {expected}, got dtype {crops.dtype}; pass the crops made by "
                "fakewatch.engines.crop.crop_face (normalisation happens inside the engine)"
            )
        if crops.ndim != 4 or crops.shape[1:] != (self.size, self.size, 3):
            hint = ""
            if crops.ndim == 4 and crops.shape[1] == 3:
                hint = " (channels-first input: use NHWC, channels last)"
            elif crops.ndim == 3:
                hint = " (a single crop: add a batch axis, crops[None])"
            raise EngineInputError(f"expected {expected}, got shape {crops.shape}{hint}")
        if not 1 <= crops.shape[0] <= self.max_batch:
            raise EngineInputError(
                f"batch of {crops.shape[0]} crops; this engine takes 1 to {self.max_batch}"
            )

    @abstractmethod
    def _run(self, crops: np.ndarray) -> np.ndarray:
        """Run validated, contiguous crops; return ``(N, S, S)`` probabilities."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release runtime resources (sessions, device memory)."""
