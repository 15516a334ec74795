"""Boundary F1: do predicted class edges lie within a few pixels of the true ones?"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import Metric


def class_boundaries(labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool: valid pixels with a valid 4-neighbour of another label.

    Invalid (ignored) pixels are never boundary pixels and never make their neighbours one, so
    the edges of a map depend only on its labels at the valid pixels.
    """
    x = F.pad(labels.unsqueeze(1), (1, 1, 1, 1))
    ok = F.pad(valid.unsqueeze(1), (1, 1, 1, 1))  # pixels beyond the border are invalid neighbours
    h, w = labels.shape[-2:]
    edges = torch.zeros_like(valid)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        neighbour, neighbour_ok = x[:, 0, dy : dy + h, dx : dx + w], ok[:, 0, dy : dy + h, dx : dx + w]
        edges |= neighbour_ok & (neighbour != labels)
    return edges & valid


def dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    return F.max_pool2d(mask.unsqueeze(1).float(), 2 * radius + 1, stride=1, padding=radius)[:, 0] > 0


class BoundaryF1(Metric):
    """F1 of boundary pixels with tolerance ``tolerance`` px (Csurka et al. 2013's BF score, pooled).

    precision = |B_pred within tol of B_true| / |B_pred|, recall = |B_true within tol of B_pred| /
    |B_true|, F1 = 2PR / (P + R), counted over every image of the split. Pixels marked
    ``ignore_index`` in the target are invalid for both maps: a pixel is a boundary pixel when a
    valid 4-neighbour carries another label (``class_boundaries``), so a prediction equal to the
    target on the valid pixels scores exactly 1. When neither map has a boundary pixel the score
    is 1 (nothing to find, nothing found); when only one has, it is 0.
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
        pred_edges, true_edges = class_boundaries(preds, valid), class_boundaries(target, valid)
        self.matched_pred += (pred_edges & dilate(true_edges, self.tolerance)).sum()
        self.total_pred += pred_edges.sum()
        self.matched_true += (true_edges & dilate(pred_edges, self.tolerance)).sum()
        self.total_true += true_edges.sum()

    def compute(self) -> torch.Tensor:
        precision = self.matched_pred / self.total_pred.clamp_min(1)
        recall = self.matched_true / self.total_true.clamp_min(1)
        f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
        return torch.where((self.total_pred == 0) & (self.total_true == 0), 1.0, f1).float()  # no host sync
