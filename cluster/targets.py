"""A metrics endpoint per shard and per segmenter replica, announced for discovery.

Each serves its own ``fakewatch_*`` registry over HTTP on a free port of its node and
announces ``<node ip>:<port>`` with its labels (``component``, ``shard`` or ``replica``,
``node``) in Redis every few seconds; the front lists the fresh ones at
``/cluster/targets`` for Prometheus's HTTP service discovery, which attaches the labels
to every series it scrapes there.
"""

from __future__ import annotations

import asyncio
import logging

import ray
from prometheus_client import CollectorRegistry, start_http_server

from fakewatch.cluster.state import ClusterState
from fakewatch.stream.logs import LOGGER_NAME, describe_error, log

logger = logging.getLogger(f"{LOGGER_NAME}.cluster.targets")

ANNOUNCE_EVERY_S = 5.0
TARGET_MAX_AGE_S = 20.0
"""A target not announced for this long is no longer listed (its process is gone)."""


def node_address() -> str:
    """This node's address as the rest of the cluster reaches it."""
    return str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]


class MetricsEndpoint:
    """``registry`` served on a free port of every interface of this node."""

    def __init__(self, registry: CollectorRegistry, name: str, labels: dict[str, str]) -> None:
        self.name = name
        self.node = node_address()
        self.labels = {**labels, "node": self.node}
        self._server, self._thread = start_http_server(0, addr="0.0.0.0", registry=registry)
        self.address = f"{self.node}:{self._server.server_port}"

    async def announce(self, state: ClusterState) -> None:
        """Announce the endpoint every few seconds, until cancelled; Redis errors are
        logged and the next announcement tried."""
        while True:
            try:
                await state.register_target(self.name, self.address, self.labels)
            except Exception as error:
                log(logger, logging.WARNING, "targets.announce_failed", error=describe_error(error))
            await asyncio.sleep(ANNOUNCE_EVERY_S)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
