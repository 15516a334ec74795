"""Segmentation losses on logits (N, C, H, W) and targets (N, H, W): Hydra ``_target_``s (configs/task/loss/).

The losses themselves are torch's and segmentation_models_pytorch's; this module only adds their sum.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn


class SumLoss(nn.Module):
    """The sum of ``losses`` (each called as ``loss(logits, target)``): Dice + cross-entropy, for one."""

    def __init__(self, losses: Sequence[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]):
        super().__init__()
        self.losses = list(losses)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(loss(logits, target) for loss in self.losses)
