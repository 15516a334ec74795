"""Checks before any work: config values by key, then the parts of a run against each other."""

from __future__ import annotations

import inspect
import logging
import os
import tempfile
from collections.abc import Iterable
from numbers import Number
from pathlib import Path

import torch
from hydra.utils import get_class
from lightning.pytorch.strategies import StrategyRegistry
from omegaconf import DictConfig, OmegaConf

from unet_upsampling.errors import ConfigError, DataError, OutputError

log = logging.getLogger(__name__)

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
    "data.min_batches_per_epoch": (1, True, False, "data.min_batches_per_epoch=64"),
    "model.depth": (1, True, False, "model.depth=4"),
    "model.base_channels": (1, True, False, "model.base_channels=16"),
    "task.optimizer.lr": (None, False, False, "task.optimizer.lr=0.003"),
    "task.optimizer.weight_decay": (0, False, True, "task.optimizer.weight_decay=0.0001"),
    "trainer.max_steps": (-1, True, False, "trainer.max_steps=300"),
    "trainer.max_epochs": (-1, True, True, "trainer.max_epochs=3"),
    "trainer.accumulate_grad_batches": (1, True, False, "trainer.accumulate_grad_batches=1"),
    "trainer.log_every_n_steps": (1, True, False, "trainer.log_every_n_steps=8"),
    "trainer.gradient_clip_val": (0, False, True, "trainer.gradient_clip_val=1.0"),
}
POSITIVE = {"task.optimizer.lr"}
# 0 would train nothing and still write metrics.json (of the untrained network) and exit 0.
NONZERO = {"trainer.max_steps": "-1 for no step limit", "trainer.max_epochs": "-1 for no epoch limit"}
# Lightning's _MultiProcessingLauncher starts the processes of these DDP start methods; only popen re-runs train.py.
FORKED = ("spawn", "fork", "forkserver")
# key: the values it takes
CHOICES = {"eval_weights": ("best", "last"), "validate_at_init": (True, False)}
# /proc/cpuinfo flags of x86 CPUs with bfloat16 arithmetic: without one, oneDNN has no bf16 convolution and torch
# runs its reference kernels (training steps 13x slower than 32-true on an AMD EPYC of family 25 model 1:
# docs/performance.md).
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool | None:
    """Whether this CPU computes in bfloat16 (``BF16_FLAGS``); None where /proc/cpuinfo does not tell."""
    try:
        flags = set(Path(cpuinfo).read_text().split())
    except OSError:
        return None
    return any(flag in flags for flag in BF16_FLAGS) if "flags" in flags else None


def warn_precision(cfg: DictConfig) -> None:
    """A warning for ``trainer.precision=bf16-*`` on a CPU without bfloat16 arithmetic: it runs, many times slower."""
    precision = str(OmegaConf.select(cfg, "trainer.precision", default="32-true"))
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if precision.startswith("bf16") and on_cpu and cpu_has_bf16() is False:
        log.warning(
            "trainer.precision=%s on a CPU without bfloat16 arithmetic (no %s flag): training steps run many times "
            "slower than with trainer.precision=32-true",
            precision,
            " or ".join(BF16_FLAGS),
        )


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
    if key in NONZERO and value == 0:
        return f"{key}=0 trains nothing: give a positive number (e.g. {example}), or {NONZERO[key]}"
    return None


def start_method(strategy: object) -> str | None:
    """The process start method of a Lightning strategy: a registry name (``ddp_fork``, an alias such as
    ``ddp_spawn_find_unused_parameters_true``) or a ``_target_`` node; None when it has none."""
    if isinstance(strategy, DictConfig) and "_target_" in strategy:
        strategy_class, params = get_class(strategy._target_), strategy
    elif isinstance(strategy, str) and strategy in StrategyRegistry:
        entry = StrategyRegistry[strategy]
        strategy_class, params = entry["strategy"], entry["init_params"]
    else:
        return None
    if "start_method" in params:
        return str(params["start_method"])
    default = inspect.signature(strategy_class).parameters.get("start_method")
    return None if default is None else default.default


def strategy_problem(strategy: object) -> str | None:
    """Processes started by Lightning's multiprocessing launcher (spawn, fork, forkserver) hand nothing back."""
    method = start_method(strategy)
    if method not in FORKED:
        return None
    shown = strategy if isinstance(strategy, str) else OmegaConf.to_container(strategy)
    return (
        f"trainer.strategy={shown} starts its processes with {method}: such processes never hand their counters, "
        f"callbacks and results back to train.py, so metrics.json would report an untrained run; use trainer=ddp "
        f"(processes started by train.py itself, as Lightning's DDP does by default)"
    )


def data_root_problem(cfg: DictConfig) -> str | None:
    """A ``data.source.root`` that is not a folder (and is not to be downloaded), with where it comes from: the data
    presets' roots lie under ``paths.data_dir``, which the environment variable DATA_DIR sets."""
    root = OmegaConf.select(cfg, "data.source.root", default=None, throw_on_missing=False)
    download = OmegaConf.select(cfg, "data.source.download", default=None)
    if not isinstance(root, str) or Path(root).expanduser().is_dir() or download:
        return None
    problem = f"data.source.root={root} is not a directory"
    data_dir = Path(str(OmegaConf.select(cfg, "paths.data_dir", default="")))
    fetch = ", or data.source.download=true to fetch the data set there" if download is not None else ""
    if not Path(root).is_relative_to(data_dir):
        return f"{problem}: give data.source.root=DIR, the folder of your data{fetch}"
    where = (
        f"DATA_DIR={os.environ['DATA_DIR']} ({data_dir.absolute()})"
        if "DATA_DIR" in os.environ
        else f"DATA_DIR, which is not set: from {data_dir.absolute()}"
    )
    return (
        f"{problem}: the data presets read from {where}. Set DATA_DIR to the "
        f"folder that holds {Path(root).relative_to(data_dir)}/ (DATA_DIR=/path/to/data python ...), or "
        f"give the data's own folder as data.source.root=DIR{fetch}"
    )


def check_config(cfg: DictConfig) -> None:
    """One ConfigError listing every value that cannot work, by key, with an example of a good one."""
    problems = []
    for key in VALUES:
        node = OmegaConf.select(cfg, key, default="<absent>", throw_on_missing=False)
        if node != "<absent>":
            problems.append(value_problem(key, node))
    for key, choices in CHOICES.items():
        value = OmegaConf.select(cfg, key, default=choices[0])
        if value not in choices or isinstance(value, bool) != isinstance(choices[0], bool):
            problems.append(f"{key}={value!r} is not one of {', '.join(map(str, choices))} (e.g. {key}={choices[0]})")
    problems.append(data_root_problem(cfg))
    problems.append(strategy_problem(OmegaConf.select(cfg, "trainer.strategy", default="auto")))
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        problems.append(
            f"trainer.accelerator={accelerator} but no CUDA GPU is visible on this machine: this configuration "
            f"needs a GPU; add trainer.accelerator=cpu for a (slow) smoke run on the CPU"
        )
    problems = [p for p in problems if p]
    if problems:
        raise ConfigError("bad config value(s):\n  - " + "\n  - ".join(problems))
    warn_precision(cfg)


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
    sizes = datamodule.eval_sizes()
    small = [
        f"{split}: {name} ({h}x{w})"
        for split, named in sizes.items()
        for name, (h, w) in named.items()
        if min(h, w) < net.min_size
    ]
    if small:
        scaled = f" after data.scale={datamodule.scale}" if datamodule.scale != 1 else ""
        raise DataError(
            f"{len(small)} validation/test image(s) are smaller than {net.min_size} px on a side{scaled}, the "
            f"smallest input the network takes (2**model.depth): {listed_briefly(small)}. Lower model.depth, "
            f"{'raise data.scale, ' if scaled else ''}or use larger images (remove the small files; for synthetic "
            f"data raise data.source.size)."
        )
    if datamodule.eval_batch_size > 1:
        for split, shapes in sizes.items():
            distinct = sorted(set(shapes.values()))
            if len(distinct) > 1:
                raise ConfigError(
                    f"data.eval_batch_size={datamodule.eval_batch_size} but the {split} images have "
                    f"{len(distinct)} different sizes ({listed_briefly([f'{h}x{w}' for h, w in distinct])}), and a "
                    f"batch holds images of one size: set data.eval_batch_size=1"
                )


def listed_briefly(items: list[str], limit: int = 10) -> str:
    """The first ``limit`` items, comma-separated, then `...` if there are more."""
    return ", ".join(items[:limit]) + (" ..." if len(items) > limit else "")
