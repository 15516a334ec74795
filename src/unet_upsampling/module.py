"""The LightningModule: loss, optimiser, Dice and IoU per class."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassF1Score, MulticlassJaccardIndex

from unet_upsampling.losses import LOSSES


class SegmentationModule(L.LightningModule):
    """Trains ``net`` on (image, mask) batches.

    Dice is the per-class F1 over all pixels of a split (equal to 2|P n T| / (|P| + |T|)), IoU the
    per-class Jaccard index; ``val/dice`` and ``val/iou`` are their means over classes.
    ``optimizer(params)`` and ``scheduler(optimizer, T_max)`` are Hydra partials; the schedule
    steps every batch over the whole run. Only parameters with ``requires_grad`` are optimised.
    """

    def __init__(self, net: nn.Module, num_classes: int, optimizer: Callable, scheduler: Callable | None = None,
                 loss: str = "ce_dice", ignore_index: int = -100):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}: choose module.loss={', '.join(LOSSES)}")
        self.net, self.num_classes, self.loss_fn, self.ignore_index = net, num_classes, LOSSES[loss], ignore_index
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        metrics = MetricCollection({
            "dice": MulticlassF1Score(num_classes, average="none", ignore_index=ignore_index),
            "iou": MulticlassJaccardIndex(num_classes, average="none", ignore_index=ignore_index),
        })
        self.metrics = nn.ModuleDict({"val": metrics.clone(), "test": metrics.clone()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        image, mask = batch
        loss = self.loss_fn(self(image), mask, self.ignore_index)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def _evaluate(self, batch, split: str) -> None:
        image, mask = batch
        logits = self(image)
        self.log(f"{split}/loss", self.loss_fn(logits, mask, self.ignore_index),
                 batch_size=image.shape[0])
        self.metrics[split].update(logits.argmax(1), mask)

    def _log_metrics(self, split: str) -> None:
        for name, per_class in self.metrics[split].compute().items():
            self.log(f"{split}/{name}", per_class.mean(), prog_bar=name == "dice")
            for c, value in enumerate(per_class):
                self.log(f"{split}/{name}_c{c}", value)
        self.metrics[split].reset()

    def validation_step(self, batch, batch_idx):
        self._evaluate(batch, "val")

    def on_validation_epoch_end(self):
        self._log_metrics("val")

    def test_step(self, batch, batch_idx):
        self._evaluate(batch, "test")

    def on_test_epoch_end(self):
        self._log_metrics("test")

    def configure_optimizers(self):
        optimizer = self.optimizer_factory([p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, T_max=max(1, self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
