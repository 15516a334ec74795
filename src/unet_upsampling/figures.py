"""Figures of one run (flat-field response, predictions) and the key to predict.py's overlays, drawn on
``matplotlib.figure.Figure``.

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
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Patch

from unet_upsampling.files import replaced


def save(fig: Figure, path: Path, dpi: int = 100) -> Path:
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    with replaced(path) as file:
        fig.savefig(file, format=path.suffix[1:], dpi=dpi)
    return path


FLAT = 1e-6  # a map that deviates less from its mean is flat: below float32 rounding of the logits


def centred(logits: np.ndarray) -> np.ndarray:
    """Each map (the last two axes) minus its mean, in float64: a float32 mean of the probe's maps (strided views)
    is off by up to ~3e-5, enough to make a flat map look patterned."""
    array = np.asarray(logits, dtype=np.float64)
    return array - array.mean(axis=(-2, -1), keepdims=True)


def show_flat_field(ax: Axes, logits: np.ndarray, title: str, limit: float | None = None) -> AxesImage:
    """Draws logits[-1] - mean on the symmetric scale ±``limit`` (default: its own range); the title gives the
    deviation's range."""
    deviation_map = centred(logits[-1])
    deviation = float(np.abs(deviation_map).max())
    limit = max(deviation if limit is None else limit, FLAT)
    image = ax.imshow(deviation_map, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_title(f"{title}\n" + (f"±{deviation:.2g}" if deviation > FLAT else "flat (<1e-6)"), fontsize=8)
    ax.axis("off")
    return image


def flat_field_figure(maps: Mapping[str, np.ndarray], class_names: Sequence[str] = (), value: float = 1.0) -> Figure:
    """One row per entry of ``maps`` (title -> logits C x H x W), one column per class: each class's response to a
    flat input minus its mean, on one symmetric colour scale shared by every panel, with its colour bar (none when
    every map is flat: a scale would only show rounding).

    A shared scale keeps a nearly flat response (±2e-4 at initialisation) from looking like a strong one
    (±0.16 after training); each panel's title gives its own range.
    """
    classes = next(iter(maps.values())).shape[0]
    names = [*class_names, *(f"class {c}" for c in range(len(class_names), classes))][:classes]
    limit = max(float(np.abs(centred(m)).max()) for m in maps.values())
    fig = Figure(figsize=(2.2 * classes + 1.2, 2.3 * len(maps) + 0.9), layout="constrained")
    axes = fig.subplots(len(maps), classes, squeeze=False)
    for row, (title, logits) in zip(axes, maps.items(), strict=True):
        for c, ax in enumerate(row):
            image = show_flat_field(ax, logits[c : c + 1], f"{title}: {names[c]}", limit)
    scale = f"one colour scale for all panels (±{limit:.2g})"
    if limit > FLAT:
        fig.colorbar(image, ax=axes, shrink=0.9, label="logit minus its mean")
    else:
        scale = "every map is flat (<1e-6), no colour scale"
    what = (
        f"Logits for a flat grey input (value {value:g}, normalised), each map minus its mean; {scale}. A decoder "
        f"without upsampling artifacts answers with a flat map."
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


# The error panel's kinds of wrong pixel (class 0 is the background) and their colours, after the right ones (white).
ERRORS = {
    "false positive": "#d62728",  # another class predicted on class 0
    "false negative": "#1f77b4",  # class 0 predicted on another class
    "wrong class": "#ff7f0e",  # one class predicted on another, neither of them class 0 (3 classes or more)
}


def error_kinds(mask: torch.Tensor, pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per pixel: 0 right or not scored (``ignore_index``), then 1, 2, 3 for the :data:`ERRORS` in their order."""
    wrong = (pred != mask) & (mask >= 0) & (mask < num_classes)
    kinds = torch.zeros_like(mask)
    kinds[wrong & (mask == 0)] = 1
    kinds[wrong & (pred == 0)] = 2
    kinds[wrong & (mask > 0) & (pred > 0)] = 3
    return kinds


def error_labels(class_names: Sequence[str], num_classes: int) -> list[str]:
    """The legend's entries: the :data:`ERRORS` that ``num_classes`` classes can make, said with the class names."""
    names = [*class_names, *(f"class {c}" for c in range(len(class_names), num_classes))]
    background, other = names[0], names[1] if num_classes == 2 else "another class"
    return [
        f"false positive: {other} predicted on {background}",
        f"false negative: {background} predicted on {other}",
        f"wrong class: one class predicted on another, neither {background}",
    ][: 2 if num_classes == 2 else 3]


def prediction_figure(
    images: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    preds: Sequence[torch.Tensor],
    num_classes: int,
    title: str,
    class_names: Sequence[str] = (),
) -> Figure:
    """One row per sample: image (in colour when RGB), ground truth, prediction, and the errors by kind (false
    positives, false negatives, wrong classes: :data:`ERRORS`) with their legend; ``title`` says which weights and
    images they are."""
    fig = Figure(figsize=(10, 2.6 * len(images) + 0.8), layout="constrained")
    axes = fig.subplots(len(images), 4, squeeze=False)
    kinds = ListedColormap(["white", *ERRORS.values()])
    for row, image, mask, pred in zip(axes, images, masks, preds, strict=True):
        shown, cmap = displayable(image)
        row[0].imshow(shown, cmap=cmap, interpolation="nearest")
        for ax, panel, cmap_, vmax in (
            (row[1], mask.clamp(0, num_classes - 1), "viridis", num_classes - 1),
            (row[2], pred, "viridis", num_classes - 1),
            (row[3], error_kinds(mask, pred, num_classes), kinds, len(ERRORS)),
        ):
            ax.imshow(panel.numpy(), cmap=cmap_, vmin=0, vmax=vmax, interpolation="nearest")
        for ax, name in zip(row, ("image", "ground truth", "prediction", "errors"), strict=True):
            ax.set_title(name)
            ax.axis("off")
    labels = error_labels(class_names, num_classes)
    handles = [Patch(color=colour, label=label) for colour, label in zip(ERRORS.values(), labels, strict=False)]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    fig.suptitle(title)
    return fig


def overlay_legend(class_names: Sequence[str], colours: np.ndarray) -> Figure:
    """The key to predict.py's overlays: each class's colour (RGB in 0..1) and name; class 0 is not coloured (the
    image shows through)."""
    handles = [Patch(facecolor="none", edgecolor="grey", label=f"{class_names[0]}: not coloured (the image)")]
    handles += [Patch(color=colour, label=name) for colour, name in zip(colours[1:], class_names[1:], strict=True)]
    fig = Figure(figsize=(3.2, 0.3 * len(handles) + 0.2))
    fig.legend(handles=handles, loc="center", frameon=False)
    return fig
