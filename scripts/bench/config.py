"""The train.py configs the parts measure: composed by Hydra, turned into the task train.py builds, and the
task's own training step as a plain PyTorch step."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

import unet_upsampling
from unet_upsampling.builders import build_task
from unet_upsampling.task import SegmentationTask

CONFIG_DIR = Path(unet_upsampling.__file__).resolve().parent / "configs"
_FIRST = ["deconv", "nearest_conv", "bilinear_conv", "pixelshuffle"]  # the modes MONAI has a counterpart for
MODES = _FIRST + sorted(p.stem for p in (CONFIG_DIR / "upsample").glob("*.yaml") if p.stem not in _FIRST)


def compose(overrides: list[str]) -> DictConfig:
    """The train.py config for ``overrides`` (no Hydra run directory is created); ``${hydra:...}`` is served, as
    the study experiments need it."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    GlobalHydra.instance().clear()
    with initialize_config_module("unet_upsampling.configs", version_base="1.3"):
        cfg = hydra_compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def resolved(cfg: DictConfig, key: str) -> dict[str, Any]:
    return OmegaConf.to_container(cfg[key], resolve=True)


def task_of(cfg: DictConfig, **model: Any) -> SegmentationTask:
    """The task and network train.py builds from ``cfg`` (fresh weights); ``model`` overrides model keys."""
    return build_task({"model": resolved(cfg, "model") | model, "task": resolved(cfg, "task")})


def optimizer_of(task: SegmentationTask, device: str) -> torch.optim.Optimizer:
    """The task's optimiser over its parameter groups, with the options train.py gives it on ``device`` (fused
    AdamW on CUDA); the task is moved to ``device`` and set to training."""
    task.to(device).train()
    return task.optimizer_factory(task.parameter_groups(), **task.optimizer_options())


def training_step(
    task: SegmentationTask, optimizer: torch.optim.Optimizer, device: str, bf16: bool
) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One optimiser step per call on a batch: the task's ``training_step`` (forward and loss, as train.py runs
    it), backward and the optimiser's step, under bf16 autocast if asked."""

    def step(image: torch.Tensor, mask: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = task.training_step((image, mask), 0)
        loss.backward()
        optimizer.step()

    return step
