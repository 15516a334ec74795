"""train.log's narrative: the run before it starts (overrides, data, network), then every validation and every
checkpoint written during fitting."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
import numpy as np
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig

from unet_upsampling.measures import LOG, line, measured, which_validation

log = logging.getLogger(__name__)


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


class RunLog(L.Callback):
    """Logs each validation's headline measures (``measures.LOG``, those it measured) and each checkpoint as it
    appears on disk.

    Lightning runs the checkpoint callbacks after all others, so a checkpoint written at a
    validation's end is logged at the next training batch (or when fitting ends).
    """

    def __init__(self) -> None:
        self.seen: dict[int, tuple] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        """Where training starts (step 0, or where a resumed run's checkpoint left it), and on which device."""
        device = trainer.strategy.root_device
        log.info("training from step %d (epoch %d) on %s", trainer.global_step, trainer.current_epoch, device)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        validation = which_validation(trainer, pl_module)
        shown = line(LOG, measured(trainer, pl_module))
        log.info("%s at step %d: %s", validation.label, validation.step, shown)

    def _checkpoints(self, trainer) -> None:
        """Logs each ModelCheckpoint's file once per write, at the step it was written (the current one: no
        optimiser step runs between a save and this hook). A write is a new path, or a new file at the same path
        (inode, modification time): Lightning keeps the step a callback last saved at only in a private attribute."""
        for callback in trainer.checkpoint_callbacks:
            if not isinstance(callback, ModelCheckpoint):
                continue
            paths = (callback.best_model_path, callback.last_model_path)
            state = (*paths, *map(written, paths))
            if state == self.seen.get(id(callback)) or not any(paths):
                continue
            self.seen[id(callback)] = state
            if callback.monitor and callback.best_model_path:
                score = callback.best_model_score
                best = "" if score is None else f" {float(score):.4g}"
                log.info("checkpoint: %s (best %s%s)", callback.best_model_path, callback.monitor, best)
            else:
                path = callback.last_model_path or callback.best_model_path
                log.info("checkpoint: %s (step %d)", path, trainer.global_step)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._checkpoints(trainer)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._checkpoints(trainer)


def written(path: str) -> tuple[int, int] | None:
    """Which file is at ``path`` (inode, modification time in ns), None when none: checkpoints are written to a
    temporary file renamed over the old one, so each write is a new file."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns
