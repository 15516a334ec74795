"""The LightningModule: loss, optimiser, Dice and IoU per class, boundary F1, periodic energy."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassF1Score, MulticlassJaccardIndex

from unet_upsampling.losses import LOSSES
from unet_upsampling.metrics import BoundaryF1, periodic_energy_fraction, periods


class SegmentationModule(L.LightningModule):
    """Trains ``net`` on (image, mask) batches.

    Dice is the per-class F1 over all pixels of a split (equal to 2|P n T| / (|P| + |T|)), IoU the
    per-class Jaccard index; ``val/dice`` and ``val/iou`` are their means over classes.
    ``val/boundary_f1`` scores class edges within 2 px; ``val/pef{P}`` is the mean periodic energy
    fraction of the logit maps for P = 2 .. 2^depth.
    ``optimizer(params)`` and ``scheduler(optimizer, T_max)`` are Hydra partials; the schedule
    steps every batch over the whole run. Only parameters with ``requires_grad`` are optimised.
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        optimizer: Callable,
        scheduler: Callable | None = None,
        loss: str = "ce_dice",
        ignore_index: int = -100,
    ):
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}: choose module.loss={', '.join(LOSSES)}")
        self.net, self.num_classes, self.loss_fn, self.ignore_index = net, num_classes, LOSSES[loss], ignore_index
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.periods = periods(net.depth)
        self.metrics = nn.ModuleDict(
            {
                split: nn.ModuleDict(
                    {
                        "dice": MulticlassF1Score(num_classes, average="none", ignore_index=ignore_index),
                        "iou": MulticlassJaccardIndex(num_classes, average="none", ignore_index=ignore_index),
                        "boundary_f1": BoundaryF1(tolerance=2, ignore_index=ignore_index),
                        **{f"pef{p}": MeanMetric() for p in self.periods},
                    }
                )
                for split in ("val", "test")
            }
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        image, mask = batch
        loss = self.loss_fn(self(image), mask, self.ignore_index)
        # The step loss goes to the logger every trainer.log_every_n_steps; the progress bar shows the
        # epoch mean. A per-step progress-bar value would turn the loss into a float after every
        # batch: a host sync that stalls a GPU (tests/test_benchmark.py counts them).
        self.log("train/loss", loss)
        self.log("train/loss_epoch", loss, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def _evaluate(self, batch, split: str) -> torch.Tensor:
        image, mask = batch
        logits = self(image)
        self.log(
            f"{split}/loss", self.loss_fn(logits, mask, self.ignore_index), batch_size=image.shape[0], sync_dist=True
        )
        metrics, preds = self.metrics[split], logits.argmax(1)
        for name in ("dice", "iou", "boundary_f1"):
            metrics[name].update(preds, mask)
        for p in self.periods:
            metrics[f"pef{p}"].update(periodic_energy_fraction(logits.detach(), p).mean(), weight=image.shape[0])
        return logits

    def _log_metrics(self, split: str) -> None:
        for name, metric in self.metrics[split].items():
            value = metric.compute()
            self.log(f"{split}/{name}", value.mean(), prog_bar=name == "dice")
            for c, per_class in enumerate(value if value.ndim else []):
                self.log(f"{split}/{name}_c{c}", per_class)
            metric.reset()

    def validation_step(self, batch, batch_idx):
        return self._evaluate(batch, "val")

    def on_validation_epoch_end(self):
        self._log_metrics("val")

    def test_step(self, batch, batch_idx):
        return self._evaluate(batch, "test")

    def on_test_epoch_end(self):
        self._log_metrics("test")

    def configure_optimizers(self):
        optimizer = self.optimizer_factory([p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, T_max=max(1, self.trainer.estimated_stepping_batches))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
