"""Stops training at the first non-finite loss, before it can reach a checkpoint."""

from __future__ import annotations

import lightning as L
import torch

from unet_upsampling.errors import TrainingDiverged


class FiniteLossGuard(L.Callback):
    """Stops training at the first non-finite loss, before it can reach a checkpoint.

    The training loss is read every ``every_n_steps`` steps (one host sync each time, none in
    between) and the validation loss before every checkpoint; checkpoints written before stay as
    they were.
    """

    def __init__(self, every_n_steps: int = 1):
        self.every_n_steps = every_n_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0 and not torch.isfinite(outputs["loss"]).item():
            self._stop(trainer, f"the training loss is {outputs['loss'].item()} at step {trainer.global_step}")

    def on_validation_end(self, trainer, pl_module) -> None:
        """Runs before the checkpoint callbacks, which Lightning always calls last."""
        loss = trainer.callback_metrics.get("val/loss")
        if trainer.state.fn == "fit" and not trainer.sanity_checking and loss is not None and not torch.isfinite(loss):
            self._stop(trainer, f"the validation loss is {loss.item()} after step {trainer.global_step}")

    @staticmethod
    def _stop(trainer, what: str) -> None:
        last = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        raise TrainingDiverged(
            f"{what} (epoch {trainer.current_epoch}): training stopped. Checkpoints written so far are kept "
            f"(best: {last or 'none yet'}). Lower task.optimizer.lr, set trainer.gradient_clip_val=1.0, or check "
            f"the data for extreme values."
        )
