"""The LightningModule: loss, optimiser, Dice and IoU per class, boundary F1, periodic energy."""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassStatScores

from unet_upsampling.errors import CheckpointError, ConfigError
from unet_upsampling.measures import which_validation
from unet_upsampling.metrics import BoundaryF1, local_periodic_energy_fraction, periodic_energy_fraction, periods

log = logging.getLogger(__name__)
# Where checkpoints written before the loss mean was a metric state (of the state dict) kept its sums.
LOSS_MEAN_KEY = "unet_upsampling_loss_mean"


def dice_and_iou(stats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class Dice 2TP / (2TP + FP + FN) and IoU TP / (TP + FP + FN) from stat scores (C, [tp, fp, tn, fn, sup]).

    A class absent from both target and prediction (TP + FP + FN = 0) has neither: NaN, left out of
    the means over classes.
    """
    tp, fp, fn = (stats[:, i].double() for i in (0, 1, 3))
    errors = fp + fn
    nan = torch.full_like(tp, float("nan"))
    dice = torch.where(tp + errors > 0, 2 * tp / (2 * tp + errors).clamp_min(1), nan)
    iou = torch.where(tp + errors > 0, tp / (tp + errors).clamp_min(1), nan)
    return dice.float(), iou.float()


def takes_fused(optimizer_factory: Callable) -> bool:
    """Whether the optimiser (a partial) has a ``fused`` implementation (AdamW, Adam, SGD, ...)."""
    return "fused" in inspect.signature(optimizer_factory.func).parameters


class SegmentationTask(L.LightningModule):
    """Trains ``net`` on (image, mask) batches.

    Dice is the per-class F1 over all pixels of a split (2|P n T| / (|P| + |T|)), IoU the per-class
    Jaccard index; ``val/dice`` and ``val/iou`` are their means over the classes present in the
    split's targets or predictions. ``val/boundary_f1`` scores class edges within 2 px;
    ``val/pef{P}`` is the mean periodic energy fraction of the logit maps for P = 2 .. 2^depth,
    ``val/prob_pef{P}`` that of the class probabilities (softmax), and ``val/lpef{P}`` the local PEF of the
    logit maps (tiles of 32 px, or of twice the largest period: it sees a pattern whose sign changes across the image);
    they cost a softmax and a few reductions per batch, so they run at every validation and test.
    ``optimizer(params)`` and ``scheduler(optimizer, T_max)`` are Hydra partials; the schedule
    steps every batch over the whole run (``on_train_start`` stretches it when a resumed run is
    given more steps). Only parameters with ``requires_grad`` are optimised. A network with an
    ``encoder`` can train it at ``encoder_lr_scale`` times the learning rate (a parameter group of its
    own; the schedule scales both groups) and keep it frozen, BatchNorm statistics included, for the
    first ``freeze_encoder_epochs`` epochs. ``fused_optimizer`` passes ``fused=True`` to the optimiser (one
    kernel for the whole update instead of a few per parameter tensor); null: where the parameters are on CUDA
    and the optimiser takes the argument. ``loss(logits, target)`` is a Hydra-built callable (configs/task/loss/);
    without one (a task rebuilt from a checkpoint, for inference) validation and test log no loss.

    The training loss reaches the loggers at the steps Lightning logs (every ``trainer.log_every_n_steps``):
    ``train/loss``, that step's, and ``train/loss_mean``, the mean over the steps since the mean was last logged,
    which every validation during training logs too (beside ``val/loss``). Neither is logged at the other steps
    nor at an epoch's end, and the mean is summed on the device (``loss_mean``, a torchmetrics ``MeanMetric``
    without NaN checks): training turns no loss into a number (a host sync that stalls a GPU) but at logging
    steps. The mean's state is persistent: checkpoints carry it in the state dict, so a resumed run logs the
    means the uninterrupted run logs.
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        optimizer: Callable | None = None,
        scheduler: Callable | None = None,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        ignore_index: int = -100,
        encoder_lr_scale: float = 1.0,
        freeze_encoder_epochs: int = 0,
        fused_optimizer: bool | None = None,
    ):
        super().__init__()
        if isinstance(loss, str):
            raise ConfigError(
                f"task.loss={loss!r}: the loss is a config group now: task/loss={loss} (ce, dice, ce_dice, focal, "
                f"lovasz: configs/task/loss/), or a class as task.loss._target_=..."
            )
        if (encoder_lr_scale != 1.0 or freeze_encoder_epochs) and not hasattr(net, "encoder_name"):
            raise ConfigError(
                f"task.encoder_lr_scale={encoder_lr_scale} and task.freeze_encoder_epochs={freeze_encoder_epochs} "
                f"apply to networks with a pretrained encoder ({type(net).__name__} has none): use "
                f"model=encoder_unet, or leave them at 1.0 and 0"
            )
        if fused_optimizer and optimizer is not None and not takes_fused(optimizer):
            raise ConfigError(
                f"task.fused_optimizer=true: {optimizer.func.__name__} has no fused implementation; use "
                f"torch.optim.AdamW, Adam or SGD, or set task.fused_optimizer=null"
            )
        self.encoder_lr_scale, self.freeze_encoder_epochs = encoder_lr_scale, freeze_encoder_epochs
        self.net, self.num_classes, self.ignore_index = net, num_classes, ignore_index
        # Kept out of the module tree: the loss is no part of the network's weights, checkpoint or summary (a task
        # rebuilt from a checkpoint has none, and its weights still load).
        object.__setattr__(self, "loss_fn", loss)
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.fused_optimizer = fused_optimizer
        self.periods = periods(net.depth)
        # tiles of at least 32 px (a smooth map's 32 px tile holds ~1e-4 of its energy at period 2) and 2 periods
        self.lpef_window = max(32, 2 * self.periods[-1])
        self.checkpoint_step: int | None = None  # set by load_checkpoint: the step its weights were saved at
        self.loss_mean = MeanMetric(nan_strategy="disable")  # a NaN check would sync with the host at every step
        self.loss_mean.persistent(True)
        self._step_loss: torch.Tensor | None = None
        self._logged_at: int | None = None  # the global step whose losses were logged last
        self.validation_keys: set[str] = set()  # the names logged since the latest validation began
        self.metrics = nn.ModuleDict(
            {
                split: nn.ModuleDict(
                    {
                        "stats": MulticlassStatScores(num_classes, average="none", ignore_index=ignore_index),
                        "boundary_f1": BoundaryF1(tolerance=2, ignore_index=ignore_index),
                        **{f"pef{p}": MeanMetric() for p in self.periods},
                        **{f"prob_pef{p}": MeanMetric() for p in self.periods},
                        **{f"lpef{p}": MeanMetric() for p in self.periods},
                    }
                )
                for split in ("val", "test")
            }
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        image, mask = batch
        loss = self.loss_fn(self(image), mask)
        self._step_loss = loss.detach()
        self.loss_mean.update(self._step_loss)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        """At the steps Lightning hands logged values to the loggers (every ``trainer.log_every_n_steps``
        optimiser steps, and when training stops): the losses, once per step (several batches make one with
        ``accumulate_grad_batches``). Logged at no other step: ``self.log`` costs host time every call."""
        trainer = self.trainer
        step = trainer.global_step
        if step == self._logged_at or (step % trainer.log_every_n_steps and not trainer.should_stop):
            return
        self._logged_at = step
        self.log("train/loss", self._step_loss)
        self.log_loss_mean()

    def log_loss_mean(self) -> None:
        """``train/loss_mean`` (over DDP processes too) when a step was summed since it was last logged; the mean
        starts again."""
        if self.loss_mean.metric_state["weight"] > 0:
            self.log("train/loss_mean", self.loss_mean.compute())
        self.loss_mean.reset()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Weights restored by Lightning (``ckpt_path=``) keep their step: a validation does not restore the
        trainer's, and its lines name the step of the weights (``measures.which_validation``). The loss sums of a
        checkpoint written before the mean was a metric state become that state (older ones have neither: the
        first mean after them covers the steps since)."""
        self.checkpoint_step = checkpoint["global_step"]
        state = checkpoint.pop(LOSS_MEAN_KEY, None)
        if state is None:
            return
        if not (
            isinstance(state, dict)
            and set(state) == {"sum", "steps"}
            and all(torch.is_tensor(v) and v.numel() == 1 for v in state.values())
            and not state["steps"].is_floating_point()
            and state["steps"] >= 0
        ):
            raise CheckpointError(
                f"the checkpoint's {LOSS_MEAN_KEY!r} entry is not a loss sum and a count of steps: it was not "
                f"written by this project's train.py, or was altered"
            )
        checkpoint["state_dict"]["loss_mean.mean_value"] = state["sum"].float().reshape(())
        checkpoint["state_dict"]["loss_mean.weight"] = state["steps"].float().reshape(())

    def _evaluate(self, batch, split: str) -> torch.Tensor:
        image, mask = batch
        logits = self(image)
        if self.loss_fn is not None:  # a task rebuilt from a checkpoint has none (builders.check_stored_task)
            self.log(f"{split}/loss", self.loss_fn(logits, mask), batch_size=image.shape[0], sync_dist=True)
        metrics, preds = self.metrics[split], logits.argmax(1)
        metrics["stats"].update(preds, mask)
        metrics["boundary_f1"].update(preds, mask)
        probabilities = logits.detach().float().softmax(1)
        largest = self.periods[-1]  # an image smaller than a tile is one tile (a multiple of every period)
        window = min(self.lpef_window, min(logits.shape[-2:]) // largest * largest)
        for p in self.periods:
            metrics[f"pef{p}"].update(periodic_energy_fraction(logits.detach(), p).mean(), weight=image.shape[0])
            metrics[f"prob_pef{p}"].update(periodic_energy_fraction(probabilities, p).mean(), weight=image.shape[0])
            local = local_periodic_energy_fraction(logits.detach(), p, window)
            metrics[f"lpef{p}"].update(local.mean(), weight=image.shape[0])
        return logits

    def _log_metrics(self, split: str) -> None:
        metrics = self.metrics[split]
        # The loggers (csv, TensorBoard, MLflow) place the values at the step of the weights evaluated, as train.log
        # and the checkpoint names do (Lightning's default: the training batches logged so far, one less in fit).
        self.log("step", float(which_validation(self.trainer, self).step))
        per_class = dict(zip(("dice", "iou"), dice_and_iou(metrics["stats"].compute()), strict=True))
        for name, values in per_class.items():
            self.log(f"{split}/{name}", values.nanmean(), prog_bar=name == "dice")
            for c, value in enumerate(values):
                self.log(f"{split}/{name}_c{c}", value)
        for name, metric in metrics.items():
            if name != "stats":
                self.log(f"{split}/{name}", metric.compute())
            metric.reset()

    def log(self, name: str, value, *args, **kwargs) -> None:
        """Lightning's ``log``, noting the names a validation logs (``validation_keys``) for the lines that show
        what it measured (``measures.measured``)."""
        self.validation_keys.add(name)
        super().log(name, value, *args, **kwargs)

    def on_validation_start(self) -> None:
        self.validation_keys = set()

    def validation_step(self, batch, batch_idx):
        return self._evaluate(batch, "val")

    def on_validation_epoch_end(self):
        self._log_metrics("val")
        if self.trainer.state.fn == "fit":
            self.log_loss_mean()

    def test_step(self, batch, batch_idx):
        return self._evaluate(batch, "test")

    def on_test_epoch_end(self):
        self._log_metrics("test")

    def configure_optimizers(self):
        if self.optimizer_factory is None:
            raise ValueError("this SegmentationTask was built for inference (no optimizer): it cannot be trained")
        optimizer = self.optimizer_factory(self.parameter_groups(), **self.optimizer_options())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer, T_max=self.total_steps())
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def optimizer_options(self) -> dict[str, bool]:
        """``{"fused": True}`` where ``fused_optimizer`` asks for it (null: on CUDA, if the optimiser has it);
        task.optimizer.fused set on the command line is left to the optimiser."""
        factory = self.optimizer_factory
        takes = takes_fused(factory)
        wanted = self.device.type == "cuda" if self.fused_optimizer is None else self.fused_optimizer
        return {"fused": True} if takes and wanted and "fused" not in factory.keywords else {}

    def parameter_groups(self) -> list[dict]:
        trainable = [p for p in self.parameters() if p.requires_grad]
        if self.encoder_lr_scale == 1.0:
            return [{"params": trainable}]
        in_encoder = {id(p) for p in self.net.encoder.parameters()}
        lr = self.optimizer_factory.keywords["lr"] * self.encoder_lr_scale
        return [
            {"params": [p for p in trainable if id(p) in in_encoder], "lr": lr},
            {"params": [p for p in trainable if id(p) not in in_encoder]},
        ]

    def on_train_epoch_start(self) -> None:
        """The encoder stays frozen (no gradients, BatchNorm statistics fixed) for the first epochs."""
        if not self.freeze_encoder_epochs:
            return
        frozen = self.current_epoch < self.freeze_encoder_epochs
        for p in self.net.encoder.parameters():
            p.requires_grad_(not frozen)
        self.net.encoder.train(not frozen)

    def total_steps(self) -> int:
        return max(1, int(self.trainer.estimated_stepping_batches))

    def on_train_start(self) -> None:
        """Losses are logged from this fit's first optimiser step on (not at a batch end before it, under gradient
        accumulation); a resumed run given more (or fewer) steps than its checkpoint's schedule follows the new
        total.

        The cosine schedule is set to where an uninterrupted run planned for the new total would be
        at this step, lr_t = eta_min + (lr_0 - eta_min)(1 + cos(pi t / T)) / 2, and goes on to zero at
        the new last step (the checkpoint's own T_max would wrap around and climb back to lr_0). Only public
        state changes: the optimiser's rates and the schedule's ``T_max``, from which torch's recursive step
        goes on; ``get_last_lr()`` follows at the next step.
        """
        self._logged_at = self.trainer.global_step
        total = self.total_steps()
        for config in self.trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR) and scheduler.T_max != total:
                log.info(
                    "schedule: the checkpoint's cosine spans %d steps, this run %d: following the new total",
                    scheduler.T_max,
                    total,
                )
                start, floor = scheduler.last_epoch, scheduler.eta_min
                for group, lr in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, strict=True):
                    group["lr"] = floor + (lr - floor) * (1 + math.cos(math.pi * start / total)) / 2
                scheduler.T_max = total
