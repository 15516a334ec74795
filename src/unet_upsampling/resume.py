"""Where a run resumes from (the checkpoint it names, its run directory's last.ckpt, or a requeued SLURM job's), and
whether it can: a resume goes on with the settings that wrote the checkpoint.

A resumed run restores the checkpoint's weights, optimiser and schedule state and data position, and takes
everything else from its own config, which its checkpoints and ``.hydra/config.yaml`` then record. A change
to what shapes the result (``SHAPING``) would make them claim settings that never applied (the optimiser
keeps its stored learning rate) or mix two runs in one, so it is refused, naming each key with both values.
What only changes how the run is carried out, logged or how long it goes on is free (loggers, callbacks,
paths, ``trainer.max_steps``, ``validations``, ``NEUTRAL``). ``resume.allow_changes=[KEY,...]`` lets a change
one means go through (each key with everything under it), logged in train.log, except under ``RESTORED``,
which the checkpoint overrides whatever the config says.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import lightning as L

from unet_upsampling.checkpoint import CONFIG_KEY, read_checkpoint
from unet_upsampling.errors import CheckpointError, ConfigError

log = logging.getLogger(__name__)
# Keys (each with everything under it) whose value shapes what a run computes.
SHAPING = (
    "model",
    "upsample",
    "data",
    "task",
    "seed",
    "trainer.accumulate_grad_batches",
    "trainer.gradient_clip_val",
    "trainer.gradient_clip_algorithm",
    "trainer.precision",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.limit_train_batches",
    "trainer.overfit_batches",
)
# Within them, how the run is carried out (loading, memory layout, compilation), never what it computes.
NEUTRAL = (
    "data.num_workers",
    "data.pin_memory",
    "data.eval_batch_size",
    "data.class_names",
    "data.source.cache",
    "data.source.download",
    "model.channels_last",
    "model.compile",
    "model.compile_mode",
)
# Restored from the checkpoint whatever this run's config says: a change there cannot apply.
RESTORED = ("model", "upsample", "task.optimizer", "task.scheduler")
ABSENT = "(absent)"


def newest(paths: list[Path]) -> Path | None:
    return max(paths, key=lambda p: p.stat().st_mtime) if paths else None


def resume_path(ckpt_path: str | None, run_dir: Path) -> Path | None:
    """The checkpoint a run resumes from: ``ckpt_path``, ``last`` for the run directory's last.ckpt, or,
    in a SLURM job that was requeued (SLURM_RESTART_COUNT > 0), the newest checkpoint the job left."""
    if ckpt_path is None:
        if int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > 0:
            found = newest([*run_dir.glob("hpc_ckpt_*.ckpt"), *run_dir.glob("checkpoints/last.ckpt")])
            if found:
                log.info("requeued SLURM job (restart %s): resuming from %s", os.environ["SLURM_RESTART_COUNT"], found)
            return found
        return None
    if str(ckpt_path) == "last":
        last = run_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            raise CheckpointError(
                f"ckpt_path=last: {last} does not exist. Point hydra.run.dir at the directory of the run to resume "
                f"(it holds checkpoints/last.ckpt), or pass ckpt_path=<file>"
            )
        return last
    return Path(ckpt_path).expanduser()


def under(key: str, prefixes: Iterable[str]) -> bool:
    """Whether ``key`` is one of ``prefixes`` or lies under one (``data.source.root`` under ``data``)."""
    return any(key == prefix or key.startswith(f"{prefix}.") for prefix in prefixes)


def flattened(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"data.source.root": ...}`` for every leaf of a nested config (a list is one value)."""
    out = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        out |= flattened(value, f"{name}.") if isinstance(value, Mapping) and value else {name: value}
    return out


def changed_settings(stored: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Each key that shapes the run (``SHAPING`` but ``NEUTRAL``) whose value differs: (stored, current), ABSENT where
    one config lacks it."""
    old, new = flattened(stored), flattened(current)
    keys = sorted(key for key in old.keys() | new.keys() if under(key, SHAPING) and not under(key, NEUTRAL))
    pairs = {key: (old.get(key, ABSENT), new.get(key, ABSENT)) for key in keys}
    return {key: (a, b) for key, (a, b) in pairs.items() if a != b or type(a) is not type(b)}


def check_resumable(stored: Mapping[str, Any], current: Mapping[str, Any], source: str) -> None:
    """Refuses (ConfigError) a resume whose config changes what shapes the run, unless ``resume.allow_changes`` names
    the change; an allowed change is logged."""
    allowed = list((current.get("resume") or {}).get("allow_changes") or [])
    restored = [key for key in allowed if under(key, RESTORED) or any(under(r, [key]) for r in RESTORED)]
    if restored:
        raise ConfigError(
            f"resume.allow_changes={allowed}: {', '.join(restored)} cannot change on resume: the checkpoint's "
            f"weights, optimiser and schedule are restored as they were stored, whatever the config says. Train "
            f"afresh without ckpt_path to change them"
        )
    changes = changed_settings(stored, current)
    refused = {key: values for key, values in changes.items() if not under(key, allowed)}
    if refused:
        lines = "\n".join(f"  - {key}: {old!r} in the checkpoint, {new!r} now" for key, (old, new) in refused.items())
        allowable = [key for key in refused if not under(key, RESTORED)]
        allow = f", or, for a change you mean, resume.allow_changes=[{','.join(allowable)}]" if allowable else ""
        fixed = [key for key in refused if under(key, RESTORED)]
        restore = f" ({', '.join(fixed)}: restored from the checkpoint, never changed on resume)" if fixed else ""
        raise ConfigError(
            f"{source} was written with other settings than this run's:\n{lines}\nA resumed run goes on from the "
            f"checkpoint's weights, optimiser state and data position, so these would not apply as its config says. "
            f"Resume with the settings of the run that wrote it (its .hydra/overrides.yaml), train afresh without "
            f"ckpt_path{restore}{allow}"
        )
    for key, (old, new) in changes.items():
        log.warning("resume.allow_changes: %s changes from %r (the checkpoint's) to %r", key, old, new)


def resume_from(ckpt_path: str | None, run_dir: Path, config: Mapping[str, Any]) -> tuple[Path | None, int | None]:
    """The checkpoint a run with ``config`` resumes from (``resume_path``) and its step, read and checked
    (``read_checkpoint``, ``check_resumable``); (None, None) for a fresh run."""
    path = resume_path(ckpt_path, run_dir)
    if path is None:
        return None, None
    checkpoint = read_checkpoint(path)
    check_resumable(checkpoint[CONFIG_KEY], config, str(path))
    return path, checkpoint["global_step"]


def count_the_last_epoch(trainer: L.Trainer) -> None:
    """After ``trainer.fit``: a run resumed at its last step (``max_steps`` reached) trains nothing, and Lightning then
    skips its fit loop, which would have counted the epoch the checkpoint was written in as ended, as the end of the
    uninterrupted run did; ``trainer.current_epoch`` (metrics.json's ``epoch``) would stay one short."""
    loop = trainer.fit_loop
    if loop.restarting and 0 <= loop.max_steps <= trainer.global_step:
        loop.epoch_progress.increment_completed()
