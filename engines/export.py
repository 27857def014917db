"""Write engine bundles from a trained network: safetensors weights, ONNX graph, manifest.

Requires the ``torch`` extra.
"""

from __future__ import annotations

import contextlib
import copy
import io
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from fakewatch.engines.bundle import (
    EngineBundle,
    Manifest,
    Provenance,
    Scoring,
    Threshold,
    make_artifact,
    write_manifest,
)
from fakewatch.engines.model import (
    DeployedSegmenter,
    build_model,
    load_weights,
    round_to_half,
    save_weights,
)
from fakewatch.engines.spec import ModelSpec

ONNX_OPSET = 18
WEIGHTS_FILE = "weights.safetensors"
ONNX_FILE = "model.onnx"


def export_onnx(
    network: nn.Module, spec: ModelSpec, path: Path, half_storage: bool = False
) -> None:
    """Export ``network`` as its deployed graph with a dynamic batch dimension.

    Input ``crops``: uint8 ``(batch, S, S, 3)``; output ``masks``: float32
    ``(batch, S, S)``. The weights are stored inside the single ``.onnx`` file, as
    float16 with a cast to float32 when ``half_storage`` (see :func:`store_half`).
    """
    deployed = DeployedSegmenter(network, spec).eval().cpu()
    example = torch.zeros((2, spec.input_size, spec.input_size, 3), dtype=torch.uint8)
    batch = torch.export.Dim("batch", min=1, max=4096)
    # The exporter reports progress on stdout; keep CLI output to what the user asked for.
    with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        torch.onnx.export(
            deployed,
            (example,),
            str(path),
            input_names=["crops"],
            output_names=["masks"],
            dynamo=True,
            dynamic_shapes={"crops": {0: batch}},
            opset_version=ONNX_OPSET,
            external_data=False,
        )
    if half_storage:
        store_half(path)


def store_half(path: Path, min_elements: int = 1024) -> None:
    """Store the ONNX graph's large float32 weights as float16, cast back at load.

    Runtimes fold the ``Cast`` nodes into float32 constants when they load the graph, so
    the computation stays float32; only the file is half the size.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    casts = []
    for index, initializer in enumerate(graph.initializer):
        if initializer.data_type != TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(initializer)
        if values.size < min_elements:
            continue
        name = initializer.name
        stored = numpy_helper.from_array(values.astype("float16"), f"{name}__float16")
        graph.initializer[index].CopyFrom(stored)
        casts.append(helper.make_node("Cast", [stored.name], [name], to=TensorProto.FLOAT))
    for node in reversed(casts):
        graph.node.insert(0, node)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def write_bundle(
    folder: Path,
    network: nn.Module,
    spec: ModelSpec,
    name: str,
    provenance: Provenance | None = None,
    thresholds: dict[str, Threshold] | None = None,
    scoring: Scoring | None = None,
    half_storage: bool = False,
) -> EngineBundle:
    """Write a complete bundle (weights, ONNX, manifest) into ``folder`` and verify it.

    ``half_storage`` keeps the weights as float16 in both files (half the size; the
    runtimes still compute in float32 unless told otherwise). The folder is written
    under a temporary name and renamed at the end, so a crash never leaves a
    half-written bundle where a good one was.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        dtype = torch.float16 if half_storage else torch.float32
        if half_storage:
            network = round_to_half(copy.deepcopy(network))
        save_weights(network, staging / WEIGHTS_FILE, dtype)
        export_onnx(network, spec, staging / ONNX_FILE, half_storage)
        stored = "float16" if half_storage else "float32"
        manifest = Manifest(
            name=name,
            spec=spec,
            scoring=scoring or Scoring(),
            thresholds=thresholds or {},
            provenance=provenance or Provenance(),
            artifacts={
                "weights": make_artifact(staging, WEIGHTS_FILE, stored=stored),
                "onnx": make_artifact(staging, ONNX_FILE, opset=str(ONNX_OPSET), stored=stored),
            },
        )
        write_manifest(staging, manifest)
        # mkdtemp makes the folder private; a bundle is read by whoever runs the engine
        staging.chmod(0o755)
        for path in staging.iterdir():
            path.chmod(0o644)
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return EngineBundle.load(folder)


def load_network(bundle: EngineBundle) -> nn.Module:
    """The bundle's network in eval mode on CPU, weights loaded from safetensors."""
    network = build_model(bundle.spec)
    load_weights(network, bundle.path("weights"))
    return network.eval()
