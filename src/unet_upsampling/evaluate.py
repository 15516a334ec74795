"""``python eval.py ckpt_path=... [data=...]``: validate (and test) a checkpoint, write metrics.json."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from unet_upsampling.builders import build_callbacks, build_datamodule, build_trainer
from unet_upsampling.checkpoint import load_checkpoint
from unet_upsampling.checks import check_run
from unet_upsampling.errors import ConfigError
from unet_upsampling.jobs import job_context
from unet_upsampling.summary import print_summary, write_metrics


def evaluate(cfg: DictConfig) -> dict[str, float]:
    with job_context(cfg) as job:
        return run(job)


def run(cfg: DictConfig) -> dict[str, float]:
    task, _ = load_checkpoint(cfg.ckpt_path)
    datamodule = build_datamodule(cfg)
    if task.num_classes != datamodule.num_classes:
        raise ConfigError(
            f"the checkpoint predicts {task.num_classes} classes but data.num_classes="
            f"{datamodule.num_classes}: set data.num_classes={task.num_classes}, or evaluate on the data it was "
            f"trained for"
        )
    check_run(datamodule, task.net)
    trainer = build_trainer(cfg, build_callbacks(cfg), [])
    metrics = trainer.validate(task, datamodule=datamodule, verbose=False)[0]
    if datamodule.has_test:
        metrics |= trainer.test(task, datamodule=datamodule, verbose=False)[0]
    metrics["checkpoint"] = str(cfg.ckpt_path)
    if trainer.is_global_zero:
        run_dir = Path(cfg.paths.output_dir)
        path = write_metrics(run_dir / "metrics.json", metrics)
        print_summary(
            f"eval: {cfg.ckpt_path}", metrics, {"metrics": path, "run directory": run_dir}, datamodule.class_names
        )
    return metrics


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
