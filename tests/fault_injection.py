"""Callbacks the fault and resume tests add to a run (`+callbacks.NAME._target_=fault_injection.X`, tests/ on
sys.path)."""

import os
import signal as signal_module
import time
from pathlib import Path

import lightning as L
import torch


class PoisonWeights(L.Callback):
    """Sets the network's first weight to NaN before training step ``at_step``."""

    def __init__(self, at_step: int):
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at_step:
            with torch.no_grad():
                next(pl_module.net.parameters()).fill_(float("nan"))


class SendSignal(L.Callback):
    """Sends ``signal`` (SIGTERM, SIGINT) to this process once, in phase ``at``: ``init`` (the validation before
    training), ``fit`` (before training step ``step`` + 1), ``best`` (the validation of the best checkpoint),
    ``figures`` (as that validation draws its figures), ``test`` or ``test_end`` (after the test's last batch)."""

    def __init__(self, signal: str, at: str, step: int = 0):
        self.signum, self.at, self.step, self.sent = getattr(signal_module, signal), at, step, False

    def _send(self, at: str, trainer) -> None:
        if at == self.at and not self.sent and (at != "fit" or trainer.global_step == self.step):
            self.sent = True
            os.kill(os.getpid(), self.signum)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._send("fit", trainer)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if trainer.state.fn == "validate":
            self._send("init" if trainer.global_step == 0 else "best", trainer)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if trainer.state.fn == "validate" and trainer.global_step > 0:
            self._send("figures", trainer)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._send("test", trainer)

    def on_test_end(self, trainer, pl_module) -> None:
        self._send("test_end", trainer)


class WaitFor(L.Callback):
    """Before training step ``step`` + 1 (the checkpoints of step ``step`` written), creates ``<path>.ready`` and
    waits (up to 5 minutes) until ``path`` exists: a test acts on a run paused at a known step."""

    def __init__(self, path: str, step: int = 0):
        self.path, self.step = Path(path), step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step != self.step:
            return
        Path(f"{self.path}.ready").touch()
        deadline = time.time() + 300
        while not self.path.exists() and time.time() < deadline:
            time.sleep(0.05)
