"""Boundary F1: do predicted class edges lie within a few pixels of the true ones?"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric


def class_boundaries(labels: torch.Tensor, ignore_index: int | None = None) -> torch.Tensor:
    """(N, H, W) bool: pixels whose 4-neighbourhood holds another label (ignored pixels excluded)."""
    x = labels.unsqueeze(1).float()
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    differs = torch.zeros_like(x, dtype=torch.bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        differs |= padded[..., dy : dy + x.shape[-2], dx : dx + x.shape[-1]] != x
    edges = differs[:, 0]
    return edges if ignore_index is None else edges & (labels != ignore_index)


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    return F.max_pool2d(mask.unsqueeze(1).float(), 2 * radius + 1, stride=1, padding=radius)[:, 0] > 0


class BoundaryF1(Metric):
    """F1 of boundary pixels with tolerance ``tolerance`` px (Csurka et al. 2013's BF score, pooled).

    precision = |B_pred within tol of B_true| / |B_pred|, recall = |B_true within tol of B_pred| /
    |B_true|, F1 = 2PR / (P + R), counted over every image of the split. Pixels marked
    ``ignore_index`` in the target count for neither.
    """

    higher_is_better = True
    full_state_update = False

    def __init__(self, tolerance: int = 2, ignore_index: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.tolerance, self.ignore_index = tolerance, ignore_index
        for name in ("matched_pred", "total_pred", "matched_true", "total_true"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        valid = torch.ones_like(target, dtype=torch.bool) if self.ignore_index is None else target != self.ignore_index
        pred_edges = class_boundaries(preds.where(valid, 0)) & valid
        true_edges = class_boundaries(target, self.ignore_index)
        self.matched_pred += (pred_edges & dilate(true_edges, self.tolerance)).sum()
        self.total_pred += pred_edges.sum()
        self.matched_true += (true_edges & dilate(pred_edges, self.tolerance)).sum()
        self.total_true += true_edges.sum()

    def compute(self) -> torch.Tensor:
        precision = self.matched_pred / self.total_pred.clamp_min(1)
        recall = self.matched_true / self.total_true.clamp_min(1)
        return (2 * precision * recall / (precision + recall).clamp_min(1e-12)).float()
