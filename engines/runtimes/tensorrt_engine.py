"""TensorRT on NVIDIA GPUs through torch-tensorrt (the ``tensorrt`` extra).

The engine is compiled on the target GPU with ``torch_tensorrt.compile(..., ir="dynamo")``
and kept in the bundle as a serialized ExportedProgram (``torch.export`` format, not a
pickle). TensorRT engines are specific to a GPU model and TensorRT version; both are
recorded beside the artefact and checked when it is loaded.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from fakewatch.engines.bundle import Artifact, EngineBundle, make_artifact
from fakewatch.engines.runtimes.base import BackendUnavailable, Engine, EngineInfo

TENSORRT_FILE = "tensorrt/model.ep"
PRECISIONS = ("fp16", "f32")


def import_torch_tensorrt() -> object:
    """Import torch_tensorrt or raise :class:`BackendUnavailable` with the reason."""
    try:
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailable("tensorrt: no CUDA device is visible to PyTorch")
        import torch_tensorrt
    except ImportError as error:
        raise BackendUnavailable(
            f"tensorrt: torch-tensorrt does not import ({error}); install fakewatch[tensorrt] "
            "on a CUDA machine with TensorRT's libraries"
        ) from error
    return torch_tensorrt


def compile_tensorrt(
    bundle: EngineBundle, precision: str = "fp16", max_batch: int = 64
) -> Artifact:
    """Compile the bundle's network with TensorRT on this GPU and add it to the bundle."""
    import torch

    from fakewatch.engines.export import load_network
    from fakewatch.engines.model import DeployedSegmenter

    torch_tensorrt = import_torch_tensorrt()
    if precision not in PRECISIONS:
        raise BackendUnavailable(f"tensorrt: precision {precision!r} is not one of {PRECISIONS}")
    size = bundle.spec.input_size
    model = DeployedSegmenter(load_network(bundle), bundle.spec).eval().cuda()
    spec_input = torch_tensorrt.Input(  # type: ignore[attr-defined]
        min_shape=(1, size, size, 3),
        opt_shape=(max(1, max_batch // 4), size, size, 3),
        max_shape=(max_batch, size, size, 3),
        dtype=torch.uint8,
    )
    dtype = torch.float16 if precision == "fp16" else torch.float32
    compiled = torch_tensorrt.compile(  # type: ignore[attr-defined]
        model, ir="dynamo", inputs=[spec_input], enabled_precisions={dtype}
    )
    target = bundle.folder / TENSORRT_FILE
    target.parent.mkdir(exist_ok=True)
    example = torch.zeros((max(1, max_batch // 4), size, size, 3), dtype=torch.uint8, device="cuda")
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "model.ep"
        torch_tensorrt.save(  # type: ignore[attr-defined]
            compiled, str(staged), output_format="exported_program", inputs=[example]
        )
        staged.replace(target)
    artifact = make_artifact(
        bundle.folder,
        TENSORRT_FILE,
        device=torch.cuda.get_device_name(),
        tensorrt=str(getattr(torch_tensorrt, "__version__", "?")),
        precision=precision,
        max_batch=str(max_batch),
    )
    bundle.manifest.artifacts["tensorrt"] = artifact
    bundle.save_manifest()
    return artifact


class TensorRtEngine(Engine):
    """A TensorRT engine compiled for this GPU, loaded as an ExportedProgram."""

    def __init__(
        self,
        bundle: EngineBundle,
        device: str = "cuda",
        precision: str = "fp16",
        threads: int | None = None,
    ) -> None:
        import torch

        torch_tensorrt = import_torch_tensorrt()
        if device != "cuda":
            raise BackendUnavailable(f"tensorrt: runs on cuda only, not {device!r}")
        artifact = bundle.manifest.artifacts.get("tensorrt")
        if artifact is None:
            raise BackendUnavailable(
                f"tensorrt: bundle {bundle.folder} has no TensorRT engine; run "
                f"`fakewatch engine build {bundle.folder} --backend tensorrt` on this GPU"
            )
        built_for = artifact.notes.get("device", "")
        here = torch.cuda.get_device_name()
        if built_for != here:
            raise BackendUnavailable(
                f"tensorrt: the bundle's engine was built for {built_for!r}, this GPU is "
                f"{here!r}; rebuild it here"
            )
        if artifact.notes.get("precision", "fp16") != precision:
            raise BackendUnavailable(
                f"tensorrt: the bundle's engine is {artifact.notes.get('precision')}, "
                f"not {precision}; rebuild it with --precision {precision}"
            )
        self._torch = torch
        self.max_batch = int(artifact.notes.get("max_batch", "64"))
        program = torch.export.load(str(bundle.path("tensorrt")))
        self._module = program.module()
        version = getattr(torch_tensorrt, "__version__", "?")
        super().__init__(
            bundle, EngineInfo("tensorrt", device, precision, f"torch-tensorrt {version} {here}")
        )

    def _run(self, crops: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            batch = torch.from_numpy(crops).cuda(non_blocking=True)
            return self._module(batch).float().cpu().numpy()  # type: ignore[no-any-return]
