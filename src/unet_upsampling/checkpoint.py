"""Checkpoints that rebuild their own model: the run's resolved config travels inside them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate

CONFIG_KEY = "unet_upsampling_config"


class StoreConfig(L.Callback):
    """Adds the run's resolved config (a plain dict) to every checkpoint."""

    def __init__(self, config: dict[str, Any]):
        self.config = config

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint[CONFIG_KEY] = self.config


def build_module(config: dict[str, Any]) -> L.LightningModule:
    """The SegmentationModule a run's config describes, with fresh weights."""
    return instantiate(config["module"], net=instantiate(config["model"]))


def load_checkpoint(path: str | Path) -> tuple[L.LightningModule, dict[str, Any]]:
    """The trained module (in eval mode, on CPU) and the config of the run that wrote ``path``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist: pass ckpt_path=<run dir>/checkpoints/last.ckpt")
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    if CONFIG_KEY not in checkpoint:
        raise ValueError(f"{path} was not written by this project's train.py (it has no {CONFIG_KEY!r} entry)")
    config = checkpoint[CONFIG_KEY]
    module = build_module(config)
    module.load_state_dict(checkpoint["state_dict"])
    return module.eval(), config
