"""The train.py configs the parts measure: composed by Hydra, turned into the task and data train.py builds."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def optimizer_on(task: SegmentationTask, device: str) -> Callable:
    """The task's optimiser factory with the options train.py gives it on ``device`` (fused AdamW on CUDA)."""
    return functools.partial(task.optimizer_factory, **task.to(device).optimizer_options())
