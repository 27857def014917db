"""TensorRT on NVIDIA GPUs: a serialized TensorRT engine, built per GPU and TensorRT version.

:func:`compile_tensorrt` (the ``tensorrt`` extra: torch-tensorrt) converts the bundle's
deployed network with ``torch_tensorrt.convert_method_to_trt_engine(..., ir="dynamo")``
for a range of batch sizes (``torch_tensorrt.Input`` with a minimum, optimal and maximum
shape) and stores the plan TensorRT serialises: ``tensorrt/model.engine``. Loading it
needs only the ``tensorrt`` package: ``tensorrt.Runtime.deserialize_cuda_engine`` reads
it, and nothing is unpickled. A plan runs only on the GPU architecture (CUDA compute
capability) and the TensorRT version it was built with; both are recorded beside the
artefact and compared before it is loaded, with an error that says to rebuild.
"""

from __future__ import annotations

import inspect
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from fakewatch.engines.bundle import Artifact, EngineBundle, make_artifact
from fakewatch.engines.runtimes.base import BackendUnavailable, Engine, EngineInfo
from fakewatch.engines.runtimes.devices import Device, check_cuda_index, parse_device

TENSORRT_FILE = "tensorrt/model.engine"
PRECISIONS = ("fp16", "f32")


def import_torch_tensorrt() -> Any:
    """Import torch_tensorrt or raise :class:`BackendUnavailable` with the reason."""
    try:
        import torch_tensorrt
    except ImportError as error:
        raise BackendUnavailable(
            f"tensorrt: torch-tensorrt does not import ({error}); install fakewatch[tensorrt] "
            "on a CUDA machine with TensorRT's libraries"
        ) from error
    return torch_tensorrt


def import_tensorrt() -> Any:
    """Import TensorRT's Python runtime or raise :class:`BackendUnavailable`."""
    try:
        import tensorrt
    except ImportError as error:
        raise BackendUnavailable(
            f"tensorrt: the tensorrt package does not import ({error}); install "
            "fakewatch[tensorrt] on a CUDA machine"
        ) from error
    return tensorrt


def gpu_of(torch: Any, device: Device) -> tuple[str, str]:
    """The name and compute capability (``"9.0"``) of the GPU ``device`` names."""
    check_cuda_index(torch, device, "tensorrt")
    major, minor = torch.cuda.get_device_capability(device.gpu_index)
    return torch.cuda.get_device_name(device.gpu_index), f"{major}.{minor}"


def batch_inputs(torch_tensorrt: Any, size: int, max_batch: int) -> list[Any]:
    """The engine's input: uint8 crops, batches of 1 to ``max_batch``, tuned for a
    quarter of it."""
    import torch

    return [
        torch_tensorrt.Input(
            min_shape=(1, size, size, 3),
            opt_shape=(max(1, max_batch // 4), size, size, 3),
            max_shape=(max_batch, size, size, 3),
            dtype=torch.uint8,
        )
    ]


def precision_options(torch_tensorrt: Any, dtype: Any) -> dict[str, Any]:
    """How to ask torch-tensorrt for ``dtype``: a strongly typed network (the layers keep
    the network's own dtypes) where it offers ``use_explicit_typing``, as TensorRT 11
    requires; else ``enabled_precisions``."""
    try:
        parameters = inspect.signature(torch_tensorrt.dynamo.compile).parameters
    except (AttributeError, TypeError, ValueError):
        parameters = {}  # type: ignore[assignment]
    if "use_explicit_typing" in parameters:
        return {"use_explicit_typing": True}
    return {"enabled_precisions": {dtype}}


def compile_tensorrt(
    bundle: EngineBundle, precision: str = "fp16", max_batch: int = 64, device: str = "cuda"
) -> Artifact:
    """Build a TensorRT engine of the bundle's network on this GPU and add it to the
    bundle; earlier TensorRT parity checks are dropped (they measured another engine)."""
    import torch

    from fakewatch.engines.export import load_network
    from fakewatch.engines.model import DeployedSegmenter

    if precision not in PRECISIONS:
        raise BackendUnavailable(f"tensorrt: precision {precision!r} is not one of {PRECISIONS}")
    if not 1 <= max_batch <= 4096:
        raise ValueError(f"max_batch must be 1 to 4096, got {max_batch}")
    where = parse_device(device)
    if where.kind != "cuda":
        raise BackendUnavailable(f"tensorrt: runs on cuda or cuda:N only, not {device!r}")
    torch_tensorrt = import_torch_tensorrt()
    tensorrt = import_tensorrt()
    name, capability = gpu_of(torch, where)
    size = bundle.spec.input_size
    dtype = torch.float16 if precision == "fp16" else torch.float32
    # the network computes in the precision asked for (its output is float32 either way)
    model = DeployedSegmenter(load_network(bundle), bundle.spec).eval()
    model = model.to(where.torch_name, dtype=dtype)
    plan = torch_tensorrt.convert_method_to_trt_engine(
        model,
        "forward",
        inputs=batch_inputs(torch_tensorrt, size, max_batch),
        ir="dynamo",
        device=torch.device(where.torch_name),
        **precision_options(torch_tensorrt, dtype),
    )
    target = bundle.folder / TENSORRT_FILE
    target.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        staged = Path(tmp) / target.name
        staged.write_bytes(bytes(plan))
        staged.replace(target)
    artifact = make_artifact(
        bundle.folder,
        TENSORRT_FILE,
        format="tensorrt-plan",
        device=name,
        compute_capability=capability,
        tensorrt=str(tensorrt.__version__),
        torch_tensorrt=str(getattr(torch_tensorrt, "__version__", "?")),
        precision=precision,
        max_batch=str(max_batch),
    )
    bundle.manifest.artifacts["tensorrt"] = artifact
    bundle.manifest.precision_checks = [
        c for c in bundle.manifest.precision_checks if c.backend != "tensorrt"
    ]
    bundle.save_manifest()
    return artifact


def check_artifact(artifact: Artifact, gpu: str, capability: str, version: str) -> None:
    """Raise :class:`BackendUnavailable` unless the engine was built for this GPU
    architecture and this TensorRT version."""
    notes = artifact.notes
    rebuild = "rebuild it here with `fakewatch engine build BUNDLE --backend tensorrt`"
    if notes.get("format") != "tensorrt-plan":
        raise BackendUnavailable(
            f"tensorrt: the bundle's engine is of an older format ({artifact.path}); {rebuild}"
        )
    built = notes.get("compute_capability")
    if built != capability:
        raise BackendUnavailable(
            f"tensorrt: the bundle's engine was built for compute capability {built} "
            f"({notes.get('device')}); this GPU, {gpu}, is {capability}; {rebuild}"
        )
    if notes.get("tensorrt") != version:
        raise BackendUnavailable(
            f"tensorrt: the bundle's engine was built with TensorRT {notes.get('tensorrt')}; "
            f"TensorRT {version} is installed and cannot load it; {rebuild}"
        )


def torch_dtype(torch: Any, trt_dtype: Any) -> Any:
    """The torch dtype of a TensorRT ``DataType`` an engine's input or output has."""
    name = getattr(trt_dtype, "name", str(trt_dtype)).rsplit(".", 1)[-1]
    dtypes = {"UINT8": "uint8", "INT8": "int8", "INT32": "int32", "HALF": "float16"}
    dtypes |= {"FLOAT": "float32", "BF16": "bfloat16"}
    if name not in dtypes:
        raise BackendUnavailable(f"tensorrt: the engine has a {name} tensor; rebuild it")
    return getattr(torch, dtypes[name])


class TensorRtEngine(Engine):
    """A TensorRT engine built for this GPU, run by TensorRT's own runtime."""

    def __init__(
        self,
        bundle: EngineBundle,
        device: str = "cuda",
        precision: str = "fp16",
        threads: int | None = None,
    ) -> None:
        where = parse_device(device)
        if where.kind != "cuda":
            raise BackendUnavailable(f"tensorrt: runs on cuda or cuda:N only, not {device!r}")
        try:
            import torch
        except ImportError as error:
            raise BackendUnavailable(f"tensorrt: torch does not import ({error})") from error
        check_cuda_index(torch, where, "tensorrt")
        artifact = bundle.manifest.artifacts.get("tensorrt")
        if artifact is None:
            raise BackendUnavailable(
                f"tensorrt: bundle {bundle.folder} has no TensorRT engine; run "
                f"`fakewatch engine build {bundle.folder} --backend tensorrt` on this GPU"
            )
        if artifact.notes.get("precision", "fp16") != precision:
            raise BackendUnavailable(
                f"tensorrt: the bundle's engine is {artifact.notes.get('precision')}, "
                f"not {precision}; rebuild it with --precision {precision}"
            )
        tensorrt = import_tensorrt()
        gpu, capability = gpu_of(torch, where)
        check_artifact(artifact, gpu, capability, str(tensorrt.__version__))
        self._torch = torch
        self._device = torch.device(where.torch_name)
        self.max_batch = int(artifact.notes.get("max_batch", "64"))
        with torch.cuda.device(self._device):
            runtime = tensorrt.Runtime(tensorrt.Logger(tensorrt.Logger.WARNING))
            engine = runtime.deserialize_cuda_engine(bundle.path("tensorrt").read_bytes())
            if engine is None:
                raise BackendUnavailable(
                    f"tensorrt: TensorRT {tensorrt.__version__} could not load "
                    f"{artifact.path} (see its log above); rebuild the engine on this GPU"
                )
            self._engine = engine
            self._context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == tensorrt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise BackendUnavailable(
                f"tensorrt: {artifact.path} has inputs {inputs} and outputs {outputs}; "
                "expected one of each; rebuild it"
            )
        self._input, self._output = inputs[0], outputs[0]
        self._in_dtype = torch_dtype(torch, engine.get_tensor_dtype(self._input))
        self._out_dtype = torch_dtype(torch, engine.get_tensor_dtype(self._output))
        self._stream = torch.cuda.Stream(self._device)  # type: ignore[no-untyped-call]
        detail = f"tensorrt {tensorrt.__version__} {gpu} (sm {capability})"
        super().__init__(bundle, EngineInfo("tensorrt", device, precision, detail))

    def _run(self, crops: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode(), torch.cuda.stream(self._stream):
            batch = torch.from_numpy(crops).to(self._device, non_blocking=True)
            batch = batch.to(self._in_dtype)  # uint8 unless TensorRT chose otherwise
            context = self._context
            context.set_input_shape(self._input, tuple(batch.shape))
            shape = tuple(context.get_tensor_shape(self._output))
            masks = torch.empty(shape, dtype=self._out_dtype, device=self._device)
            context.set_tensor_address(self._input, batch.data_ptr())
            context.set_tensor_address(self._output, masks.data_ptr())
            if not context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("tensorrt: the engine failed to run the batch")
            result = masks.float().cpu()
        return result.numpy()  # type: ignore[no-any-return]
