"""train.log lines for what happens during fitting: every validation and every checkpoint written."""

from __future__ import annotations

import logging

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint

from unet_upsampling.measures import LOG, MeasuredValues, line, which_validation

log = logging.getLogger(__name__)


class RunLog(L.Callback):
    """Logs each validation's headline measures (``measures.LOG``, those it measured) and each checkpoint as it
    appears on disk.

    Lightning runs the checkpoint callbacks after all others, so a checkpoint written at a
    validation's end is logged at the next training batch (or when fitting ends).
    """

    def __init__(self) -> None:
        self.seen: dict[int, tuple] = {}
        self._measured = MeasuredValues()

    def on_validation_start(self, trainer, pl_module) -> None:
        self._measured.start(trainer)

    def on_train_start(self, trainer, pl_module) -> None:
        """Where training starts: step 0, or where a resumed run's checkpoint left it."""
        log.info("training from step %d (epoch %d)", trainer.global_step, trainer.current_epoch)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        validation = which_validation(trainer, pl_module)
        shown = line(LOG, self._measured.measured(trainer))
        log.info("%s at step %d: %s", validation.label, validation.step, shown)

    def _checkpoints(self, trainer) -> None:
        for callback in trainer.checkpoint_callbacks:
            if not isinstance(callback, ModelCheckpoint):
                continue
            state = (callback.best_model_path, callback.last_model_path, callback._last_global_step_saved)
            if state == self.seen.get(id(callback)) or not any(state[:2]):
                continue
            self.seen[id(callback)] = state
            if callback.monitor and callback.best_model_path:
                score = callback.best_model_score
                best = "" if score is None else f" {float(score):.4g}"
                log.info("checkpoint: %s (best %s%s)", callback.best_model_path, callback.monitor, best)
            else:
                path = callback.last_model_path or callback.best_model_path
                log.info("checkpoint: %s (step %d)", path, callback._last_global_step_saved)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._checkpoints(trainer)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._checkpoints(trainer)
