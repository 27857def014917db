"""``fakewatch train CONFIG``: data -> cached crops -> trained network -> engine bundle."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from fakewatch.engines.bundle import Provenance
from fakewatch.engines.export import write_bundle
from fakewatch.engines.faces import default_face_detector
from fakewatch.training.config import TrainConfig
from fakewatch.training.data import prepare
from fakewatch.training.loop import Trainer


def train(config: TrainConfig, resume: bool = True, progress: bool = True) -> Path:
    """Train as configured and write ``OUTPUT/bundle``; returns the bundle folder."""
    config.output.mkdir(parents=True, exist_ok=True)
    recipe = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    (config.output / "config.yaml").write_text(recipe)
    data = prepare(config, default_face_detector(), progress)
    (config.output / "data.json").write_text(json.dumps(data.summary, indent=1) + "\n")
    if progress:
        print(f"data: {json.dumps(data.summary)}", flush=True)
    trainer = Trainer(config.spec, config.optimisation, data.train, data.validation, config.output)
    state = trainer.fit(resume=resume, progress=progress)
    best = next((r for r in state.history if r.epoch == state.best_epoch), None)
    metrics = {}
    if best is not None:
        metrics = {"val_loss": round(best.val_loss, 5), "best_epoch": float(best.epoch)}
        if best.val_auc is not None:
            metrics["val_auc"] = round(best.val_auc, 5)
        if best.val_pixel_iou is not None:
            metrics["val_pixel_iou"] = round(best.val_pixel_iou, 5)
    provenance = Provenance(
        data=[f"{s.layout}:{s.path.name}" for s in config.data],
        recipe=recipe,
        metrics=metrics,
    )
    bundle = write_bundle(
        config.output / "bundle",
        trainer.best_network(),
        config.spec,
        config.name,
        provenance,
        half_storage=config.half_storage,
    )
    return bundle.folder
