"""What the cluster keeps in Redis, so that it outlives any process and any node.

- the desired stream set: ``streams`` (id to the stream's JSON), ``names`` (name to id)
  and one set per shard (``shard:<i>``) of the ids it runs; a stream's shard is a stable
  hash of its id over the fixed shard count, so any restarted shard finds its streams;
- ``votes``: each stream's vote window (scores, times, whether it is alerting), saved by
  its shard, read back when the shard restarts;
- ``targets``: the metrics endpoints of shards and segmenter replicas, each refreshed by
  its owner, served to Prometheus as HTTP service discovery by the front;
- ``alerts`` (see :mod:`~fakewatch.cluster.alerts`).

Every key starts with ``{<namespace>}:``: one namespace per cluster, and one hash slot,
so the multi-key scripts below also run on a Redis Cluster.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import redis.asyncio as aioredis

from fakewatch.cluster.config import ClusterConfig
from fakewatch.stream.analysis.registry import StreamLimitError, StreamNameTakenError

ADD_STREAM = """
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[4]) then return 1 end
if redis.call('HSETNX', KEYS[2], ARGV[2], ARGV[1]) == 0 then return 2 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
return 0
"""
"""Add a stream unless the limit is reached (1) or its name is taken (2), atomically."""


def shard_of(stream_id: str, shards: int) -> int:
    """The shard that runs a stream: a hash of its id, the same in every process."""
    return int.from_bytes(hashlib.sha256(stream_id.encode()).digest()[:8], "big") % shards


@dataclass(frozen=True)
class DesiredStream:
    """A stream the cluster should be watching."""

    id: str
    name: str
    url: str
    shard: int
    created: float

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> DesiredStream:
        return cls(**json.loads(text))


def connect(config: ClusterConfig) -> aioredis.Redis:
    """A Redis client whose every call is bounded by ``cluster.call_timeout_s``."""
    return aioredis.Redis.from_url(
        config.redis_url,
        socket_timeout=config.call_timeout_s,
        socket_connect_timeout=config.call_timeout_s,
        health_check_interval=30,
        retry_on_timeout=True,
    )


class ClusterState:
    """The desired streams, vote checkpoints and metrics targets of one cluster."""

    def __init__(self, client: aioredis.Redis, config: ClusterConfig) -> None:
        self.redis = client
        self.shards = config.shards
        self.prefix = f"{{{config.namespace}}}:"
        self._add = client.register_script(ADD_STREAM)

    def key(self, name: str) -> str:
        return self.prefix + name

    # the desired streams

    async def add(self, name: str | None, url: str, max_streams: int) -> DesiredStream:
        """Record a new stream; :class:`StreamLimitError` at ``max_streams``,
        :class:`StreamNameTakenError` when its name is taken."""
        stream_id = uuid.uuid4().hex[:12]
        stream = DesiredStream(
            id=stream_id,
            name=name or f"url-{stream_id[:6]}",
            url=url,
            shard=shard_of(stream_id, self.shards),
            created=round(time.time(), 3),
        )
        keys = [self.key("streams"), self.key("names"), self.key(f"shard:{stream.shard}")]
        result = await self._add(
            keys=keys, args=[stream.id, stream.name, stream.to_json(), max_streams]
        )
        if result == 1:
            raise StreamLimitError(
                f"the cluster already watches {max_streams} streams "
                f"(limits.max_streams = {max_streams})"
            )
        if result == 2:
            raise StreamNameTakenError(f"a stream named {stream.name!r} already exists")
        return stream

    async def remove(self, stream: DesiredStream) -> bool:
        """Forget a stream and its vote checkpoint; False if it was already gone."""
        async with self.redis.pipeline(transaction=True) as batch:
            batch.hdel(self.key("streams"), stream.id)
            batch.hdel(self.key("names"), stream.name)
            batch.srem(self.key(f"shard:{stream.shard}"), stream.id)
            batch.hdel(self.key("votes"), stream.id)
            removed, *_ = await batch.execute()
        return bool(removed)

    async def streams(self) -> list[DesiredStream]:
        """Every desired stream, oldest first."""
        values = await self.redis.hvals(self.key("streams"))
        return sorted((DesiredStream.from_json(v) for v in values), key=lambda s: (s.created, s.id))

    async def find(self, key: str) -> DesiredStream | None:
        """A stream by id or by name."""
        text = await self.redis.hget(self.key("streams"), key)
        if text is None:
            stream_id = await self.redis.hget(self.key("names"), key)
            if stream_id is None:
                return None
            text = await self.redis.hget(self.key("streams"), stream_id)
        return None if text is None else DesiredStream.from_json(text)

    async def of_shard(self, shard: int) -> list[DesiredStream]:
        """The streams one shard should run."""
        ids = sorted(await self.redis.smembers(self.key(f"shard:{shard}")))
        if not ids:
            return []
        values = await self.redis.hmget(self.key("streams"), ids)
        return [DesiredStream.from_json(v) for v in values if v is not None]

    # vote checkpoints

    async def save_votes(self, windows: dict[str, dict[str, Any]]) -> None:
        if windows:
            mapping: dict[Any, Any] = {
                k: json.dumps(v, separators=(",", ":")) for k, v in windows.items()
            }
            await self.redis.hset(self.key("votes"), mapping=mapping)

    async def load_votes(self, stream_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not stream_ids:
            return {}
        values = await self.redis.hmget(self.key("votes"), stream_ids)
        return {k: json.loads(v) for k, v in zip(stream_ids, values, strict=True) if v}

    # metrics targets

    async def register_target(self, name: str, address: str, labels: dict[str, str]) -> None:
        """Announce (again) a metrics endpoint; it stays listed while refreshed."""
        entry = {"address": address, "labels": labels, "seen": time.time()}
        await self.redis.hset(self.key("targets"), name, json.dumps(entry))

    async def forget_target(self, name: str) -> None:
        await self.redis.hdel(self.key("targets"), name)

    async def targets(self, max_age_s: float) -> list[dict[str, Any]]:
        """Prometheus HTTP service discovery: every endpoint refreshed within
        ``max_age_s``; older entries are deleted."""
        entries = await self.redis.hgetall(self.key("targets"))
        now, groups, stale = time.time(), [], []
        for name, text in sorted(entries.items()):
            entry = json.loads(text)
            if now - entry["seen"] > max_age_s:
                stale.append(name)
                continue
            groups.append({"targets": [entry["address"]], "labels": entry["labels"]})
        if stale:
            await self.redis.hdel(self.key("targets"), *stale)
        return groups
