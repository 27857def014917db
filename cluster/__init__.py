"""fakewatch on a Ray cluster: streams spread over shard actors, one batched segmenter.

Installed with ``pip install fakewatch[cluster]``. The parts:

- :mod:`~fakewatch.cluster.state`: the desired stream set, vote checkpoints and metrics
  targets in Redis, which outlives any process or node;
- :mod:`~fakewatch.cluster.shard`: ``StreamShard``, a detached named actor (``shard-i``)
  running the single-machine pipeline for the streams whose id hashes to it;
- :mod:`~fakewatch.cluster.segmenter`: the UNet as a Ray Serve deployment that batches the
  crops of every shard;
- :mod:`~fakewatch.cluster.alerts`: events through a Redis Stream to the senders
  (evidence, webhooks), each alert keyed by its stream and window;
- :mod:`~fakewatch.cluster.front`: the same REST API as ``fakewatch serve``, the alert
  sender and the shards' supervisor, as a Serve deployment;
- :mod:`~fakewatch.cluster.launch`: the Serve application and ``fakewatch cluster up``.
"""
