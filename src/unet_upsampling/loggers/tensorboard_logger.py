"""Lightning's TensorBoard logger made to keep one event file per run."""

from __future__ import annotations

from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's, writing one event file per run.

    Lightning finalises the logger at the end of every ``trainer.validate/fit/test``; closing the writer
    there made the next call open a new event file (five per run). Here it is flushed, and stays open.
    """

    def finalize(self, status: str) -> None:
        self.experiment.flush()
        if status == "success":
            self.save()
