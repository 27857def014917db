"""PyTorch eager on CPU or CUDA, ``cuda`` or ``cuda:N`` (fp16 and channels_last on CUDA)."""

from __future__ import annotations

import numpy as np

from fakewatch.engines.bundle import EngineBundle
from fakewatch.engines.runtimes.base import BackendUnavailable, Engine, EngineInfo
from fakewatch.engines.runtimes.devices import check_cuda_index, parse_device


class TorchEngine(Engine):
    """The reference runtime: the bundle's safetensors weights in eager PyTorch."""

    def __init__(
        self,
        bundle: EngineBundle,
        device: str = "cpu",
        precision: str = "f32",
        threads: int | None = None,
    ) -> None:
        import torch

        from fakewatch.engines.export import load_network
        from fakewatch.engines.model import DeployedSegmenter

        where = parse_device(device)
        if where.kind not in ("cpu", "cuda"):
            raise BackendUnavailable(f"torch: unknown device {device!r} (cpu, cuda or cuda:N)")
        if where.kind == "cuda":
            check_cuda_index(torch, where, "torch")
        dtypes = {"f32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
        if precision not in dtypes or (where.kind == "cpu" and precision == "fp16"):
            raise BackendUnavailable(
                f"torch/{device}: precision {precision!r} is not offered "
                "(cpu: f32, bf16; cuda: f32, fp16, bf16)"
            )
        if threads is not None and where.kind == "cpu":
            torch.set_num_threads(threads)
        self._torch = torch
        self._device = torch.device(where.torch_name)
        model = DeployedSegmenter(load_network(bundle), bundle.spec).eval()
        model = model.to(self._device, dtype=dtypes[precision])
        if where.kind == "cuda":
            model = model.to(memory_format=torch.channels_last)
        self._model = model
        name = torch.cuda.get_device_name(self._device) if where.kind == "cuda" else "cpu"
        super().__init__(
            bundle, EngineInfo("torch", device, precision, f"torch {torch.__version__} {name}")
        )

    def _run(self, crops: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            batch = torch.from_numpy(crops).to(self._device, non_blocking=True)
            masks = self._model(batch)
            return masks.float().cpu().numpy()  # type: ignore[no-any-return]
