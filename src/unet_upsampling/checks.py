"""Checks before any work: config values by key, then the parts of a run against each other."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from numbers import Number
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from unet_upsampling.errors import ConfigError, DataError, OutputError

# key: (lowest value, integer only, None allowed, an example of a good value)
VALUES = {
    "seed": (0, True, False, "seed=0"),
    "validations": (1, True, True, "validations=10"),
    "data.num_classes": (2, True, False, "data.num_classes=2"),
    "data.in_channels": (1, True, False, "data.in_channels=1"),
    "data.crop_size": (1, True, False, "data.crop_size=128"),
    "data.batch_size": (1, True, False, "data.batch_size=8"),
    "data.eval_batch_size": (1, True, False, "data.eval_batch_size=1"),
    "data.num_workers": (0, True, False, "data.num_workers=0"),
    "model.depth": (1, True, False, "model.depth=4"),
    "model.base_channels": (1, True, False, "model.base_channels=16"),
    "task.optimizer.lr": (None, False, False, "task.optimizer.lr=0.003"),
    "task.optimizer.weight_decay": (0, False, True, "task.optimizer.weight_decay=0.0001"),
    "trainer.max_steps": (-1, True, False, "trainer.max_steps=300"),
    "trainer.max_epochs": (-1, True, True, "trainer.max_epochs=20"),
    "trainer.accumulate_grad_batches": (1, True, False, "trainer.accumulate_grad_batches=1"),
    "trainer.log_every_n_steps": (1, True, False, "trainer.log_every_n_steps=8"),
    "trainer.gradient_clip_val": (0, False, True, "trainer.gradient_clip_val=1.0"),
}
POSITIVE = {"task.optimizer.lr"}


def value_problem(key: str, value: object) -> str | None:
    low, integer, nullable, example = VALUES[key]
    if value is None:
        return None if nullable else f"{key} must be set (e.g. {example})"
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else Number):
        return f"{key}={value!r} is not {kind} (e.g. {example})"
    if key in POSITIVE and not value > 0:
        return f"{key}={value} must be greater than 0 (e.g. {example})"
    if low is not None and value < low:
        return f"{key}={value} must be at least {low} (e.g. {example})"
    return None


def check_config(cfg: DictConfig) -> None:
    """One ConfigError listing every value that cannot work, by key, with an example of a good one."""
    problems = []
    for key in VALUES:
        node = OmegaConf.select(cfg, key, default="<absent>", throw_on_missing=False)
        if node != "<absent>":
            problems.append(value_problem(key, node))
    strategy = str(OmegaConf.select(cfg, "trainer.strategy", default="auto"))
    if "spawn" in strategy:
        problems.append(
            f"trainer.strategy={strategy}: spawned processes never hand their counters, callbacks and results back "
            f"to train.py, so metrics.json would report an untrained run; use trainer=ddp (processes started by "
            f"train.py itself, as Lightning's DDP does by default)"
        )
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        problems.append(
            f"trainer.accelerator={accelerator} but no CUDA GPU is visible on this machine: this configuration "
            f"needs a GPU; add trainer.accelerator=cpu for a (slow) smoke run on the CPU"
        )
    problems = [p for p in problems if p]
    if problems:
        raise ConfigError("bad config value(s):\n  - " + "\n  - ".join(problems))


def check_writable(directories: Iterable[str | Path]) -> None:
    """Creates each directory and writes a file in it, so an unwritable one fails now, named, not at the first save."""
    for directory in dict.fromkeys(Path(d) for d in directories):
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".write_test_"):
                pass
        except OSError as error:
            raise OutputError(
                f"cannot write to {directory} ({error.strerror or error}): make it writable, or choose another run "
                f"directory with hydra.run.dir=DIR (or LOG_DIR=DIR for all runs)"
            ) from None
        if not os.access(directory, os.W_OK):
            raise OutputError(f"cannot write to {directory}: make it writable or choose hydra.run.dir=DIR")


def check_run(datamodule, net) -> None:
    """Raises one error that names the settings and the fix, for the first inconsistency found."""
    if net.num_classes != datamodule.num_classes:
        raise ConfigError(
            f"model.num_classes={net.num_classes} but data.num_classes={datamodule.num_classes} (the "
            f"masks' classes): leave model.num_classes at its default, ${{data.num_classes}}"
        )
    if net.in_channels != datamodule.in_channels:
        raise ConfigError(
            f"model.in_channels={net.in_channels} but data.in_channels={datamodule.in_channels}: leave "
            f"model.in_channels at its default, ${{data.in_channels}}, or evaluate on data like the training data"
        )
    if datamodule.crop_size < net.min_size:
        raise ConfigError(
            f"data.crop_size={datamodule.crop_size} is smaller than {net.min_size} px, the smallest input "
            f"the network takes (2**model.depth): raise data.crop_size or lower model.depth"
        )
    datamodule.setup()
    small = [
        f"{path} ({h}x{w})"
        for name, dataset in datamodule.raw.items()
        if name != "train"
        for path, (h, w) in getattr(dataset, "sizes", {}).items()
        if min(h, w) < net.min_size
    ]
    if small:
        raise DataError(
            f"{len(small)} validation/test image(s) are smaller than {net.min_size} px on a side, the smallest "
            f"input the network takes (2**model.depth): {', '.join(small[:10])}"
            f"{' ...' if len(small) > 10 else ''}. Remove them or lower model.depth."
        )
