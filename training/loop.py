"""The training loop: BCE + Dice on masks, checkpoints as safetensors, early stopping.

One epoch is a fixed number of steps over freshly synthesised samples, so "epoch" means
"validation interval". Everything a resumed run needs (weights, optimiser moments, the
step, the best validation so far and the history) is written after every epoch, as
safetensors plus JSON: no pickle.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Iterable, Iterator, Sized
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fakewatch.engines.model import DeployedSegmenter, build_model
from fakewatch.engines.scoring import DEFAULT_TOP_FRACTION, face_region, score_masks
from fakewatch.engines.spec import ModelSpec
from fakewatch.training.config import Initialisation, Optimisation

Sample = tuple[np.ndarray, np.ndarray, float]  # crop uint8 (S,S,3), mask float32 (S,S), label


@dataclass
class ValidationSet:
    """Fixed validation samples: crops, target masks, labels and the source of each."""

    crops: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    sources: list[str]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class EpochRecord:
    epoch: int
    step: int
    learning_rate: float
    train_loss: float
    val_loss: float
    val_auc: float | None
    val_pixel_iou: float | None
    seconds: float


@dataclass
class TrainState:
    """What is saved beside the weights after every epoch."""

    epoch: int = 0
    step: int = 0
    best_metric: float = -math.inf
    best_epoch: int = 0
    epochs_without_gain: int = 0
    history: list[EpochRecord] = field(default_factory=list)


def keep_freed_memory() -> None:
    """Have glibc serve the large activation buffers of a CPU training step from its heap
    and keep them when freed, instead of mapping fresh zeroed pages from the kernel for
    each one and unmapping them again: on a 2-core machine that page traffic took about
    a fifth of the step's CPU time, most of it in the kernel. Does nothing where the C
    library is not glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    mallopt(m_mmap_threshold, 1 << 30)
    mallopt(m_trim_threshold, 1 << 30)
    mallopt(m_top_pad, 1 << 28)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("optimisation.device is cuda but no CUDA device is visible")
    return torch.device(name)


def learning_rate(step: int, total: int, options: Optimisation) -> float:
    """Linear warm-up, then cosine decay to 1% of the peak."""
    peak = options.learning_rate
    if step < options.warmup_steps:
        return peak * (step + 1) / options.warmup_steps
    progress = min(1.0, (step - options.warmup_steps) / max(1, total - options.warmup_steps))
    return peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


class SegmentationLoss(nn.Module):
    """BCE + soft Dice on the mask, plus BCE on the crop's pooled score, plus (with a
    boundary channel) BCE on the blend boundary.

    Dice is taken over the whole batch, so real crops (empty masks) still count through
    their predicted area. The pooled score is the mean of the top 5% of logits inside
    the face region, the same region and fraction as the serving score, so training
    also optimises the number the decision is made on. The boundary target is Face
    X-ray's ``4 m (1 - m)`` of the mask blurred by a 2-pixel Gaussian (so a hard
    difference mask has a boundary too): 1 on the seam, 0 inside and outside.
    """

    def __init__(
        self, spec: ModelSpec, dice_weight: float, score_weight: float, boundary_weight: float = 0
    ) -> None:
        super().__init__()
        region = torch.from_numpy(face_region(spec.input_size, spec.crop_margin).copy())
        self.register_buffer("region", region.flatten())
        self.k = max(1, round(int(region.sum()) * DEFAULT_TOP_FRACTION))
        self.dice_weight = dice_weight
        self.score_weight = score_weight
        self.boundary_weight = boundary_weight if spec.boundary_head else 0.0
        radius = 6
        steps = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-(steps**2) / (2 * 2.0**2))
        self.register_buffer("blur", (kernel / kernel.sum()).view(1, 1, 1, -1))

    def boundary(self, masks: torch.Tensor) -> torch.Tensor:
        """The blend-boundary target ``(N, S, S)`` of masks ``(N, S, S)``."""
        kernel = self.get_buffer("blur")
        pad = kernel.shape[-1] // 2
        x = nn.functional.pad(masks[:, None], (pad, pad, 0, 0), mode="replicate")
        x = nn.functional.conv2d(x, kernel)
        x = nn.functional.pad(x, (0, 0, pad, pad), mode="replicate")
        blurred = nn.functional.conv2d(x, kernel.transpose(-1, -2))[:, 0]
        return (4 * blurred * (1 - blurred)).clamp(0, 1)

    def forward(
        self, outputs: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        """``outputs``: logits ``(N, C, S, S)`` (mask, then boundary) or ``(N, S, S)``."""
        outputs = outputs.float()
        logits = outputs if outputs.dim() == 3 else outputs[:, 0]
        bce = nn.functional.binary_cross_entropy_with_logits(logits, masks)
        probabilities = torch.sigmoid(logits)
        intersection = (probabilities * masks).sum()
        dice = 1 - (2 * intersection + 1) / (probabilities.sum() + masks.sum() + 1)
        loss = bce + self.dice_weight * dice
        if self.score_weight:
            inside = logits.flatten(1)[:, self.get_buffer("region")]
            pooled = inside.topk(self.k, dim=1).values.mean(dim=1)
            loss = loss + self.score_weight * nn.functional.binary_cross_entropy_with_logits(
                pooled, labels
            )
        if self.boundary_weight and outputs.dim() == 4 and outputs.shape[1] > 1:
            loss = loss + self.boundary_weight * nn.functional.binary_cross_entropy_with_logits(
                outputs[:, 1], self.boundary(masks)
            )
        return loss


def encoder_parameters(network: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """The network's parameters split into (encoder, the rest)."""
    encoder = network.get_submodule("encoder")
    inside = {id(p) for p in encoder.parameters()}
    rest = [p for p in network.parameters() if id(p) not in inside]
    return list(encoder.parameters()), rest


def freeze_batchnorm_statistics(module: nn.Module) -> None:
    """Put every BatchNorm of ``module`` in eval mode: its running statistics stay as
    they are (its scale and shift still learn)."""
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.eval()


class Trainer:
    """Trains one model from a dataset of synthesised samples and a fixed validation set."""

    def __init__(
        self,
        spec: ModelSpec,
        options: Optimisation,
        train_data: Dataset[Sample],
        validation: ValidationSet,
        run_dir: Path,
        init: Initialisation | None = None,
    ) -> None:
        self.spec, self.options = spec, options
        self.init = init or Initialisation()
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.device = pick_device(options.device)
        if self.device.type == "cpu":
            keep_freed_memory()
        if options.threads is not None:
            torch.set_num_threads(options.threads)
        torch.manual_seed(options.seed)
        self.train_data = train_data
        network = build_model(spec)
        self.initialisation = self._initialise(network)
        self.model = DeployedSegmenter(network, spec).to(self.device)
        if self.device.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        encoder, rest = encoder_parameters(self.model.network)
        scale = self.init.encoder_lr_scale
        self.optimiser = torch.optim.AdamW(
            [{"params": encoder, "lr_scale": scale}, {"params": rest, "lr_scale": 1.0}],
            lr=options.learning_rate,
            weight_decay=options.weight_decay,
        )
        self.loss = SegmentationLoss(
            spec, options.dice_weight, options.score_weight, options.boundary_weight
        ).to(self.device)
        self.validation = validation
        self.state = TrainState()
        self.amp_dtype = self._amp_dtype()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    def _initialise(self, network: nn.Module) -> dict[str, object]:
        """Load the recipe's pretrained encoder weights (if any) into ``network`` and
        re-estimate the BatchNorm channels they store at zero variance on training
        crops; returns what was done, for the bundle's provenance."""
        if self.init.encoder == "none":
            return {"encoder": "none"}
        from fakewatch.training.pretrained import (
            DEFAULT_CACHE,
            check_spec,
            encoder_record,
            load_encoder,
            reestimate_dead_channels,
        )

        check_spec(self.spec, self.init.encoder)
        cache = self.init.weights_cache or DEFAULT_CACHE
        loaded = load_encoder(network, self.init.encoder, cache)
        length = len(cast(Sized, self.train_data))
        crops = np.stack([self.train_data[i][0] for i in range(min(32, length))])
        probe = DeployedSegmenter(network, self.spec).eval()
        mean, inv_std = probe.get_buffer("mean"), probe.get_buffer("inv_std")
        inputs = (torch.from_numpy(crops).permute(0, 3, 1, 2).float() - mean) * inv_std
        repaired = reestimate_dead_channels(
            network.get_submodule("encoder"), list(torch.split(inputs, 16))
        )
        return {
            "encoder": self.init.encoder,
            "tensors": len(loaded),
            "source": encoder_record(self.init.encoder, cache),
            "reestimated_batchnorm_channels": repaired,
            "encoder_lr_scale": self.init.encoder_lr_scale,
            "freeze_encoder_bn": self.init.freeze_encoder_bn,
        }

    def _amp_dtype(self) -> torch.dtype | None:
        if self.device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    # -- the loop -----------------------------------------------------------------------

    def fit(self, resume: bool = True, progress: bool = True) -> TrainState:
        """Train until ``epochs`` or early stopping; returns the final state."""
        from tqdm import tqdm

        if resume and (self.run_dir / "state.json").is_file():
            self.load_checkpoint()
        options = self.options
        total = options.epochs * options.steps_per_epoch
        # Sample i is made from (seed, i), so a resumed run goes on with the samples it
        # would have drawn next rather than repeating the first ones.
        length = len(cast(Sized, self.train_data))
        first = min(self.state.step * options.batch_size, max(0, length - 1))
        loader = DataLoader(
            self.train_data,
            sampler=range(first, length),
            batch_size=options.batch_size,
            num_workers=options.workers,
            persistent_workers=options.workers > 0,
            worker_init_fn=_seed_worker,
            drop_last=True,
        )
        batches = _forever(loader)
        while self.state.epoch < options.epochs:
            if self.state.epochs_without_gain >= options.patience:
                break
            started = time.perf_counter()
            self.model.train()
            if self.init.freeze_encoder_bn:
                freeze_batchnorm_statistics(self.model.network.get_submodule("encoder"))
            losses = []
            bar = tqdm(
                range(options.steps_per_epoch),
                desc=f"epoch {self.state.epoch + 1}/{options.epochs}",
                disable=not progress,
                leave=False,
            )
            for _ in bar:
                lr = learning_rate(self.state.step, total, options)
                for group in self.optimiser.param_groups:
                    group["lr"] = lr * group["lr_scale"]
                losses.append(self._step(next(batches)))
                self.state.step += 1
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            record = self._validate(float(np.mean(losses)), lr, time.perf_counter() - started)
            self._end_epoch(record)
            if progress:
                auc = "-" if record.val_auc is None else f"{record.val_auc:.4f}"
                iou = "-" if record.val_pixel_iou is None else f"{record.val_pixel_iou:.3f}"
                print(
                    f"epoch {record.epoch}: train {record.train_loss:.4f} "
                    f"val {record.val_loss:.4f} "
                    f"AUC {auc} IoU {iou} ({record.seconds:.0f} s)"
                    + (" *" if self.state.best_epoch == record.epoch else ""),
                    flush=True,
                )
        return self.state

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> float:
        crops, masks, labels = (t.to(self.device, non_blocking=True) for t in batch)
        with torch.autocast(
            self.device.type,
            dtype=self.amp_dtype or torch.float32,
            enabled=self.amp_dtype is not None,
        ):
            outputs = self.model.outputs(crops)
            loss = self._loss(outputs, masks.float(), labels.float())
        self.optimiser.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        self.scaler.unscale_(self.optimiser)
        nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.scaler.step(self.optimiser)
        self.scaler.update()
        return float(loss.detach())

    def _loss(
        self, outputs: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        if self.spec.head == "classification":
            logits = outputs[:, 0] if outputs.dim() == 2 else outputs
            return nn.functional.binary_cross_entropy_with_logits(logits.float(), labels)
        result: torch.Tensor = self.loss(outputs, masks, labels)
        return result

    # -- validation -----------------------------------------------------------------------

    @torch.no_grad()
    def predict(self, crops: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Probability masks ``(N, S, S)`` of the current model."""
        self.model.eval()
        out = []
        for start in range(0, len(crops), batch_size):
            batch = torch.from_numpy(crops[start : start + batch_size]).to(self.device)
            out.append(self.model(batch).float().cpu().numpy())
        return (
            np.concatenate(out)
            if out
            else np.zeros((0, self.spec.input_size, self.spec.input_size))
        )

    @torch.no_grad()
    def _validate(self, train_loss: float, lr: float, seconds: float) -> EpochRecord:
        from sklearn.metrics import roc_auc_score

        v = self.validation
        predictions = self.predict(v.crops)
        probabilities = torch.from_numpy(predictions).clamp(1e-6, 1 - 1e-6)
        logits = torch.log(probabilities / (1 - probabilities)).to(self.device)
        masks = torch.from_numpy(v.masks).float().to(self.device)
        labels = torch.from_numpy(v.labels).float().to(self.device)
        if self.spec.head == "classification":
            logits = logits[:, 0, 0]
        val_loss = float(self._loss(logits, masks, labels))
        scores, _ = score_masks(predictions, self.spec.crop_margin)
        auc = float(roc_auc_score(v.labels, scores)) if len(set(v.labels.tolist())) == 2 else None
        iou = None
        fake = v.labels > 0.5
        if self.spec.head == "segmentation" and fake.any():
            predicted, truth = predictions[fake] >= 0.5, v.masks[fake] >= 0.5
            union = np.logical_or(predicted, truth).sum()
            iou = float(np.logical_and(predicted, truth).sum() / union) if union else 1.0
        return EpochRecord(
            self.state.epoch + 1, self.state.step, lr, train_loss, val_loss, auc, iou, seconds
        )

    def _end_epoch(self, record: EpochRecord) -> None:
        state = self.state
        state.epoch = record.epoch
        state.history.append(record)
        metric = record.val_auc if record.val_auc is not None else -record.val_loss
        if metric > state.best_metric + 1e-4:
            state.best_metric, state.best_epoch, state.epochs_without_gain = metric, record.epoch, 0
            _save_tensors(self.model.network.state_dict(), self.run_dir / "best.safetensors")
        else:
            state.epochs_without_gain += 1
        self.save_checkpoint()
        _write_csv(self.run_dir / "metrics.csv", state.history)

    # -- checkpoints ------------------------------------------------------------------------

    def save_checkpoint(self) -> None:
        """Weights, optimiser moments and state, each written atomically."""
        _save_tensors(self.model.network.state_dict(), self.run_dir / "last.safetensors")
        optimiser = self.optimiser.state_dict()
        tensors = {
            f"{index}.{name}": value
            for index, slots in optimiser["state"].items()
            for name, value in slots.items()
        }
        _save_tensors(tensors, self.run_dir / "optimiser.safetensors")
        data = asdict(self.state) | {"param_groups": optimiser["param_groups"]}
        _atomic_write(self.run_dir / "state.json", json.dumps(data, indent=1))

    def load_checkpoint(self) -> None:
        """Resume from the run folder's last checkpoint."""
        from safetensors.torch import load_file

        data = json.loads((self.run_dir / "state.json").read_text())
        param_groups = data.pop("param_groups")
        history = [EpochRecord(**r) for r in data.pop("history")]
        self.state = TrainState(**data, history=history)
        self.model.network.load_state_dict(load_file(str(self.run_dir / "last.safetensors")))
        self.model.to(self.device)
        flat = load_file(str(self.run_dir / "optimiser.safetensors"), device=str(self.device))
        state: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in flat.items():
            index, name = key.split(".", 1)
            state.setdefault(int(index), {})[name] = value
        self.optimiser.load_state_dict({"state": state, "param_groups": param_groups})

    def best_network(self) -> nn.Module:
        """The network with the best validation weights, on CPU in eval mode."""
        from safetensors.torch import load_file

        network = build_model(self.spec)
        path = self.run_dir / "best.safetensors"
        if not path.is_file():
            path = self.run_dir / "last.safetensors"
        network.load_state_dict(load_file(str(path)))
        return network.eval()


def _forever(
    loader: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    while True:
        yield from loader


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)


def _save_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    from safetensors.torch import save_file

    tmp = path.with_suffix(".tmp")
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(tmp))
    tmp.replace(path)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def _write_csv(path: Path, history: list[EpochRecord]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(asdict(history[0])))
        writer.writeheader()
        writer.writerows(asdict(r) for r in history)
    tmp.replace(path)
