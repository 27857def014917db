"""Shared fixtures: media made on the fly or shipped by packages, small bundles, the
real samples and the RTSP server (the helpers behind them are in ``tests/support``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fakewatch.stream.rtsp_camera import RtspCamera
from tests.support.peers import shared_data_folder
from tests.support.rtsp import StartRtspServer, require_rtsp_server

# A Ray API called while no cluster is connected must fail, not start a local cluster of
# its own: a Serve handle left from a cluster test calls Ray from a background thread
# after that test's cluster was shut down, and such a stray cluster would break the next
# ray.init and print into other tests' output. Read by Ray when it is first imported.
os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")

PEER_FIXTURES = {"rtsp_server": "gst-rtsp-server", "browser": "Chromium"}
"""Fixtures that start a real peer from outside the venv: their tests are marked ``peer``."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Refuse a test that starts a real peer without the ``peer`` marker, so that the quick
    loop (``make check``, which leaves them out) never starts one."""
    unmarked = [
        f"{item.nodeid} ({', '.join(PEER_FIXTURES[f] for f in sorted(used))})"
        for item in items
        if (used := PEER_FIXTURES.keys() & set(getattr(item, "fixturenames", ())))
        and item.get_closest_marker("peer") is None
    ]
    if unmarked:
        raise pytest.UsageError("mark these tests @pytest.mark.peer: " + "; ".join(unmarked))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real development samples beside the checkout (absent on a user's clone and in
    CI: the tests that need them skip, saying where they were looked for)."""
    return shared_data_folder()


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


@pytest.fixture
def rtsp_server() -> Iterator[StartRtspServer]:
    """``start(clip, *, port=0, mount="/live", user=None, password=None) -> RtspCamera``.

    Each call starts one server and returns once PyAV can open its URL; all the servers a
    test started stop at teardown.
    """
    require_rtsp_server()
    servers: list[RtspCamera] = []

    def start(
        clip: Path,
        *,
        port: int = 0,
        mount: str = "/live",
        user: str | None = None,
        password: str | None = None,
    ) -> RtspCamera:
        server = RtspCamera(clip, port=port, mount=mount, user=user, password=password)
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.close()
