"""Loggers: a crash-safe, resumable CSV logger (``csv_logger``), Lightning's TensorBoard logger made to keep one event
file (``tensorboard_logger``); figures (``figures``) and a run's settings beside its final metrics, files and tags
(``hparams``) to every logger. The logger configs name ``unet_upsampling.loggers.CSVLogger`` and
``.TensorBoardLogger``."""

from unet_upsampling.loggers.csv_logger import CSVLogger, before_checkpoint
from unet_upsampling.loggers.figures import log_figure
from unet_upsampling.loggers.hparams import git_commit, log_run, run_params
from unet_upsampling.loggers.tensorboard_logger import TensorBoardLogger

__all__ = [
    "CSVLogger",
    "TensorBoardLogger",
    "before_checkpoint",
    "git_commit",
    "log_figure",
    "log_run",
    "run_params",
]
