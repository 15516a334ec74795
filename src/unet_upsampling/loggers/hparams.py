"""A run's settings beside its final metrics to every logger, and to MLflow its files and tags."""

from __future__ import annotations

import math
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger, MLFlowLogger
from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger

from unet_upsampling.measures import HPARAMS, keys

# A run's files stored with it in MLflow: with .hydra/ (its composed config and overrides) it can be rerun. The
# figures reach it once, as they are drawn (loggers/figures.py).
RUN_FILES = ("metrics.json", "train.log")


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
    here = Path(__file__).resolve().parents[1]  # the package directory

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=here, capture_output=True, text=True, check=True).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() / "src" / here.name != here:
            return None  # a copy installed inside some other repository
        return git("rev-parse", "HEAD") + ("+dirty" if git("status", "--porcelain") else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def run_params(cfg) -> dict[str, Any]:
    """The settings that tell a sweep's runs apart, flat: mode, seed, data and loss (the Hydra choices, e.g.
    ``isbi2012``, ``ce_dice``), network, optimiser, schedule; every value resolved."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    keys = (
        "upsample_name",
        "seed",
        "data.crop_size",
        "data.batch_size",
        "trainer.max_steps",
        "trainer.max_epochs",
        "task.optimizer.lr",
        "task.optimizer.weight_decay",
    )
    params = {key: OmegaConf.select(cfg, key) for key in keys}  # scalars: resolved as they are read
    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    params["data"] = choices.get("data") or str(OmegaConf.select(cfg, "data.source._target_")).rsplit(".", 1)[-1]
    params["model"] = choices.get("model") or str(OmegaConf.select(cfg, "model._target_")).rsplit(".", 1)[-1]
    loss = OmegaConf.select(cfg, "task.loss._target_", default=None)
    params["loss"] = choices.get("task/loss") or (None if loss is None else str(loss).rsplit(".", 1)[-1])
    for key, value in (OmegaConf.to_container(cfg.model, resolve=True) or {}).items():
        if isinstance(value, int | float | str | bool) and not key.startswith("_"):
            params[f"model.{key}"] = value
    for key, value in (OmegaConf.to_container(cfg.upsample, resolve=True) or {}).items():
        if isinstance(value, int | float | str | bool) and not key.startswith("_"):
            params[f"upsample.{key}"] = value
    return {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in params.items()}
