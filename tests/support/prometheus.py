"""One reader of the Prometheus text exposition (``/metrics``), for every test."""

from __future__ import annotations

import collections
import re

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample of ``name`` in a Prometheus text exposition: (labels, value)."""
    samples = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match["name"] == name:
            labels = dict(_LABEL.findall(match["labels"] or ""))
            samples.append((labels, float(match["value"])))
    return samples


def _matches(sample: dict[str, str], wanted: dict[str, str | tuple[str, ...]]) -> bool:
    """Whether a sample's labels have each wanted value (or one of a tuple of them)."""
    for key, value in wanted.items():
        allowed = value if isinstance(value, tuple) else (value,)
        if sample.get(key) not in allowed:
            return False
    return True


def metric_value(text: str, name: str, **labels: str) -> float | None:
    """The value of the first sample of ``name`` with ``labels``, or None."""
    for sample_labels, value in metric_samples(text, name):
        if _matches(sample_labels, dict(labels)):
            return value
    return None


def histogram_bucket(
    text: str, name: str, quantile: float, **labels: str | tuple[str, ...]
) -> float:
    """The upper bound of the bucket of histogram ``name`` (the label sets matching
    ``labels`` summed; a tuple allows any of its values) that holds its ``quantile``; NaN
    without observations."""
    buckets: dict[float, float] = collections.defaultdict(float)
    for sample_labels, value in metric_samples(text, f"{name}_bucket"):
        if _matches(sample_labels, labels):
            buckets[float(sample_labels["le"])] += value
    total = buckets.get(float("inf"), 0.0)
    if not total:
        return float("nan")
    return next(b for b in sorted(buckets) if buckets[b] >= quantile * total)


def metric(text: str, name: str, **labels: str) -> float:
    """:func:`metric_value`, failing the test when there is no such sample."""
    value = metric_value(text, name, **labels)
    if value is None:
        raise AssertionError(f"no sample {name}{labels} in the metrics")
    return value
