"""A matplotlib figure to every logger that shows images."""

from __future__ import annotations

from collections.abc import Sequence

from lightning.pytorch.loggers import Logger, MLFlowLogger
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from matplotlib.figure import Figure


def log_figure(loggers: Sequence[Logger], tag: str, figure: Figure, step: int) -> None:
    """A figure to every logger that shows images: TensorBoard (an image summary), MLflow (an artifact)."""
    for logger in loggers:
        if isinstance(logger, LightningTensorBoardLogger):
            logger.experiment.add_figure(tag, figure, global_step=step, close=False)
        elif isinstance(logger, MLFlowLogger):
            logger.experiment.log_figure(logger.run_id, figure, f"{tag}/step_{step:06d}.png")
