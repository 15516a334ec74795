"""A run's job: its config however it was composed, where it resumes from, and its story in train.log."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from unet_upsampling.errors import CheckpointError

log = logging.getLogger(__name__)


@contextmanager
def job_context(cfg: DictConfig) -> Iterator[DictConfig]:
    """The job's config without a ``hydra`` node, with the values that come from Hydra's runtime filled.

    Under ``@hydra.main`` it is the config as given. From ``compose(..., return_hydra_config=True)``
    the ``hydra`` node serves ``${hydra:...}`` (the run directory is ``hydra.run.dir``) while the
    context lasts; so does the node a caller gave to ``HydraConfig().set_config(cfg)`` before deleting it
    from the config (as lightning-hydra-template's tests do). From a plain ``compose(...)`` the run
    directory is ``<paths.log_dir>/<experiment_name>/runs/<time>`` and ``upsample_name`` the block's
    class name.
    """
    hydra_config = HydraConfig.instance()
    previous = hydra_config.cfg
    cfg = cfg.copy()
    with open_dict(cfg):
        if "hydra" not in cfg and previous is not None and OmegaConf.is_missing(previous.hydra.runtime, "output_dir"):
            cfg.hydra = previous.hydra  # set by the caller, not by a Hydra app: filled below as for compose()
        if "hydra" in cfg:
            hydra_config.set_config(cfg)  # first: hydra.run.dir may itself use ${hydra:...}
            if OmegaConf.is_missing(cfg.hydra.runtime, "output_dir"):
                with read_write(cfg.hydra):
                    cfg.hydra.runtime.output_dir = str(cfg.hydra.run.dir)
            hydra_config.set_config(cfg.copy())
            del cfg["hydra"]
        elif previous is None:
            stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
            cfg.paths.output_dir = f"{cfg.paths.log_dir}/{cfg.experiment_name}/runs/{stamp}"
            if "upsample" in cfg:
                cfg.upsample_name = str(OmegaConf.select(cfg, "upsample._target_")).rsplit(".", 1)[-1]
    try:
        yield cfg
    finally:
        hydra_config.cfg = previous


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


def class_shares(dataset, num_classes: int, limit: int = 200) -> tuple[np.ndarray, int]:
    """Pixel share of each class over up to ``limit`` masks spread evenly over ``dataset``, and that number."""
    picks = np.unique(np.linspace(0, len(dataset) - 1, min(limit, len(dataset))).astype(int))
    counts = np.zeros(num_classes)
    for i in picks:
        mask = np.asarray(dataset[int(i)][1]).ravel()
        counts += np.bincount(mask[(mask >= 0) & (mask < num_classes)], minlength=num_classes)[:num_classes]
    return counts / max(counts.sum(), 1), len(picks)


def describe_run(cfg: DictConfig, datamodule, task, resume: Path | None, resume_step: int | None = None) -> None:
    """train.log: overrides, the data (split sizes, image sizes, class shares), the network."""
    if HydraConfig.initialized():
        hydra = HydraConfig.get()
        log.info("overrides: %s", " ".join(hydra.overrides.task) or "(none)")
        saved = Path(cfg.paths.output_dir) / str(hydra.output_subdir) / "config.yaml"
        if hydra.output_subdir is not None and saved.is_file():  # written by @hydra.main, not by compose()
            log.info("full config: %s", saved)
    log.info(
        "run directory: %s%s",
        cfg.paths.output_dir,
        f" (resuming from {resume} at step {resume_step})" if resume else "",
    )
    raw = datamodule.raw
    log.info("data: %s", ", ".join(f"{name} {len(ds)} images" for name, ds in raw.items()))
    for name, dataset in raw.items():
        sizes = sorted(set(getattr(dataset, "sizes", {}).values()))
        if sizes:
            shown = ", ".join(f"{h}x{w}" for h, w in sizes[:4]) + (
                f" (+{len(sizes) - 4} more)" if len(sizes) > 4 else ""
            )
            log.info("data: %s image sizes %s", name, shown)
    shares, used = class_shares(raw["train"], datamodule.num_classes)
    log.info(
        "data: classes (pixel share of %d training masks): %s",
        used,
        ", ".join(f"{n} {s:.1%}" for n, s in zip(datamodule.class_names, shares, strict=True)),
    )
    params = sum(p.numel() for p in task.net.parameters())
    trainable = sum(p.numel() for p in task.net.parameters() if p.requires_grad)
    log.info(
        "network: %s, upsample=%s, %s parameters (%s trainable)",
        type(task.net).__name__,
        cfg.upsample_name,
        f"{params:,}",
        f"{trainable:,}",
    )
