"""ONNX Runtime: CPU, and CUDA or TensorRT execution providers with onnxruntime-gpu."""

from __future__ import annotations

import numpy as np

from fakewatch.engines.bundle import EngineBundle
from fakewatch.engines.runtimes.base import BackendUnavailable, Engine, EngineInfo
from fakewatch.engines.runtimes.devices import parse_device

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def providers(device: str) -> list[str | tuple[str, dict[str, str]]]:
    """The execution providers for ``device`` (``cpu``, ``cuda[:N]``, ``tensorrt[:N]``),
    each GPU provider told the GPU's index as its ``device_id``."""
    where = parse_device(device)
    if where.kind not in PROVIDERS:
        raise BackendUnavailable(f"onnxruntime: unknown device {device!r} ({', '.join(PROVIDERS)})")
    if where.index is None:
        return list(PROVIDERS[where.kind])
    options = {"device_id": str(where.index)}
    return [
        name if name == "CPUExecutionProvider" else (name, options)
        for name in PROVIDERS[where.kind]
    ]


class OnnxRuntimeEngine(Engine):
    """The bundle's ONNX graph in an ONNX Runtime session."""

    def __init__(
        self,
        bundle: EngineBundle,
        device: str = "cpu",
        precision: str = "f32",
        threads: int | None = None,
    ) -> None:
        import onnxruntime as ort

        chain = providers(device)
        kind = parse_device(device).kind
        if precision != "f32":
            raise BackendUnavailable(
                f"onnxruntime/{device}: only f32 is offered (dynamic int8 measured 6-8x slower "
                "than f32 on CPU; use openvino for reduced precision)"
            )
        wanted = PROVIDERS[kind][0]
        if wanted not in ort.get_available_providers():
            raise BackendUnavailable(
                f"onnxruntime/{device}: {wanted} is not in this onnxruntime build "
                f"({', '.join(ort.get_available_providers())}); install onnxruntime-gpu"
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        # Idle workers must not spin: other stages (decode, detection, another
        # runtime) share these cores, and spinning threads starve them.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(bundle.path("onnx")), sess_options=options, providers=chain
        )
        if self._session.get_providers()[0] != wanted:
            raise BackendUnavailable(f"onnxruntime/{device}: {wanted} failed to initialise")
        self._input = self._session.get_inputs()[0].name
        detail = f"onnxruntime {ort.__version__} {wanted}"
        super().__init__(bundle, EngineInfo("onnxruntime", device, precision, detail))

    def _run(self, crops: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._input: crops})[0]  # type: ignore[no-any-return]
