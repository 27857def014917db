"""How long to wait before trying again: exponential backoff with jitter.

Every retry in the service waits by this rule: a source reconnecting, a webhook
delivery retried, a hung engine or face detector reopened, a cluster shard opening its
pipeline, alerts written to or read from Redis. The delay doubles with each failed
attempt up to a cap, and a random fraction (``jitter``) is added to or taken from it,
so that many clients failing together do not retry together.
"""

from __future__ import annotations

import random

DEFAULT_JITTER = 0.2
"""The fraction of a delay added or taken at random, unless configured otherwise."""

_rng = random.Random()


def backoff_delay(
    attempt: int,
    initial_s: float,
    max_s: float,
    jitter: float = DEFAULT_JITTER,
    rng: random.Random | None = None,
) -> float:
    """Seconds to wait after failed attempt ``attempt`` (0 for the first failure):
    ``initial_s`` doubling with each attempt, at most ``max_s``, moved by up to
    ``jitter`` of itself either way and never beyond ``max_s``.

    A delay the jitter would push past the cap is moved down by the same fraction
    instead of being clipped to it: clipping would put half of the capped delays on
    exactly ``max_s``, and clients that fail together would retry together there."""
    base = min(max_s, initial_s * 2.0 ** min(max(attempt, 0), 40))
    spread = jitter * (2 * (rng or _rng).random() - 1)
    delay = base * (1 + spread)
    if delay > max_s:
        delay = base * (1 - abs(spread))
    return float(max(0.0, min(max_s, delay)))
