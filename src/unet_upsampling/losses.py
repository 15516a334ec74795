"""Segmentation losses on logits (N, C, H, W) and targets (N, H, W): Hydra ``_target_``s (configs/task/loss/).

The losses themselves are torch's and segmentation_models_pytorch's; this module adds their sum, and says which
loss a checkpoint's stored config may rebuild.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from importlib.resources import files
from typing import Any

import torch
from omegaconf import OmegaConf
from torch import nn


class SumLoss(nn.Module):
    """The sum of ``losses`` (each called as ``loss(logits, target)``): Dice + cross-entropy, for one."""

    def __init__(self, losses: Sequence[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]):
        super().__init__()
        self.losses = list(losses)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(loss(logits, target) for loss in self.losses)


def shipped_losses() -> dict[str, Any]:
    """The loss configs the project ships (configs/task/loss/NAME.yaml), by name, unresolved."""
    folder = files("unet_upsampling.configs") / "task" / "loss"
    return {
        entry.name.removesuffix(".yaml"): OmegaConf.load(entry)
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    }


def targets(node: Any) -> set[str]:
    """Every ``_target_`` value in a config (dicts and lists at any depth)."""
    if isinstance(node, Mapping):
        own = {node["_target_"]} if "_target_" in node else set()
        return own.union(*(targets(value) for value in node.values()))
    if isinstance(node, list | tuple):
        return set().union(*(targets(value) for value in node))
    return set()


def shipped_targets() -> set[str]:
    """The loss classes of the shipped configs, spelt as they spell them (what a checkpoint stores)."""
    return set().union(*(targets(OmegaConf.to_container(cfg)) for cfg in shipped_losses().values()))


def stored_loss(loss: Any, ignore_index: Any) -> dict[str, Any] | None:
    """The loss to rebuild from a checkpoint's ``task.loss``, so that eval.py measures the training loss.

    A config naming only the shipped loss classes is kept (checked further as stored configs are); an old
    checkpoint's name (``"ce"``, ``"dice"``, ``"ce_dice"``) becomes its config file with the stored ignore index;
    anything else gives None: no loss (inference needs none), its classes never imported.
    """
    if isinstance(loss, str):
        shipped = shipped_losses()
        if loss not in shipped or not isinstance(ignore_index, int):
            return None
        root = OmegaConf.create({"task": {"ignore_index": ignore_index, "loss": shipped[loss]}})
        return OmegaConf.to_container(root.task.loss, resolve=True)
    if isinstance(loss, Mapping) and "_target_" in loss and targets(loss) <= shipped_targets():
        return dict(loss)
    return None
