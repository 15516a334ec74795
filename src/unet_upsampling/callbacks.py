"""Callbacks that leave something to look at in the run directory."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


class PredictionFigure(L.Callback):
    """After fitting, saves image | ground truth | prediction | error for the first val samples."""

    def __init__(self, path: str, samples: int = 4):
        self.path, self.samples = Path(path), samples

    @torch.no_grad()
    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.fast_dev_run or not trainer.is_global_zero:
            return
        images, masks = [], []
        for image, mask in trainer.datamodule.val_dataloader():
            images += list(image[: self.samples - len(images)])
            masks += list(mask[: self.samples - len(masks)])
            if len(images) == self.samples:
                break
        pl_module.eval()
        preds = [pl_module(image[None].to(pl_module.device)).argmax(1)[0].cpu() for image in images]
        pl_module.train()
        save_prediction_grid(self.path, images, masks, preds, pl_module.num_classes)


def save_prediction_grid(path: Path, images, masks, preds, num_classes: int) -> None:
    """One row per sample: image, mask, prediction, and errors in red."""
    fig, axes = plt.subplots(len(images), 4, figsize=(10, 2.6 * len(images)), squeeze=False)
    for row, (image, mask, pred) in zip(axes, zip(images, masks, preds)):
        error = (pred != mask) & (mask >= 0) & (mask < num_classes)
        panels = (image.mean(0), mask.clamp(0, num_classes - 1), pred, error)
        for ax, panel, title in zip(row, panels, ("image", "ground truth", "prediction", "errors")):
            cmap = "gray" if title == "image" else "Reds" if title == "errors" else "viridis"
            ax.imshow(panel.numpy(), cmap=cmap, vmin=None if title == "image" else 0,
                      vmax=None if title == "image" else 1 if title == "errors" else num_classes - 1,
                      interpolation="nearest")
            ax.set_title(title)
            ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
