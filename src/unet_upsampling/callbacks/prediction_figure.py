"""predictions.png: validation images, ground truth, prediction and errors after fitting."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch

from unet_upsampling.figures import prediction_figure, save
from unet_upsampling.loggers import log_figure


class PredictionFigure(L.Callback):
    """After fitting, saves image | ground truth | prediction | error for the first ``samples`` val images.

    The arrays go to ``<path>.npz`` too (images as stored, masks, preds), for reports.
    """

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
        was_training = pl_module.training
        pl_module.eval()
        preds = [pl_module(image[None].to(pl_module.device)).argmax(1)[0].cpu() for image in images]
        pl_module.train(was_training)
        figure = prediction_figure(images, masks, preds, pl_module.num_classes)
        save(figure, self.path)
        log_figure(trainer.loggers, "predictions", figure, trainer.global_step)
        np.savez_compressed(
            self.path.with_suffix(".npz"),
            images=np.stack([i.numpy() for i in images]),
            masks=np.stack([m.numpy() for m in masks]),
            preds=np.stack([p.numpy() for p in preds]),
        )
