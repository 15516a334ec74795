"""Callbacks the fault and resume tests add to a run (`+callbacks.NAME._target_=fault_injection.X`, tests/ on
sys.path)."""

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


class Crash(L.Callback):
    """Raises before training step ``at_step`` + 1, as a crash would: the checkpoints written before it stay."""

    def __init__(self, at_step: int):
        self.at_step = at_step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at_step:
            raise RuntimeError(f"injected crash at step {self.at_step}")
