"""Shared fixtures: media made on the fly or shipped by packages, and small bundles."""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest

# A Ray API called while no cluster is connected must fail, not start a local cluster of
# its own: a Serve handle left from a cluster test calls Ray from a background thread
# after that test's cluster was shut down, and such a stray cluster would break the next
# ray.init and print into other tests' output. Read by Ray when it is first imported.
os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def missing(checks: str, reason: str) -> NoReturn:
    """Skip the calling test because a real peer or tool is missing, or fail under CI,
    which must run ``checks``."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run {checks}: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real development samples beside the checkout (absent on a user's clone)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real development samples not present at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    """A real photograph with one face (NASA, public domain), shipped by scikit-image."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


def make_untrained_bundle(
    folder: Path, encoder: str = "mobilenet_v2", size: int = 224, **spec: object
) -> Path:
    """A bundle with random weights whose batch-norm statistics were set on sample crops.

    Fresh batch-norm statistics make a random network's output nearly constant, which
    would let a parity test pass for the wrong reason; these give probabilities spread
    over 0..1.
    """
    import torch

    from fakewatch.engines.bench import sample_crops
    from fakewatch.engines.bundle import Provenance
    from fakewatch.engines.export import write_bundle
    from fakewatch.engines.model import DeployedSegmenter, build_model
    from fakewatch.engines.spec import ModelSpec

    torch.manual_seed(0)
    model_spec = ModelSpec(encoder=encoder, input_size=size, **spec)  # type: ignore[arg-type]
    network = build_model(model_spec)
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
            module.reset_running_stats()
    network.train()
    with torch.no_grad():
        DeployedSegmenter(network, model_spec)(torch.from_numpy(sample_crops(size, 16, seed=1)))
    network.eval()
    provenance = Provenance(recipe="test: random weights, batch-norm statistics from sample crops")
    write_bundle(folder, network, model_spec, name="test-untrained", provenance=provenance)
    return folder


@pytest.fixture(scope="session")
def untrained_bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_untrained_bundle(tmp_path_factory.mktemp("bundles") / "untrained")
