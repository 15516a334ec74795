"""Segmentation losses on logits (N, C, H, W) and targets (N, H, W) with an ignore index."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_dice_loss(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int = -100, eps: float = 1.0
) -> torch.Tensor:
    """1 - mean over classes of (2 sum p t + eps) / (sum p + sum t + eps), ignored pixels excluded."""
    valid = (target != ignore_index).unsqueeze(1)
    probs = logits.softmax(1) * valid
    onehot = F.one_hot(target.where(valid.squeeze(1), 0), logits.shape[1]).movedim(-1, 1) * valid
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    total = probs.sum(dims) + onehot.sum(dims)
    return 1 - ((2 * intersection + eps) / (total + eps)).mean()


def cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    return F.cross_entropy(logits, target, ignore_index=ignore_index)


def ce_dice_loss(logits: torch.Tensor, target: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Cross-entropy plus soft Dice."""
    return cross_entropy(logits, target, ignore_index) + soft_dice_loss(logits, target, ignore_index)


LOSSES = {"ce": cross_entropy, "dice": soft_dice_loss, "ce_dice": ce_dice_loss}
