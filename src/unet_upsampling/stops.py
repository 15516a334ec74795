"""SIGTERM and SIGINT (Ctrl-C) stop a run in any phase, at a safe point, and say how to go on.

A run goes on inside :func:`stop_on_signals`. Its handlers only record the signal; the run stops at the
next safe point: after the current batch of whatever loop runs (the :class:`Stops` callback) or between
phases (:meth:`Stops.begin`), so no checkpoint or log is left half written. A second signal stops at
once. The run then logs one line (to stderr and train.log) naming the signal, the phase and the step,
and how to resume, and exits with 128 + the signal's number, as a shell reports a process the signal
ended: 143 after SIGTERM, 130 after SIGINT. A scheduler or a sweep counts it as failed, not finished.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

log = logging.getLogger(__name__)
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequested(Exception):
    """Raised at a safe point after ``signum`` arrived."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Stops(L.Callback):
    """The signal received (if any), the phase the run is in, and the checks that turn a signal into a stop.

    Under DDP the training loop leaves SIGTERM to Lightning, which stops every rank at the same step.
    """

    def __init__(self, start_step: int = 0):
        self.signum: int | None = None
        self.phase = "setting up (reading the data, building the network)"
        self.step, self.epoch = start_step, None

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
        self.step, self.epoch = trainer.global_step, trainer.current_epoch
        if not (trainer.world_size > 1 and trainer.training and self.signum == signal.SIGTERM):
            self.check()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._at_batch_end(trainer)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._at_batch_end(trainer)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._at_batch_end(trainer)

    def message(self, signum: int, run_dir: Path) -> str:
        where = f"at step {self.step}" + ("" if self.epoch is None else f" (epoch {self.epoch})")
        how = (
            f"resume with the same overrides plus ckpt_path=last hydra.run.dir={run_dir}"
            if (run_dir / "checkpoints" / "last.ckpt").is_file()
            else "no checkpoint was written yet: run the same command again"
        )
        return f"stopped by {signal.Signals(signum).name} during {self.phase} {where}; {how}"


@contextmanager
def stop_on_signals(run_dir: Path, start_step: int = 0) -> Iterator[Stops]:
    """Records SIGTERM/SIGINT while the run goes on; a stop ends the process with the message and exit code.

    Handlers can only be set in the main thread; elsewhere signals keep their handlers (and Lightning its
    own SIGTERM handling inside ``fit``).
    """
    stops = Stops(start_step)
    main = threading.current_thread() is threading.main_thread()
    previous = {signum: signal.signal(signum, stops.record) for signum in SIGNALS} if main else {}
    try:
        yield stops
    except (StopRequested, SIGTERMException) as stop:
        signum = stop.signum if isinstance(stop, StopRequested) else signal.SIGTERM
        message = stops.message(signum, run_dir)
        log.error(message)
        print(message, file=sys.stderr)
        raise SystemExit(128 + signum) from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
