"""OpenVINO on CPU: f32 by default; bf16 or static int8 only after a parity check.

OpenVINO silently runs in bf16 on CPUs with AVX-512 BF16 or AMX unless asked for f32,
so the precision hint is always set explicitly.
"""

from __future__ import annotations

import numpy as np

from fakewatch.engines.bundle import EngineBundle
from fakewatch.engines.runtimes.base import BackendUnavailable, Engine, EngineInfo

PRECISIONS = ("f32", "bf16", "int8")


class OpenVinoEngine(Engine):
    """The bundle's ONNX graph (or its static-int8 twin) compiled by OpenVINO for CPU."""

    def __init__(
        self,
        bundle: EngineBundle,
        device: str = "cpu",
        precision: str = "f32",
        threads: int | None = None,
        *,
        require_check: bool = True,
    ) -> None:
        """``require_check=False`` is for the parity check itself, which must run first."""
        import openvino as ov

        if device != "cpu":
            raise BackendUnavailable(f"openvino: only the cpu device is supported, not {device!r}")
        if precision not in PRECISIONS:
            raise BackendUnavailable(
                f"openvino: precision {precision!r} is not one of {PRECISIONS}"
            )
        if precision != "f32" and require_check:
            check = bundle.manifest.precision_check("openvino", precision)
            if check is None or not check.passed:
                state = "has no" if check is None else "failed its"
                raise BackendUnavailable(
                    f"openvino/{precision}: bundle {bundle.folder} {state} parity check with "
                    f"f32; run `fakewatch engine build {bundle.folder} --backend openvino "
                    f"--precision {precision} --calibration DIR` first"
                )
        graph = bundle.path("onnx_int8" if precision == "int8" else "onnx")
        config: dict[str, str] = {
            "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
            "PERFORMANCE_HINT": "LATENCY",
        }
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        core = ov.Core()
        self._compiled = core.compile_model(str(graph), "CPU", config)
        self._request = self._compiled.create_infer_request()
        cpu = core.get_property("CPU", "FULL_DEVICE_NAME")
        detail = f"openvino {ov.__version__} {cpu}"
        super().__init__(bundle, EngineInfo("openvino", device, precision, detail))

    def _run(self, crops: np.ndarray) -> np.ndarray:
        self._request.infer({0: crops})
        return self._request.get_output_tensor(0).data.copy()  # type: ignore[no-any-return]
