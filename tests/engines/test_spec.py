import pytest
from pydantic import ValidationError

from fakewatch.engines.spec import ModelSpec


def test_defaults_are_valid() -> None:
    spec = ModelSpec()
    assert spec.input_size % 32 == 0
    assert len(spec.decoder_channels) == spec.encoder_depth


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("input_size", 200, "multiple of 32"),
        ("decoder_channels", (64, 32), "one width per stage"),
        ("std", (0.2, 0.0, 0.2), "positive"),
        ("crop_margin", 0.5, "greater than or equal to 1"),
        ("colour", "bgr", "Extra inputs are not permitted"),
    ],
)
def test_bad_specs_are_refused_with_the_reason(field: str, value: object, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ModelSpec(**{field: value})


def test_round_trips_through_json() -> None:
    spec = ModelSpec(encoder="resnet18", input_size=256)
    assert ModelSpec.model_validate_json(spec.model_dump_json()) == spec
