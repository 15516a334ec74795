"""Loggers: Lightning's CSV logger made to keep a resumed run's rows, its TensorBoard logger made to keep one event
file; figures and a run's summary, files and tags to every logger."""

from __future__ import annotations

import csv
import logging
import math
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import Logger, MLFlowLogger
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from matplotlib.figure import Figure

from unet_upsampling.measures import HPARAMS, keys

# A run's files stored with it in MLflow: with .hydra/ (its composed config and overrides) it can be rerun.
RUN_FILES = ("metrics.json", "flat_field.png", "predictions.png", "train.log")


class NoTips(logging.Filter):
    """Drops Lightning's advertisements ("💡 Tip: For seamless cloud ... litlogger / litmodels")."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip:")


# Lightning logs them through its rank-zero logger when a Trainer is built; a filter there drops nothing else.
logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(NoTips())


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
    calls it with the checkpoint's global step) the rows logged before the checkpoint are kept: those of
    earlier steps and the validation of that step (a row is placed at the step of the weights it
    measured, so the checkpoint written after that validation follows it). The later ones, logged by
    the stopped run after its checkpoint, are dropped: the resumed run logs them again, so its file ends
    as the uninterrupted run's does.
    The old file is renamed aside (``.metrics.csv.resuming``) while the writer starts, so no moment of a
    resume leaves it lost.
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
                kept = [r for r in rows if r["step"] and before_step(r, self._resume_step)]
                write_rows(path, header, kept)
                self._experiment.metrics_keys = header
                aside.unlink()
        return self._experiment


def before_step(row: Mapping[str, str], step: int) -> bool:
    """Whether a metrics.csv row was logged before a checkpoint at ``step``: an earlier step, or its validation."""
    return int(row["step"]) < step or (
        int(row["step"]) == step and any(row.get(k) for k in row if k.startswith("val/"))
    )


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's, writing one event file per run.

    Lightning finalises the logger at the end of every ``trainer.validate/fit/test``; closing the writer
    there made the next call open a new event file (five per run). Here it is flushed, and stays open.
    """

    def finalize(self, status: str) -> None:
        self.experiment.flush()
        if status == "success":
            self.save()


def log_figure(loggers: Sequence[Logger], tag: str, figure: Figure, step: int) -> None:
    """A figure to every logger that shows images: TensorBoard (an image summary), MLflow (an artifact)."""
    for logger in loggers:
        if isinstance(logger, LightningTensorBoardLogger):
            logger.experiment.add_figure(tag, figure, global_step=step, close=False)
        elif isinstance(logger, MLFlowLogger):
            logger.experiment.log_figure(logger.run_id, figure, f"{tag}/step_{step:06d}.png")


def log_run(loggers: Sequence[Logger], params: Mapping[str, Any], metrics: Mapping[str, Any], run_dir: Path) -> None:
    """The run's settings beside its final metrics, and to MLflow its files and tags.

    TensorBoard (HParams tab: a sweep's runs side by side) gets the catalogue's hparams measures as
    ``hparams/<key>``: under their own names they would add a second point to the ``val/`` curves.
    MLflow already holds the ``val/`` and ``test/`` values as curves (Lightning logs them at every
    validation, the best checkpoint's at its step), so it gets the other numbers of metrics.json, the
    run's files (metrics.json, figures, train.log, .hydra/) and tags (dataset, mode, seed, git commit).
    """
    numbers = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
    numbers = {k: v for k, v in numbers.items() if math.isfinite(v)}
    step = int(metrics.get("global_step") or 0)
    for logger in loggers:
        if isinstance(logger, LightningTensorBoardLogger):
            shown = {f"hparams/{k}": numbers[k] for k in keys(HPARAMS, ("val", "test")) if k in numbers}
            logger.log_hyperparams(dict(params), metrics=shown, step=step)
            logger.experiment.flush()
        elif isinstance(logger, MLFlowLogger):
            logger.log_hyperparams(dict(params))
            logger.log_metrics({k: v for k, v in numbers.items() if not k.startswith(("val/", "test/"))}, step=step)
            for name in RUN_FILES:
                if (run_dir / name).is_file():
                    logger.experiment.log_artifact(logger.run_id, str(run_dir / name))
            if (run_dir / ".hydra").is_dir():
                logger.experiment.log_artifacts(logger.run_id, str(run_dir / ".hydra"), ".hydra")
            tags = {"dataset": params["data"], "mode": params["upsample_name"], "seed": params["seed"]}
            for key, value in (tags | {"git_commit": git_commit()}).items():
                if value is not None:
                    logger.experiment.set_tag(logger.run_id, key, str(value))


def git_commit() -> str | None:
    """The commit of the project's checkout (``+dirty`` when it has changes); None when the package is not run from
    its git checkout (an installed copy, no git)."""
    here = Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, check=True).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() / "src" / here.name != here:
            return None  # a copy installed inside some other repository
        return git("rev-parse", "HEAD") + ("+dirty" if git("status", "--porcelain") else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def run_params(cfg) -> dict[str, Any]:
    """The settings that tell a sweep's runs apart, flat: mode, seed, data (the Hydra choice, e.g. ``isbi2012``),
    network, optimiser, schedule."""
    from hydra.core.hydra_config import HydraConfig
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
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    params["data"] = choices.get("data") or str(OmegaConf.select(cfg, "data.source._target_")).rsplit(".", 1)[-1]
    params["model"] = choices.get("model") or str(OmegaConf.select(cfg, "model._target_")).rsplit(".", 1)[-1]
    for key, value in (OmegaConf.to_container(cfg.model, resolve=True) or {}).items():
        if isinstance(value, int | float | str | bool) and not key.startswith("_"):
            params[f"model.{key}"] = value
    for key, value in (OmegaConf.to_container(cfg.upsample, resolve=True) or {}).items():
        if isinstance(value, int | float | str | bool) and not key.startswith("_"):
            params[f"upsample.{key}"] = value
    return {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in params.items()}
