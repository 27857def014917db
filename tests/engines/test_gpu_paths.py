"""The GPU paths checked without a GPU: device names, ONNX Runtime's provider options,
the shapes handed to torch-tensorrt and the checks before a TensorRT engine is loaded.

torch-tensorrt and TensorRT are replaced by recorders in ``sys.modules`` and torch's
CUDA queries by a pretend H200; no test here runs anything on a GPU (the classes in
test_runtimes.py do, where there is one).
"""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from fakewatch.engines.bundle import EngineBundle
from fakewatch.engines.runtimes import BackendUnavailable, open_engine
from fakewatch.engines.runtimes.devices import Device, parse_device
from fakewatch.engines.runtimes.onnxruntime_engine import providers
from fakewatch.engines.runtimes.tensorrt_engine import (
    TENSORRT_FILE,
    TensorRtEngine,
    compile_tensorrt,
)
from fakewatch.stream.config import EngineConfig


@pytest.mark.parametrize(
    ("text", "kind", "index", "torch_name"),
    [
        ("cpu", "cpu", None, "cpu"),
        ("cuda", "cuda", None, "cuda"),
        ("cuda:1", "cuda", 1, "cuda:1"),
        ("tensorrt:3", "tensorrt", 3, "cuda:3"),
    ],
)
def test_device_names_parse(text: str, kind: str, index: int | None, torch_name: str) -> None:
    device = parse_device(text)
    assert device == Device(kind, index)
    assert device.torch_name == torch_name
    assert str(device) == text


@pytest.mark.parametrize("text", ["gpu", "cuda:", "cuda:-1", "cuda:x", "CUDA", "cpu:0", ""])
def test_a_wrong_device_name_is_refused_by_name(text: str) -> None:
    with pytest.raises(BackendUnavailable, match="unknown device"):
        parse_device(text)
    with pytest.raises(ValidationError, match="device"):
        EngineConfig(device=text)


def test_config_takes_a_gpu_index_and_auto_precision_by_default() -> None:
    assert EngineConfig(device="cuda:1").device == "cuda:1"
    assert EngineConfig().precision == "auto"


def test_onnxruntime_is_told_the_gpu_index() -> None:
    assert providers("cpu") == ["CPUExecutionProvider"]
    assert providers("cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert providers("cuda:1") == [
        ("CUDAExecutionProvider", {"device_id": "1"}),
        "CPUExecutionProvider",
    ]
    assert providers("tensorrt:2")[:2] == [
        ("TensorrtExecutionProvider", {"device_id": "2"}),
        ("CUDAExecutionProvider", {"device_id": "2"}),
    ]


@pytest.fixture
def bundle(untrained_bundle_dir: Path, tmp_path: Path) -> EngineBundle:
    return EngineBundle.load(shutil.copytree(untrained_bundle_dir, tmp_path / "bundle"))


def test_a_missing_gpu_index_is_a_clear_error(
    bundle: EngineBundle, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    for backend in ("torch", "tensorrt"):
        with pytest.raises(BackendUnavailable, match="there is no GPU 1; PyTorch sees 1"):
            open_engine(bundle, backend, "cuda:1", "f32" if backend == "torch" else "fp16")


class Recorder(types.ModuleType):
    """Stands in for torch_tensorrt: records what it is handed, returns a plan."""

    __version__ = "2.14.0"

    def __init__(self) -> None:
        super().__init__("torch_tensorrt")
        self.calls: list[dict[str, Any]] = []

    class Input:
        def __init__(self, **spec: Any) -> None:
            self.spec = spec

    def convert_method_to_trt_engine(self, module: Any, method: str, **kwargs: Any) -> bytes:
        self.calls.append({"module": module, "method": method, **kwargs})
        return b"serialised TensorRT plan"


@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """A pretend H200 (compute capability 9.0) with TensorRT 10.13 and torch-tensorrt."""
    recorder = Recorder()
    tensorrt = types.ModuleType("tensorrt")
    tensorrt.__version__ = "10.13.0"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch_tensorrt", recorder)
    monkeypatch.setitem(sys.modules, "tensorrt", tensorrt)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: (9, 0))
    # the network stays on the CPU; only what reaches torch-tensorrt is looked at
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *args, **kwargs: self)
    return recorder


def test_compile_hands_torch_tensorrt_a_batch_range(bundle: EngineBundle, gpu: Recorder) -> None:
    artifact = compile_tensorrt(bundle, "fp16", max_batch=32, device="cuda:1")
    (call,) = gpu.calls
    assert call["method"] == "forward"
    assert call["ir"] == "dynamo"
    assert call["enabled_precisions"] == {torch.float16}
    assert call["device"] == torch.device("cuda:1")
    (spec,) = [i.spec for i in call["inputs"]]
    size = bundle.spec.input_size
    assert spec["min_shape"] == (1, size, size, 3)
    assert spec["opt_shape"] == (8, size, size, 3)
    assert spec["max_shape"] == (32, size, size, 3)
    assert spec["dtype"] == torch.uint8
    # the plan is stored as TensorRT wrote it, and verified like every other file
    assert (bundle.folder / TENSORRT_FILE).read_bytes() == b"serialised TensorRT plan"
    assert artifact.notes["compute_capability"] == "9.0"
    assert artifact.notes["tensorrt"] == "10.13.0"
    reloaded = EngineBundle.load(bundle.folder)
    assert reloaded.manifest.artifacts["tensorrt"].notes["format"] == "tensorrt-plan"


def test_a_strongly_typed_torch_tensorrt_gets_a_half_network_and_no_precision_set(
    bundle: EngineBundle, gpu: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where torch-tensorrt builds strongly typed networks (TensorRT 11), the network's
    own dtype sets the precision and ``enabled_precisions`` is refused."""
    cast: list[Any] = []
    monkeypatch.setattr(
        torch.nn.Module, "to", lambda self, *args, **kwargs: cast.append(kwargs) or self
    )

    def compile(program: Any, *, use_explicit_typing: bool = True, **settings: Any) -> None:
        raise AssertionError("not called")

    gpu.dynamo = types.SimpleNamespace(compile=compile)  # type: ignore[attr-defined]
    compile_tensorrt(bundle, "fp16")
    (call,) = gpu.calls
    assert call["use_explicit_typing"] is True and "enabled_precisions" not in call
    assert cast == [{"dtype": torch.float16}]


def test_compile_drops_the_checks_of_an_earlier_engine(bundle: EngineBundle, gpu: Recorder) -> None:
    from tests.engines.test_auto_precision import check

    bundle.manifest.precision_checks = [
        check("tensorrt", "fp16", device="cuda"),
        check("openvino", "bf16"),
    ]
    compile_tensorrt(bundle, "fp16")
    assert [c.backend for c in bundle.manifest.precision_checks] == ["openvino"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda trt, m: setattr(trt, "__version__", "10.14.0"), "built with TensorRT 10.13.0"),
        (
            lambda trt, m: m.setattr(torch.cuda, "get_device_capability", lambda i=0: (8, 9)),
            "built for compute capability 9.0",
        ),
    ],
)
def test_an_engine_for_another_gpu_or_tensorrt_is_refused_before_loading(
    bundle: EngineBundle,
    gpu: Recorder,
    monkeypatch: pytest.MonkeyPatch,
    change: Any,
    message: str,
) -> None:
    compile_tensorrt(bundle, "fp16")
    change(sys.modules["tensorrt"], monkeypatch)
    # the stand-in TensorRT has no Runtime: reaching deserialisation would fail differently
    with pytest.raises(BackendUnavailable, match=f"{message}.*rebuild it here"):
        TensorRtEngine(bundle, "cuda", "fp16")


def test_an_engine_of_the_older_format_is_refused(bundle: EngineBundle, gpu: Recorder) -> None:
    compile_tensorrt(bundle, "fp16")
    bundle.manifest.artifacts["tensorrt"].notes.pop("format")
    with pytest.raises(BackendUnavailable, match="older format"):
        TensorRtEngine(bundle, "cuda", "fp16")


def test_auto_on_cuda_keeps_f32_without_a_checked_fp16_engine(
    bundle: EngineBundle, gpu: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """auto on CUDA without a parity check asks TensorRT for f32; the fp16 engine is
    refused and torch opens in f32 (no request turns into fp16 unchecked)."""
    compile_tensorrt(bundle, "fp16")
    opened: list[tuple[str, str, str]] = []

    def fake(name: str) -> Any:
        def open_(b: EngineBundle, device: str, precision: str, threads: int | None) -> Any:
            opened.append((name, device, precision))
            if name == "tensorrt":
                return TensorRtEngine(b, device, precision, threads)
            raise BackendUnavailable("torch: stand-in")

        return open_

    from fakewatch.engines import runtimes

    monkeypatch.setitem(runtimes.BACKENDS, "tensorrt", fake("tensorrt"))
    monkeypatch.setitem(runtimes.BACKENDS, "torch", fake("torch"))
    with pytest.raises(BackendUnavailable, match="engine is fp16, not f32"):
        open_engine(bundle, "auto", "cuda")
    assert opened == [("tensorrt", "cuda", "f32"), ("torch", "cuda", "f32")]


def test_tensorrt_tensor_types_map_to_torch() -> None:
    from fakewatch.engines.runtimes.tensorrt_engine import torch_dtype

    class DataType:  # how TensorRT's enum values name themselves
        def __init__(self, name: str) -> None:
            self.name = name

    assert torch_dtype(torch, DataType("UINT8")) is torch.uint8
    assert torch_dtype(torch, DataType("HALF")) is torch.float16
    assert torch_dtype(torch, DataType("FLOAT")) is torch.float32
    with pytest.raises(BackendUnavailable, match="FP8 tensor"):
        torch_dtype(torch, DataType("FP8"))
