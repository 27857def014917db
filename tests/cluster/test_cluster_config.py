"""The cluster's configuration: the service's sections plus ``cluster:``, one format for
``fakewatch serve`` and ``fakewatch cluster``."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakewatch.cli.main import main
from fakewatch.cluster.config import ClusterServiceConfig, load_cluster_config
from fakewatch.stream.config import ConfigError, ServiceConfig, describe_config, load_config


def test_the_cluster_section_loads_from_yaml_and_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text("cluster:\n  shards: 4\n  redis_url: redis://:secret@redis:6379/0\n")
    config = load_cluster_config(path, {"FAKEWATCH_CLUSTER__SEGMENTER_MAX_BATCH": "8"})
    assert isinstance(config, ServiceConfig)
    assert (config.cluster.shards, config.cluster.segmenter_max_batch) == (4, 8)
    assert config.cluster.max_ongoing == 8
    described = describe_config(config)
    assert "  shards: 4" in described and "secret" not in described
    assert load_cluster_config(environ={}) == ClusterServiceConfig()


def test_bad_cluster_settings_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"cluster\.shards: Input should be greater"):
        load_cluster_config(environ={}, overrides={"cluster.shards": 0})
    with pytest.raises(ConfigError, match="segmenter_min_replicas must not exceed"):
        load_cluster_config(
            environ={},
            overrides={"cluster.segmenter_min_replicas": 5, "cluster.segmenter_max_replicas": 2},
        )
    # the service's own configuration has no cluster section
    with pytest.raises(ConfigError, match="cluster: Extra inputs are not permitted"):
        load_config(environ={}, overrides={"cluster.shards": 4})


def test_serve_reads_the_cluster_format_and_prints_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "fakewatch.yaml"
    path.write_text("cluster: {shards: 3}\nanalysis: {fps: 4}\n")
    assert main(["serve", "--config", str(path), "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert "  shards: 3" in printed and "  fps: 4.0" in printed
    path.write_text("cluster: {shards: 0}\n")
    assert main(["serve", "--config", str(path)]) == 2
    assert "cluster.shards" in capsys.readouterr().err
