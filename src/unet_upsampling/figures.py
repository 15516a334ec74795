"""Figures of one run (flat-field response, predictions), drawn on ``matplotlib.figure.Figure``.

No pyplot: no global backend or figure state, so training, reports and tests can draw from any
thread or process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure


def save(fig: Figure, path: Path, dpi: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path


def show_flat_field(ax: Axes, logits: np.ndarray, title: str) -> None:
    """Draws logits[-1] - mean with a symmetric scale; the title gives the deviation's range."""
    centred = logits[-1] - logits[-1].mean()
    deviation = float(np.abs(centred).max())
    limit = max(deviation, 1e-6)  # below float32 rounding of the logits the panel stays blank
    ax.imshow(centred, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_title(f"{title}\n" + (f"±{deviation:.2g}" if deviation > 1e-6 else "flat (<1e-6)"), fontsize=9)
    ax.axis("off")


def flat_field_figure(maps: Mapping[str, np.ndarray]) -> Figure:
    """One panel per entry: the last logit map minus its mean, on a symmetric colour scale."""
    fig = Figure(figsize=(3.2 * len(maps), 3.4))
    for ax, (title, logits) in zip(fig.subplots(1, len(maps), squeeze=False)[0], maps.items(), strict=True):
        show_flat_field(ax, logits, title)
    return fig


def displayable(image: torch.Tensor | np.ndarray) -> tuple[np.ndarray, str | None]:
    """(C, H, W) normalised image -> what imshow shows: RGB in colour (rescaled to [0, 1]), one channel in grey."""
    array = np.asarray(image, dtype=np.float32)
    if array.shape[0] == 3:
        low, high = np.percentile(array, (1, 99))
        return np.clip((array.transpose(1, 2, 0) - low) / max(high - low, 1e-6), 0, 1), None
    return array.mean(0), "gray"


def prediction_figure(
    images: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], preds: Sequence[torch.Tensor], num_classes: int
) -> Figure:
    """One row per sample: image (in colour when RGB), ground truth, prediction, and errors in red."""
    fig = Figure(figsize=(10, 2.6 * len(images)))
    axes = fig.subplots(len(images), 4, squeeze=False)
    for row, image, mask, pred in zip(axes, images, masks, preds, strict=True):
        shown, cmap = displayable(image)
        row[0].imshow(shown, cmap=cmap, interpolation="nearest")
        error = (pred != mask) & (mask >= 0) & (mask < num_classes)
        for ax, panel, cmap_, vmax in (
            (row[1], mask.clamp(0, num_classes - 1), "viridis", num_classes - 1),
            (row[2], pred, "viridis", num_classes - 1),
            (row[3], error, "Reds", 1),
        ):
            ax.imshow(panel.numpy(), cmap=cmap_, vmin=0, vmax=vmax, interpolation="nearest")
        for ax, title in zip(row, ("image", "ground truth", "prediction", "errors"), strict=True):
            ax.set_title(title)
            ax.axis("off")
    return fig
