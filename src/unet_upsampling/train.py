"""``python train.py [overrides]``: validate at init, fit, validate and test the measured weights (the best
checkpoint, or the final weights), write metrics.json.

From Python, ``train(cfg)`` takes a config composed by Hydra (``@hydra.main`` or ``compose(...)``,
with or without ``return_hydra_config=True``) and returns the metrics it writes to metrics.json.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from unet_upsampling.builders import (
    build_callbacks,
    build_datamodule,
    build_loggers,
    build_task,
    build_trainer,
    build_upsample,
)
from unet_upsampling.callbacks import EvaluationTimer, RunRecord
from unet_upsampling.callbacks.artifact_probe import ArtifactProbe
from unet_upsampling.callbacks.run_log import describe_run
from unet_upsampling.checkpoint import CheckpointTrust, StoreConfig, read_checkpoint
from unet_upsampling.checks import check_config, check_run, check_writable
from unet_upsampling.distributed import end_job, share_job
from unet_upsampling.errors import ConfigError, UserError
from unet_upsampling.jobs import job_context, no_empty_run_dir
from unet_upsampling.loggers import log_run, run_params
from unet_upsampling.metrics import constant_in_constant_out
from unet_upsampling.phases import PhaseTimes, run_start
from unet_upsampling.provenance import provenance
from unet_upsampling.results import print_summary, write_metrics
from unet_upsampling.resume import count_the_last_epoch, resume_from
from unet_upsampling.runlock import run_lock
from unet_upsampling.stops import Stops, resume_hint, stop_on_signals
from unet_upsampling.task import SegmentationTask

log = logging.getLogger(__name__)


def validation_schedule(cfg: DictConfig, datamodule) -> dict[str, Any]:
    """Trainer arguments for at most ``cfg.validations`` validations evenly spaced in optimiser steps, the last one
    after the last step where that keeps at least half of them (its weights are validated and checkpointed): every
    d steps, d the smallest divisor of the run's steps from b = ceil(steps / validations) to 2b (192 steps, 10
    validations: every 24), else every b (97 steps, 10 validations: every 10, the last at step 90). None if
    unset."""
    if cfg.get("validations") is None or cfg.trainer.get("fast_dev_run"):
        return {}
    world = cfg.trainer.devices * cfg.trainer.num_nodes if isinstance(cfg.trainer.devices, int) else 1
    accumulate = cfg.trainer.get("accumulate_grad_batches") or 1
    steps_per_epoch = max(1, len(datamodule.train_dataloader()) // max(1, world) // accumulate)
    max_steps, max_epochs = cfg.trainer.get("max_steps", -1), cfg.trainer.get("max_epochs")
    total = max_steps if max_steps and max_steps > 0 else (max_epochs or 1000) * steps_per_epoch
    if total < 1:  # no step or epoch limit: the trainer's own cadence (once an epoch)
        return {}
    base = max(1, math.ceil(total / cfg.validations))
    every = next((d for d in range(base, 2 * base + 1) if total % d == 0), base)
    return {"val_check_interval": every * accumulate, "check_val_every_n_epoch": None}


def train(cfg: DictConfig) -> dict[str, Any]:
    """One run described by ``cfg``; returns what it writes to ``metrics.json``."""
    times = PhaseTimes(run_start())
    with job_context(cfg) as cfg, no_empty_run_dir(cfg.paths.output_dir, cfg.paths.log_dir):
        run_dir = Path(cfg.paths.output_dir)
        starting = "starting (checking the config, reading the checkpoint to resume from)"
        with stop_on_signals(resume_hint(run_dir), starting) as stops, run_lock(run_dir):
            check_config(cfg)
            # a bad checkpoint, or one written with other settings, is refused first
            resume, resume_step = resume_from(cfg.ckpt_path, run_dir, OmegaConf.to_container(cfg, resolve=True))
            stops.begin("setting up (reading the data, building the network)")
            stops.step = resume_step or 0
            return run(cfg, run_dir, resume, resume_step, stops, times)


@dataclass
class Training:
    """What the steps of a run share: its config, directory, data, task, Trainer, bookkeeping callbacks and the
    time of each phase."""

    cfg: DictConfig
    dir: Path
    datamodule: Any
    task: SegmentationTask
    trainer: L.Trainer
    record: RunRecord
    timer: EvaluationTimer
    stops: Stops
    times: PhaseTimes
    launcher_env: Any

    def begin(self, phase: str, says: str) -> None:
        """Enters a phase of ``phases.PHASES``; ``says`` names it in a stop's message."""
        self.stops.begin(says)
        self.times.begin(phase)

    def probe_seconds(self) -> float:
        return sum(c.seconds for c in self.trainer.callbacks if isinstance(c, ArtifactProbe))


def run(
    cfg: DictConfig, run_dir: Path, resume: Path | None, resume_step: int | None, stops: Stops, times: PhaseTimes
) -> dict[str, Any]:
    """Build, validate at init (a fresh run, unless ``validate_at_init`` is off), fit, validate and test the
    measured weights (``eval_weights``), write the results."""
    training = build_run(cfg, run_dir, resume, resume_step, stops, times)
    if resume is None and cfg.get("validate_at_init", True):
        validate_at_init(training)
    fit(training, resume)
    metrics = evaluate_end(training)
    write_results(training, metrics)
    end_job(training.launcher_env)
    stops.check()  # a signal after metrics.json was written: the run is complete, yet reported as stopped
    return metrics


def build_run(
    cfg: DictConfig, run_dir: Path, resume: Path | None, resume_step: int | None, stops: Stops, times: PhaseTimes
) -> Training:
    """Checks and builds what the run needs; the resolved config is the one its checkpoints store."""
    config = OmegaConf.to_container(cfg, resolve=True)
    check_writable(
        [run_dir, *(c["dirpath"] for c in (config.get("callbacks") or {}).values() if c and c.get("dirpath"))]
    )
    L.seed_everything(cfg.seed, workers=True)
    launcher_env = share_job(run_dir)  # DDP children join this job (distributed.py)
    datamodule = build_datamodule(cfg)
    task = build_task(config)
    check_run(datamodule, task.net)
    describe_run(cfg, datamodule, task, resume, resume_step)
    record, timer = RunRecord(), EvaluationTimer()
    callbacks = [*build_callbacks(cfg), StoreConfig(config), record, timer, stops]
    loggers = build_loggers(cfg)
    for logger in loggers:
        if resume_step is not None and hasattr(logger, "resume_at"):
            logger.resume_at(resume_step)
    trainer = build_trainer(  # the checkpoint trust boundary: checkpoint.py
        cfg, callbacks, loggers, plugins=[CheckpointTrust.of(callbacks, task)], **validation_schedule(cfg, datamodule)
    )
    return Training(cfg, run_dir, datamodule, task, trainer, record, timer, stops, times, launcher_env)


def validate_at_init(training: Training) -> None:
    """The artifacts of the untrained network (Odena et al. 2016), as init/..."""
    training.begin("init_validation", "the validation before training")
    initial = training.trainer.validate(training.task, datamodule=training.datamodule, verbose=False)[0]
    training.record.init_metrics = {key.replace("val/", "init/", 1): float(v) for key, v in initial.items()}


def fit(training: Training, resume: Path | None) -> None:
    """Trains (from ``resume`` when given); the validations while fitting get a phase of their own."""
    training.begin("training", "training")
    training.trainer.fit(training.task, datamodule=training.datamodule, ckpt_path=resume, weights_only=True)
    count_the_last_epoch(training.trainer)
    training.times.split(training.timer.seconds, into="fit_validations", out_of="training")


def best_checkpoint(training: Training) -> str:
    """The best checkpoint's path; empty when checkpointing is off."""
    return training.trainer.checkpoint_callback.best_model_path if training.trainer.checkpoint_callback else ""


def measured_checkpoint(training: Training) -> str | None:
    """The checkpoint whose weights the end of the run measures, None for the weights the run ends with:
    ``eval_weights=best`` names the best checkpoint, unless it holds the final weights (no reload)."""
    best = best_checkpoint(training) if training.cfg.get("eval_weights", "best") == "best" else ""
    if not best or read_checkpoint(best)["global_step"] == training.trainer.global_step:
        return None
    return best


@contextmanager
def off_the_curves(trainer: L.Trainer, checkpoint: str | None) -> Iterator[None]:
    """Without loggers while validating ``checkpoint``, weights fitting validated already: a second point at its
    step, or one back in step, would redraw every curve (``write_results`` gives them ``best/...``)."""
    loggers = trainer.loggers
    trainer.loggers = [] if checkpoint else loggers
    try:
        yield
    finally:
        trainer.loggers = loggers


def evaluate_end(training: Training) -> dict[str, Any]:
    """The metrics of metrics.json: at init, the measured weights' validation and test, the run's facts.

    The validation is the one after the last step when it measured these weights (the final weights), else one
    of its own."""
    trainer, task, datamodule = training.trainer, training.task, training.datamodule
    checkpoint = measured_checkpoint(training)
    metrics = dict(training.record.init_metrics)
    weights = "the best checkpoint" if checkpoint else "the final weights"
    if checkpoint is None and training.record.final:
        metrics |= training.record.final
    else:
        training.begin("end_validation", f"the validation of {weights} (and its figures)")
        with off_the_curves(trainer, checkpoint):
            metrics |= trainer.validate(
                task, datamodule=datamodule, ckpt_path=checkpoint, verbose=False, weights_only=True
            )[0]
    if training.cfg.test and datamodule.has_test:
        training.begin("test", f"the test of {weights}")
        metrics |= trainer.test(task, datamodule=datamodule, ckpt_path=checkpoint, verbose=False, weights_only=True)[0]
    training.begin("results", "writing metrics.json")
    return metrics | {
        "params": sum(p.numel() for p in task.net.parameters()),
        "trainable_params": sum(p.numel() for p in task.net.parameters() if p.requires_grad),
        "train_time_s": training.times.seconds.get("training", 0.0) + training.timer.seconds,
        "eval_time_s": training.timer.seconds,
        "epoch": trainer.current_epoch,
        "global_step": trainer.global_step,
        "eval_weights": "best checkpoint" if checkpoint else "final",
        "best_checkpoint": best_checkpoint(training) or None,
        "upsample_flat_at_init": constant_in_constant_out(build_upsample(training.cfg)),
        "precision": str(training.cfg.trainer.precision),
        **provenance(),
        **training.times.metrics(training.probe_seconds()),
    }


def write_results(training: Training, metrics: dict[str, Any]) -> None:
    """metrics.json, the console summary, and the run's settings and final metrics to its loggers (rank 0)."""
    if not training.trainer.is_global_zero:
        return
    cfg, best = training.cfg, best_checkpoint(training)
    log.info("time: %s", training.times.line(training.probe_seconds()))
    path = write_metrics(training.dir / "metrics.json", metrics)
    step = int(metrics.get("step", training.trainer.global_step))
    print_summary(
        f"{cfg.experiment_name}: upsample={cfg.upsample_name}, seed={cfg.seed}",
        metrics,
        {
            "measured": f"the {metrics['eval_weights']} weights (step {step})",
            "best checkpoint": best or "none (checkpointing off)",
            "metrics": path,
            "run directory": training.dir,
        },
        training.datamodule.class_names,
    )
    if cfg.get("eval_weights", "best") == "best":  # the curves hold the best's values at its step already
        best_values = {f"best/{k[4:]}": float(v) for k, v in metrics.items() if k.startswith("val/") and v is not None}
        for logger in training.trainer.loggers:
            logger.log_metrics(best_values, step=step)
    log_run(training.trainer.loggers, run_params(cfg), metrics, training.dir)  # after the summary ending train.log


def optimized(metrics: dict[str, Any], name: str | None) -> float | None:
    """The value of ``optimized_metric`` (None when unset); a ConfigError listing the metrics when it names none."""
    if name is None:
        return None
    if name not in metrics:
        numbers = sorted(k for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool))
        raise ConfigError(
            f"optimized_metric={name!r} is not a metric of this run (it finished; its metrics.json is written). "
            f"Set optimized_metric to one of: {', '.join(numbers)}"
        )
    return metrics[name]


def train_job(cfg: DictConfig) -> float | None:
    """train.py's job (entry.py): the run, then ``cfg.optimized_metric`` for Hydra's sweepers; a failure is logged to
    the run's train.log first (a user error there alone: Hydra prints it on the console)."""
    try:
        return optimized(train(cfg), cfg.get("optimized_metric"))
    except UserError as error:
        log.error("%s", error, extra={"console": False})
        raise
    except Exception:
        log.exception("the run failed")
        raise
