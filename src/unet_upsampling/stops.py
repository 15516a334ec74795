"""SIGTERM and SIGINT (Ctrl-C) stop train.py, eval.py and predict.py in any phase, at a safe point, and say how to
go on.

An entry point's whole call runs inside ``signals.signals_deferred``: a signal that comes while Hydra composes
the config, takes the run directory's lock and writes ``.hydra/`` is kept. The run itself goes on inside
:func:`stop_on_signals`, which takes over a kept signal. Its handlers only record the signal; the run stops
at the next safe point: after the current batch of whatever loop runs (the :class:`Stops` callback),
between phases (:meth:`Stops.begin`) or, in predict.py, between images, so no checkpoint, log or output is
left half written, the run directory's lock is released and predict.py's staging folder removed. A
second signal stops at once. The run then logs one line (to stderr and train.log) naming the signal, the
phase (and in train.py the step), and how to go on, and exits with 128 + the signal's number, as a shell
reports a process the signal ended: 143 after SIGTERM, 130 after SIGINT. A scheduler or a sweep counts it
as failed, not finished. Before an entry point's ``main`` is called (Python starting, imports) signals
keep Python's own handling; nothing has been written then.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from unet_upsampling.signals import SIGNALS, in_main_thread, take_kept

log = logging.getLogger(__name__)


class StopRequested(Exception):
    """Raised at a safe point after ``signum`` arrived."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Stops(L.Callback):
    """The signal received (if any), the phase the run is in, and the checks that turn a signal into a stop.

    ``go_on`` says, when the run stops, how to go on. ``step`` (train.py) is the training step the message
    names, updated at every batch; None (eval.py, predict.py) names none. Under DDP the training loop leaves
    SIGTERM to Lightning, which stops every rank at the same step.
    """

    def __init__(self, go_on: Callable[[], str], phase: str, step: int | None = None):
        self.signum: int | None = None
        self.go_on, self.phase = go_on, phase
        self.step, self.epoch = step, None

    def record(self, signum: int, frame) -> None:
        if self.signum is not None:
            raise StopRequested(signum)
        self.signum = signum
        name = signal.Signals(signum).name
        line = f"{name}: stopping at the next safe point ({self.phase}); send it again to stop at once\n"
        os.write(2, line.encode())  # not print: a handler may interrupt a write to sys.stderr's buffer

    def check(self) -> None:
        if self.signum is not None:
            raise StopRequested(self.signum)

    def begin(self, phase: str) -> None:
        """Stops here if a signal came during the phase that ends; else the run goes on to ``phase``."""
        self.check()
        self.phase = phase

    def _at_batch_end(self, trainer: L.Trainer) -> None:
        if self.step is not None:
            self.step, self.epoch = trainer.global_step, trainer.current_epoch
        if not (trainer.world_size > 1 and trainer.training and self.signum == signal.SIGTERM):
            self.check()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._at_batch_end(trainer)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._at_batch_end(trainer)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._at_batch_end(trainer)

    def message(self, signum: int) -> str:
        where = "" if self.step is None else f" at step {self.step}"
        where += "" if self.epoch is None else f" (epoch {self.epoch})"
        return f"stopped by {signal.Signals(signum).name} during {self.phase}{where}; {self.go_on()}"


def resume_hint(run_dir: Path) -> Callable[[], str]:
    """train.py's way on after a stop: resume from the run's last.ckpt, or, before the first one, start again."""

    def go_on() -> str:
        if (run_dir / "checkpoints" / "last.ckpt").is_file():
            return f"resume with the same overrides plus ckpt_path=last hydra.run.dir={run_dir}"
        return "no checkpoint was written yet: run the same command again"

    return go_on


@contextmanager
def stop_on_signals(go_on: Callable[[], str], phase: str, step: int | None = None) -> Iterator[Stops]:
    """Records SIGTERM/SIGINT while the run goes on (taking over one that ``signals_deferred`` kept); a stop ends the
    process with the message (``Stops``) and the exit code."""
    stops = Stops(go_on, phase, step)
    previous = {signum: signal.signal(signum, stops.record) for signum in SIGNALS} if in_main_thread() else {}
    stops.signum = take_kept()
    try:
        yield stops
    except (StopRequested, SIGTERMException) as stop:
        signum = stop.signum if isinstance(stop, StopRequested) else signal.SIGTERM
        message = stops.message(signum)
        log.error(message)
        print(message, file=sys.stderr)
        raise SystemExit(128 + signum) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
