"""``python train.py [overrides]``: validate at init, fit, validate the best checkpoint, test, write metrics.json."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from unet_upsampling.checkpoint import StoreConfig, build_module
from unet_upsampling.checks import check_run
from unet_upsampling.distributed import adopt_rank_zero_job, end_job, share_job
from unet_upsampling.summary import print_summary, write_metrics


def train(cfg: DictConfig) -> dict[str, Any]:
    """One run described by ``cfg``; returns what it writes to ``metrics.json``."""
    L.seed_everything(cfg.seed, workers=True)
    launcher_env = share_job(cfg.paths.output_dir)  # DDP children join this job (distributed.py)
    config = OmegaConf.to_container(cfg, resolve=True)
    datamodule = instantiate(cfg.data)
    module = build_module(config)
    check_run(datamodule, module.net)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()] + [StoreConfig(config)]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values()]
    trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    metrics = {}
    if cfg.ckpt_path is None:  # the artifacts of the untrained network (Odena et al. 2016), as init/...
        initial = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
        metrics |= {key.replace("val/", "init/", 1): value for key, value in initial.items()}
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    train_time = time.perf_counter() - start
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    metrics |= trainer.validate(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)[0]
    if cfg.test and datamodule.has_test:
        metrics |= trainer.test(module, datamodule=datamodule, ckpt_path=best or None, verbose=False)[0]
    metrics |= {
        "params": sum(p.numel() for p in module.net.parameters()),
        "trainable_params": sum(p.numel() for p in module.net.parameters() if p.requires_grad),
        "train_time_s": train_time,
        "epoch": trainer.current_epoch,
        "global_step": trainer.global_step,
        "best_checkpoint": best or None,
    }
    if trainer.is_global_zero:
        run_dir = Path(cfg.paths.output_dir)
        path = write_metrics(run_dir / "metrics.json", metrics)
        print_summary(
            f"{cfg.task_name}: upsample={cfg.upsample_name}, seed={cfg.seed}",
            metrics,
            {"best checkpoint": best or "none (checkpointing off)", "metrics": path, "run directory": run_dir},
        )
    end_job(launcher_env)
    return metrics


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def _main(cfg: DictConfig) -> float | None:
    """Returns ``cfg.optimized_metric`` for Hydra sweepers."""
    return train(cfg).get(cfg.get("optimized_metric"))


def main(cfg: DictConfig | None = None) -> float | None:
    """The entry point; a DDP process started by rank 0 runs rank 0's job, not its argv (distributed.py)."""
    if cfg is None:
        adopt_rank_zero_job()
    return _main(cfg)


if __name__ == "__main__":
    main()
