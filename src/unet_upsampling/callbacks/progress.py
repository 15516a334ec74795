"""Progress that works without a terminal: the rich bar in a terminal, plain lines in a log file."""

from __future__ import annotations

import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar

from unet_upsampling.measures import PROGRESS, line, measured, which_validation


def progress_bar(mode: str = "auto", every_s: float = 30.0) -> ProgressBar:
    """``rich`` in a terminal, ``plain`` lines when stdout is a file or a pipe (SLURM, docker logs, nohup, CI)."""
    if mode not in ("auto", "rich", "plain"):
        from unet_upsampling.errors import ConfigError

        raise ConfigError(f"callbacks.progress_bar.mode={mode!r}: choose auto, rich or plain")
    if mode == "rich" or (mode == "auto" and sys.stdout.isatty()):
        return RichProgressBar()
    return PlainProgress(every_s)


def duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}"


class PlainProgress(ProgressBar):
    """One line every ``every_s`` seconds of training: epoch, step / total, loss, images/s, time left;
    one line per validation with the headline measures it measured (``measures.PROGRESS``). Plain text on
    stdout, no control characters.

    The loss is the last value logged (every ``trainer.log_every_n_steps``), read only when a line is
    printed, so training makes no extra host sync; a line shows it when it differs from the one the previous line
    showed (lines may come faster than the loss is logged). The line at the end of training is printed when
    batches were trained since the previous line.
    """

    def __init__(self, every_s: float = 30.0):
        super().__init__()
        self.every_s, self.enabled = every_s, True
        self._start = self._last = 0.0
        self._images = self._images_at_last = self._first_step = 0
        self._shown_loss: float | None = None

    def disable(self) -> None:
        self.enabled = False

    def enable(self) -> None:
        self.enabled = True

    def print(self, *args: Any, **kwargs: Any) -> None:
        if self.enabled:
            print(*args, **kwargs, flush=True)

    def on_train_start(self, trainer, pl_module) -> None:
        self._start = self._last = time.perf_counter()
        self._images = self._images_at_last = 0
        self._first_step = trainer.global_step
        self.print(f"training: {trainer.estimated_stepping_batches} steps, from step {trainer.global_step}")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._images += len(batch[0])
        now = time.perf_counter()
        if now - self._last >= self.every_s:
            self._line(trainer, now)

    def _line(self, trainer: L.Trainer, now: float) -> None:
        total, step = trainer.estimated_stepping_batches, trainer.global_step
        rate = (self._images - self._images_at_last) / max(now - self._last, 1e-9)
        left = (now - self._start) / max(step - self._first_step, 1) * (total - step)
        self.print(
            f"epoch {trainer.current_epoch} step {step}/{total}{self._new_loss(trainer)}"
            f" {rate:.1f} images/s, {duration(now - self._start)} elapsed, about {duration(left)} left"
        )
        self._last, self._images_at_last = now, self._images

    def _new_loss(self, trainer: L.Trainer) -> str:
        """`` loss X`` when the logged training loss differs from the one the previous line showed, else nothing."""
        loss = trainer.callback_metrics.get("train/loss")
        if loss is None or float(loss) == self._shown_loss:
            return ""
        self._shown_loss = float(loss)
        return f" loss {self._shown_loss:.4g}"

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        validation = which_validation(trainer, pl_module)
        self.print(f"{validation.label} at step {validation.step}: {line(PROGRESS, measured(trainer, pl_module))}")

    def on_train_end(self, trainer, pl_module) -> None:
        if self._images > self._images_at_last:
            self._line(trainer, time.perf_counter())
        self.print(f"training done: step {trainer.global_step}, {duration(time.perf_counter() - self._start)}")
