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


def portable_recipe(config: TrainConfig) -> str:
    """The resolved recipe as YAML, with paths relative to the data root and to the run
    folder, so that what a bundle records names no folder of the machine it was made on."""
    recipe = config.model_dump(mode="json")
    root = config.data_root
    for section in ("data", "test_data"):
        for source in recipe[section]:
            path = Path(source["path"])
            if root is not None and path.is_relative_to(root):
                source["path"] = str(path.relative_to(root))
    recipe["data_root"] = "<data root>"
    for key in ("output", "cache"):
        if recipe.get(key):
            recipe[key] = Path(recipe[key]).name
    if recipe["init"].get("weights_cache"):
        recipe["init"]["weights_cache"] = "<weights cache>"
    return yaml.safe_dump(recipe, sort_keys=False)


def train(config: TrainConfig, resume: bool = True, progress: bool = True) -> Path:
    """Train as configured and write ``OUTPUT/bundle``; returns the bundle folder."""
    config.output.mkdir(parents=True, exist_ok=True)
    recipe = portable_recipe(config)
    (config.output / "config.yaml").write_text(recipe)
    data = prepare(config, default_face_detector(), progress)
    (config.output / "data.json").write_text(json.dumps(data.summary, indent=1) + "\n")
    if progress:
        print(f"data: {json.dumps(data.summary)}", flush=True)
    trainer = Trainer(
        config.spec,
        config.optimisation,
        data.train,
        data.validation,
        config.output,
        init=config.init,
    )
    (config.output / "init.json").write_text(json.dumps(trainer.initialisation, indent=1) + "\n")
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
        initialisation=trainer.initialisation,
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
