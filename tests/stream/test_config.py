"""The service configuration: defaults, YAML, environment overrides and clear refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from fakewatch.cluster.config import ClusterServiceConfig
from fakewatch.stream.config import ConfigError, load_config


def test_defaults_serve_loopback_with_the_shipped_engine() -> None:
    config = load_config(environ={})
    assert (config.server.host, config.server.port) == ("127.0.0.1", 8080)
    assert config.engine.bundle is None and config.engine.device == "cpu"
    assert config.analysis.fps == 5.0
    assert not config.sources.allow_local_files


def test_yaml_then_environment_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "fakewatch.yaml"
    path.write_text(
        "server: {port: 9000}\n"
        "analysis: {fps: 3}\n"
        "streams:\n  - {name: door, url: 'rtsp://cam.local/live'}\n"
    )
    environ = {"FAKEWATCH_ANALYSIS__FPS": "4.5", "FAKEWATCH_LIMITS__MAX_STREAMS": "3"}
    config = load_config(path, environ, {"server.port": 9100})
    assert config.server.port == 9100
    assert config.analysis.fps == 4.5
    assert config.limits.max_streams == 3
    assert config.streams[0].name == "door"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("analysis: {fsp: 5}\n", "analysis.fsp: Extra inputs are not permitted"),
        ("analysis: {fps: 0}\n", "analysis.fps: Input should be greater than 0"),
        ("batcher: {max_batch: 100000}\n", "batcher.max_batch"),
        ("vote: {enter_threshold: 0.5, exit_threshold: 0.7}\n", "exit_threshold"),
        ("server: {host: 0.0.0.0}\n", "set server.token"),
        ("- just a list\n", "must hold a mapping"),
        ("server: [\n", "not valid YAML"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert expected in str(caught.value)


def test_off_loopback_needs_a_long_token() -> None:
    with pytest.raises(ConfigError, match="token"):
        load_config(environ={"FAKEWATCH_SERVER__HOST": "0.0.0.0", "FAKEWATCH_SERVER__TOKEN": "x"})
    config = load_config(
        environ={"FAKEWATCH_SERVER__HOST": "0.0.0.0", "FAKEWATCH_SERVER__TOKEN": "s" * 32}
    )
    assert config.server.token == "s" * 32


def test_every_limit_has_bounds_and_a_description() -> None:
    checked = 0
    # the cluster's configuration: the service's sections and its own
    for section in ClusterServiceConfig.model_fields.values():
        model = section.annotation
        if not isinstance(model, type) or not hasattr(model, "model_fields"):
            continue
        for name, field in model.model_fields.items():
            if field.annotation in (int, float, float | None) and name != "port":
                assert field.description, f"{model.__name__}.{name} has no description"
                assert field.metadata, f"{model.__name__}.{name} has no bounds"
                checked += 1
    assert checked > 25
