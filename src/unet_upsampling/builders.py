"""Configs to objects: the one place that instantiates.

A run's own config (composed by Hydra from files and the command line) is instantiated as it is. A
config read from a checkpoint is checked first (``trust.py``), then built here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import lightning as L
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf
from torch import nn

from unet_upsampling.data.datamodule import pipeline
from unet_upsampling.errors import ConfigError, UserError
from unet_upsampling.task import SegmentationTask


@contextmanager
def user_errors_unwrapped() -> Iterator[None]:
    """A UserError raised inside a constructor reaches the user as itself, not wrapped by Hydra's instantiate."""
    try:
        yield
    except InstantiationException as error:
        if isinstance(error.__cause__, UserError):
            raise error.__cause__ from None
        raise


def build_datamodule(cfg: DictConfig) -> L.LightningDataModule:
    with user_errors_unwrapped():
        return instantiate(cfg.data)


def build_upsample(cfg: DictConfig) -> nn.Module:
    """The decoder's upsample block on its own (``upsample``), fresh weights."""
    return instantiate(cfg.upsample)


def build_eval_transform(transforms: Sequence[Mapping], normalize: Mapping[str, Any], scale: float) -> Callable:
    """The evaluation pipeline: resize by ``scale``, the albumentations ``transforms``, then ``normalize``."""
    return pipeline(instantiate(OmegaConf.create(list(transforms))), normalize, scale)


def build_task(config: Mapping[str, Any]) -> SegmentationTask:
    """The task (LightningModule) with its network, fresh weights."""
    with user_errors_unwrapped():
        return instantiate(config["task"], net=instantiate(config["model"]))


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """Every entry of ``callbacks``; an entry set to null (``callbacks.progress_bar=null``) is left out."""
    return [instantiate(node) for node in (cfg.get("callbacks") or {}).values() if node is not None]


def build_loggers(cfg: DictConfig) -> list:
    """Every entry of ``logger`` but those set to null."""
    return [build_logger(name, node) for name, node in (cfg.get("logger") or {}).items() if node is not None]


def build_logger(name: str, node: DictConfig):
    """One logger; a logger whose package is not installed (TensorBoard, MLflow: the ``loggers`` extra) is a
    ConfigError naming it and the install command."""
    try:
        return instantiate(node)
    except InstantiationException as error:
        if not isinstance(error.__cause__, ModuleNotFoundError):
            raise
        missing = str(error.__cause__).splitlines()[0]
        raise ConfigError(
            f"logger={name} needs a package this installation lacks ({missing}): install the loggers with "
            f'pip install -e ".[loggers]" in the project\'s folder, or leave this logger out'
        ) from None


def build_trainer(cfg: DictConfig, callbacks: list, loggers: list, **overrides: Any) -> L.Trainer:
    """Lightning's Trainer; without loggers (``~logger``) the learning-rate curve has nowhere to go and is left
    out (Lightning's LearningRateMonitor refuses to start without a logger)."""
    if not loggers:
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    return instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False, **overrides)
