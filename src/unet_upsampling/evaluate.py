"""``python eval.py ckpt_path=... [data=...]``: validate (and test) a checkpoint, write metrics.json."""

from __future__ import annotations

from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from unet_upsampling.checkpoint import load_checkpoint
from unet_upsampling.summary import print_summary, write_metrics


def evaluate(cfg: DictConfig) -> dict[str, float]:
    module, _ = load_checkpoint(cfg.ckpt_path)
    datamodule = instantiate(cfg.data)
    if module.num_classes != datamodule.num_classes:
        raise ValueError(
            f"the checkpoint predicts {module.num_classes} classes but data.num_classes="
            f"{datamodule.num_classes}: set data.num_classes={module.num_classes}"
        )
    trainer = instantiate(cfg.trainer, logger=False, callbacks=[instantiate(cfg.progress_bar)])
    metrics = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    if datamodule.has_test:
        metrics |= trainer.test(module, datamodule=datamodule, verbose=False)[0]
    metrics["checkpoint"] = str(cfg.ckpt_path)
    if trainer.is_global_zero:
        run_dir = Path(cfg.paths.output_dir)
        path = write_metrics(run_dir / "metrics.json", metrics)
        print_summary(f"eval: {cfg.ckpt_path}", metrics, {"metrics": path, "run directory": run_dir})
    return metrics


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
