"""Loggers: Lightning's CSV logger made to keep a resumed run's rows; figures and a run's summary to every logger."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import Logger, MLFlowLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from matplotlib.figure import Figure

HPARAM_METRICS = (
    "val/dice",
    "val/iou",
    "val/boundary_f1",
    "val/pef2",
    "val/flat_std",
    "val/kernel_imbalance",
    "test/dice",
    "train_time_s",
)


def read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of a CSV file (none when it does not exist)."""
    if not path.is_file():
        return [], []
    with path.open(newline="") as file:
        reader = csv.DictReader(file)
        return list(reader.fieldnames or []), list(reader)


def write_rows(path: Path, header: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None:
    """Writes a temporary file beside ``path`` and renames it over ``path``: a process stopped at any moment
    leaves the old file or the new one, never a truncated one."""
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(header))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, path)


class CrashSafeWriter(ExperimentWriter):
    """Lightning's metrics.csv writer, but every save rewrites the file through :func:`write_rows` (Lightning
    appends, and rewrites the file in place when a new key appears: a kill during that rewrite lost the rows)."""

    def save(self) -> None:
        if not self.metrics:
            return
        path = Path(self.metrics_file_path)
        _, rows = read_rows(path)
        self.metrics_keys = sorted(set(self.metrics_keys).union(*self.metrics))
        write_rows(path, self.metrics_keys, [*rows, *self.metrics])
        self.metrics = []


class CSVLogger(LightningCSVLogger):
    """``<save_dir>/<name>/metrics.csv``, written crash-safe at every logging call, that survives a resume.

    Lightning starts metrics.csv afresh in a non-empty directory. After ``resume_at(step)`` (train.py
    calls it with the checkpoint's global step) the rows logged before that step are kept and the
    later ones, logged by the stopped run after its checkpoint, are dropped: the resumed run logs
    them again, so its file ends as the uninterrupted run's does. The old file is renamed aside
    (``.metrics.csv.resuming``) while the writer starts, so no moment of a resume leaves it lost.
    """

    def __init__(self, *args, flush_logs_every_n_steps: int = 1, **kwargs):
        super().__init__(*args, flush_logs_every_n_steps=flush_logs_every_n_steps, **kwargs)
        self._resume_step: int | None = None

    def resume_at(self, step: int) -> None:
        self._resume_step = step

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            path = Path(self.log_dir) / ExperimentWriter.NAME_METRICS_FILE
            aside = path.with_name(f".{path.name}.resuming")  # left by a resume stopped right here: the whole log
            if self._resume_step is not None and path.is_file() and not aside.is_file():
                os.replace(path, aside)
            Path(self.root_dir).mkdir(parents=True, exist_ok=True)
            self._experiment = CrashSafeWriter(log_dir=self.log_dir)  # would delete a metrics.csv it found
            if self._resume_step is not None and aside.is_file():
                header, rows = read_rows(aside)
                kept = [r for r in rows if r["step"] and int(r["step"]) < self._resume_step]
                write_rows(path, header, kept)
                self._experiment.metrics_keys = header
                aside.unlink()
        return self._experiment


def log_figure(loggers: Sequence[Logger], tag: str, figure: Figure, step: int) -> None:
    """A figure to every logger that shows images: TensorBoard (an image summary), MLflow (an artifact)."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(tag, figure, global_step=step, close=False)
        elif isinstance(logger, MLFlowLogger):
            logger.experiment.log_figure(logger.run_id, figure, f"{tag}/step_{step:06d}.png")


def log_run(
    loggers: Sequence[Logger], params: Mapping[str, Any], metrics: Mapping[str, Any], files: Sequence[Path]
) -> None:
    """The run's settings with its final metrics (TensorBoard's HParams view compares a sweep's runs side by
    side), and its files as MLflow artifacts."""
    numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    numbers = {k: v for k, v in numbers.items() if math.isfinite(v)}
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(dict(params), metrics={k: numbers[k] for k in HPARAM_METRICS if k in numbers})
        elif isinstance(logger, MLFlowLogger):
            logger.log_hyperparams(dict(params))
            logger.log_metrics({k.replace("/", "_"): v for k, v in numbers.items()})
            for path in files:
                if path.is_file():
                    logger.experiment.log_artifact(logger.run_id, str(path))


def run_params(cfg) -> dict[str, Any]:
    """The settings that tell a sweep's runs apart, flat: mode, seed, data, network, optimiser, schedule."""
    from omegaconf import OmegaConf

    keys = (
        "upsample_name",
        "seed",
        "data.crop_size",
        "data.batch_size",
        "trainer.max_steps",
        "trainer.max_epochs",
        "task.loss",
        "task.optimizer.lr",
        "task.optimizer.weight_decay",
    )
    params = {key: OmegaConf.select(cfg, key) for key in keys}
    params["data"] = str(OmegaConf.select(cfg, "data.source._target_")).rsplit(".", 1)[-1]
    params["model"] = str(OmegaConf.select(cfg, "model._target_")).rsplit(".", 1)[-1]
    for key, value in (OmegaConf.to_container(cfg.model, resolve=True) or {}).items():
        if isinstance(value, int | float | str | bool) and not key.startswith("_"):
            params[f"model.{key}"] = value
    for key, value in (OmegaConf.to_container(cfg.upsample, resolve=True) or {}).items():
        if isinstance(value, int | float | str | bool) and not key.startswith("_"):
            params[f"upsample.{key}"] = value
    return {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in params.items()}
