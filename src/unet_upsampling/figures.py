"""Figures of one run (flat-field response, predictions), drawn on ``matplotlib.figure.Figure``.

No pyplot: no global backend or figure state, so training, reports and tests can draw from any
thread or process.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from unet_upsampling.files import replaced


def save(fig: Figure, path: Path, dpi: int = 100) -> Path:
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    with replaced(path) as file:
        fig.savefig(file, format=path.suffix[1:], dpi=dpi)
    return path


def show_flat_field(ax: Axes, logits: np.ndarray, title: str, limit: float | None = None) -> AxesImage:
    """Draws logits[-1] - mean on the symmetric scale ±``limit`` (default: its own range); the title gives the
    deviation's range."""
    centred = logits[-1] - logits[-1].mean()
    deviation = float(np.abs(centred).max())
    limit = max(deviation if limit is None else limit, 1e-6)  # below float32 rounding of the logits: blank
    image = ax.imshow(centred, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_title(f"{title}\n" + (f"±{deviation:.2g}" if deviation > 1e-6 else "flat (<1e-6)"), fontsize=8)
    ax.axis("off")
    return image


def flat_field_figure(maps: Mapping[str, np.ndarray], class_names: Sequence[str] = (), value: float = 1.0) -> Figure:
    """One row per entry of ``maps`` (title -> logits C x H x W), one column per class: each class's response to a
    flat input minus its mean, on one symmetric colour scale shared by every panel, with its colour bar.

    A shared scale keeps a nearly flat response (±2e-4 at initialisation) from looking like a strong one
    (±0.16 after training); each panel's title gives its own range.
    """
    classes = next(iter(maps.values())).shape[0]
    names = [*class_names, *(f"class {c}" for c in range(len(class_names), classes))][:classes]
    limit = max(max(float(np.abs(m - m.mean(axis=(-2, -1), keepdims=True)).max()) for m in maps.values()), 1e-6)
    fig = Figure(figsize=(2.2 * classes + 1.2, 2.3 * len(maps) + 0.9), layout="constrained")
    axes = fig.subplots(len(maps), classes, squeeze=False)
    for row, (title, logits) in zip(axes, maps.items(), strict=True):
        for c, ax in enumerate(row):
            image = show_flat_field(ax, logits[c : c + 1], f"{title}: {names[c]}", limit)
    fig.colorbar(image, ax=axes, shrink=0.9, label="logit minus its mean")
    what = (
        f"Logits for a flat grey input (value {value:g}, normalised), each map minus its mean; one colour scale "
        f"for all panels (±{limit:.2g}). A decoder without upsampling artifacts answers with a flat map."
    )
    fig.suptitle(textwrap.fill(what, width=int(13 * fig.get_figwidth())), fontsize=9)
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
