"""Write engine bundles from a trained network: safetensors weights, ONNX graph, manifest.

Requires the ``torch`` extra.
"""

from __future__ import annotations

import contextlib
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
from fakewatch.engines.model import DeployedSegmenter, build_model, load_weights, save_weights
from fakewatch.engines.spec import ModelSpec

ONNX_OPSET = 18
WEIGHTS_FILE = "weights.safetensors"
ONNX_FILE = "model.onnx"


def export_onnx(network: nn.Module, spec: ModelSpec, path: Path) -> None:
    """Export ``network`` as its deployed graph with a dynamic batch dimension.

    Input ``crops``: uint8 ``(batch, S, S, 3)``; output ``masks``: float32
    ``(batch, S, S)``. The weights are stored inside the single ``.onnx`` file.
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


def write_bundle(
    folder: Path,
    network: nn.Module,
    spec: ModelSpec,
    name: str,
    provenance: Provenance | None = None,
    thresholds: dict[str, Threshold] | None = None,
    scoring: Scoring | None = None,
) -> EngineBundle:
    """Write a complete bundle (weights, ONNX, manifest) into ``folder`` and verify it.

    The folder is written under a temporary name and renamed at the end, so a crash
    never leaves a half-written bundle where a good one was.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        save_weights(network, staging / WEIGHTS_FILE)
        export_onnx(network, spec, staging / ONNX_FILE)
        manifest = Manifest(
            name=name,
            spec=spec,
            scoring=scoring or Scoring(),
            thresholds=thresholds or {},
            provenance=provenance or Provenance(),
            artifacts={
                "weights": make_artifact(staging, WEIGHTS_FILE),
                "onnx": make_artifact(staging, ONNX_FILE, opset=str(ONNX_OPSET)),
            },
        )
        write_manifest(staging, manifest)
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
