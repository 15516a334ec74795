"""Bookkeeping train.py adds to every run: what must survive a resume, and the time spent evaluating."""

from __future__ import annotations

import time
from typing import Any

import lightning as L

from unet_upsampling.measures import FINAL, measured, which_validation


class RunRecord(L.Callback):
    """Carries the metrics of the validation before training (``init/...``) inside every checkpoint, and keeps
    what the validation after the last step measured (``final``: its ``val/...``), which train.py reports
    for the final weights instead of validating them again.

    A run resumed from a checkpoint does not validate at initialisation again, yet writes the same
    ``init/`` keys as the uninterrupted run, restored from here.
    """

    def __init__(self) -> None:
        self.init_metrics: dict[str, float] = {}
        self.final: dict[str, float] = {}

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and which_validation(trainer, pl_module).kind == FINAL:
            values = measured(trainer, pl_module)
            self.final = {k: v for k, v in values.items() if k.startswith("val/") or k == "step"}

    def state_dict(self) -> dict[str, Any]:
        return {"init_metrics": dict(self.init_metrics)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.init_metrics = dict(state_dict["init_metrics"])


class EvaluationTimer(L.Callback):
    """Wall time of the validations (artifact probe included) during fitting, in ``seconds``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start: float | None = None

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._start = time.perf_counter()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._start is not None:
            self.seconds += time.perf_counter() - self._start
            self._start = None
