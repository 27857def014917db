"""Real peers for the cluster tests: redis-server, a local Ray cluster, a webhook
receiver, the demo clips (the helpers are in ``tests/support``).

``redis-server`` comes from Debian's ``redis-server`` package and Ray from
``fakewatch[cluster]``; without them the tests are skipped, or fail when ``CI`` is set.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest

from tests.support.cluster import RedisServer
from tests.support.demo import demo_pair
from tests.support.peers import missing
from tests.support.webhooks import ThreadedReceiver


@pytest.fixture(scope="session")
def ray_module() -> Any:
    try:
        import ray
        import ray.serve
    except ImportError as error:
        missing(
            "the cluster tests", f"Ray is not installed ({error}): pip install fakewatch[cluster]"
        )
    return ray


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of its own, on a free loopback port."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def swap_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Seven seconds of the demo clip, its face swapped throughout as the demo swaps it.

    The real clip's seconds 4.5-11.5 are cut first and only then manipulated, so the
    blend goes through one encoding, as in the demo's twin: encoding a manipulated
    picture twice wears the blend's traces down towards the clear threshold."""
    from fakewatch.training.manipulate import DEMO_SEED, manipulate_span

    real, _ = demo_pair("the cluster tests")
    folder = tmp_path_factory.mktemp("clips")
    cut, target = folder / "cut.mp4", folder / "swapped.mp4"
    with av.open(str(real)) as source, av.open(str(cut), "w") as out:
        video = source.streams.video[0]
        rate = video.average_rate or 30
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = video.width, video.height, "yuv420p"
        stream.options = {"bf": "0", "g": "30", "crf": "12"}
        for frame in source.decode(video):
            seconds = float(frame.time or 0.0)
            if 4.5 <= seconds < 11.5:
                image = frame.to_ndarray(format="rgb24")
                out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    manipulate_span(cut, target, 0.0, 7.0, seed=DEMO_SEED)
    return target


@pytest.fixture(scope="session")
def demo_clip() -> Path:
    clip, _ = demo_pair("the cluster tests")
    return clip


@pytest.fixture(scope="module")
def receiver() -> Iterator[ThreadedReceiver]:
    server = ThreadedReceiver()
    yield server
    server.close()
