"""``python eval.py ckpt_path=... [+data.KEY=VALUE | data=OPTION]``: validate (and test) a checkpoint as the end of
train.py does, on the data it was trained on unless told otherwise; write metrics.json and the run's figures."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from unet_upsampling.builders import build_callbacks, build_datamodule, build_trainer
from unet_upsampling.checkpoint import load_checkpoint
from unet_upsampling.checks import check_run, data_root_problem
from unet_upsampling.errors import ConfigError, DataError
from unet_upsampling.jobs import job_context, no_empty_run_dir
from unet_upsampling.results import print_summary, write_metrics
from unet_upsampling.runlock import run_lock
from unet_upsampling.stops import Stops, stop_on_signals
from unet_upsampling.trust import rebuild_datamodule

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, Any]:
    """Evaluates ``cfg.ckpt_path`` (see the module) under the run directory's lock; a signal stops it (stops.py); a
    failed evaluation leaves no empty run directory."""
    with job_context(cfg) as job, no_empty_run_dir(job.paths.output_dir, job.paths.log_dir):
        run_dir = Path(job.paths.output_dir)
        again = "metrics.json was not written: run the same command again"
        with stop_on_signals(lambda: again, f"reading {job.ckpt_path}") as stops, run_lock(run_dir):
            return run(job, stops)


def merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``changes`` written over it, key by key at every depth."""
    out = dict(base)
    for key, value in changes.items():
        both = isinstance(value, Mapping) and isinstance(base.get(key), Mapping)
        out[key] = merged(base[key], value) if both else value
    return out


def rerooted(root: str, stored_data_dir: Any, data_dir: str) -> str:
    """A stored root under the training machine's paths.data_dir, moved under this machine's (DATA_DIR)."""
    if not isinstance(stored_data_dir, str) or not stored_data_dir:
        return root
    try:
        return str(Path(data_dir) / Path(root).relative_to(stored_data_dir))
    except ValueError:  # not under it: kept as stored
        return root


def stored_data(cfg: DictConfig, config: Mapping[str, Any]) -> tuple[L.LightningDataModule, str]:
    """The checkpoint's data config with the command line's ``+data.*`` written over it, and where its data lies."""
    source = str(cfg.ckpt_path)
    data = config["data"] if isinstance(config.get("data"), Mapping) else {}
    changes = OmegaConf.to_container(cfg.data, resolve=True) if cfg.get("data") is not None else {}
    stored_root = data["source"].get("root") if isinstance(data.get("source"), Mapping) else None
    if isinstance(stored_root, str) and "root" not in (changes.get("source") or {}):
        root = rerooted(stored_root, (config.get("paths") or {}).get("data_dir"), cfg.paths.data_dir)
        if not Path(root).expanduser().exists():
            moved = (
                f"set DATA_DIR (now {cfg.paths.data_dir}) to the folder that holds it, " if root != stored_root else ""
            )
            raise DataError(
                f"{source} was trained on data.source.root={stored_root}, and {root} does not exist on this "
                f"machine: pass +data.source.root=DIR (the folder of that data here), {moved}or score on other "
                f"data with data=<option>"
            )
        changes = merged(changes, {"source": {"root": root}})
    datamodule = rebuild_datamodule(merged(data, changes), source)
    where = (changes.get("source") or {}).get("root")
    return datamodule, f"the checkpoint's ({where})" if where else "the checkpoint's"


def run(cfg: DictConfig, stops: Stops) -> dict[str, Any]:
    task, config = load_checkpoint(cfg.ckpt_path)
    stops.begin("reading the data")
    if "_target_" in (cfg.get("data") or {}):  # data=<option>: composed from the config files
        if problem := data_root_problem(cfg):
            raise DataError(problem)
        choice = HydraConfig.get().runtime.choices.get("data") if HydraConfig.initialized() else None
        datamodule, described = build_datamodule(cfg), f"data={choice}" if choice else "as composed"
    else:
        datamodule, described = stored_data(cfg, config)
    log.info("checkpoint %s (step %d), data: %s", cfg.ckpt_path, task.checkpoint_step, described)
    if task.num_classes != datamodule.num_classes:
        raise ConfigError(
            f"the checkpoint predicts {task.num_classes} classes but data.num_classes="
            f"{datamodule.num_classes}: set data.num_classes={task.num_classes}, or evaluate on the data it was "
            f"trained for"
        )
    check_run(datamodule, task.net)
    trainer = build_trainer(cfg, [*build_callbacks(cfg), stops], [])
    stops.begin(f"the validation of {cfg.ckpt_path}")
    metrics = trainer.validate(task, datamodule=datamodule, verbose=False)[0]
    if datamodule.has_test:
        stops.begin(f"the test of {cfg.ckpt_path}")
        metrics |= trainer.test(task, datamodule=datamodule, verbose=False)[0]
    metrics |= {
        "params": sum(p.numel() for p in task.net.parameters()),
        "trainable_params": sum(p.numel() for p in task.net.parameters() if p.requires_grad),
        "global_step": task.checkpoint_step,
        "checkpoint": str(cfg.ckpt_path),
    }
    stops.begin("writing metrics.json")
    if trainer.is_global_zero:
        run_dir = Path(cfg.paths.output_dir)
        path = write_metrics(run_dir / "metrics.json", metrics)
        print_summary(
            f"eval: {cfg.ckpt_path}",
            metrics,
            {"data": described, "metrics": path, "run directory": run_dir},
            datamodule.class_names,
        )
    return metrics
