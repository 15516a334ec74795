"""predictions.png: validation images, ground truth, prediction and errors (by kind) of the best checkpoint."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch

from unet_upsampling.figures import prediction_figure, save
from unet_upsampling.files import replaced
from unet_upsampling.loggers import log_figure
from unet_upsampling.measures import MEASURED, which_validation


class PredictionFigure(L.Callback):
    """Saves image | ground truth | prediction | error for the first ``samples`` val images.

    Drawn from the logits of the validation after fitting (the best checkpoint's, whose scores reach
    metrics.json), so it costs no forward pass of its own. The arrays go to ``<path>.npz`` too (images
    as stored, masks, preds), for reports.
    """

    def __init__(self, path: str, samples: int = 4):
        self.path, self.samples = Path(path), samples
        self.active = False
        self.images: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []
        self.preds: list[torch.Tensor] = []

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Active at a validation of a run's measured weights (the one after the last step, train.py's of the best
        checkpoint, eval.py's): not at initialisation, nor at the other validations while fitting."""
        self.images, self.masks, self.preds = [], [], []
        self.active = (
            which_validation(trainer, pl_module).kind in MEASURED
            and trainer.is_global_zero
            and not trainer.fast_dev_run
        )

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        take = self.samples - len(self.images)
        if not self.active or take <= 0 or outputs is None:
            return
        image, mask = batch
        self.images += list(image[:take].cpu())
        self.masks += list(mask[:take].cpu())
        self.preds += list(outputs[:take].argmax(1).cpu())

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.active or not self.images:
            return
        validation = which_validation(trainer, pl_module)
        shown = f"{len(self.images)} validation image" + ("" if len(self.images) == 1 else "s")
        figure = prediction_figure(
            self.images,
            self.masks,
            self.preds,
            pl_module.num_classes,
            f"{validation.label} at step {validation.step}, {shown}",
            getattr(trainer.datamodule, "class_names", ()),
        )
        save(figure, self.path)
        log_figure(trainer.loggers, "predictions", figure, trainer.global_step)
        with replaced(self.path.with_suffix(".npz")) as file:
            np.savez_compressed(
                file,
                images=np.stack([i.numpy() for i in self.images]),
                masks=np.stack([m.numpy() for m in self.masks]),
                preds=np.stack([p.numpy() for p in self.preds]),
            )
        self.images, self.masks, self.preds = [], [], []
