"""train.py, eval.py and predict.py. Hydra composes the config first, so a typo in an override (an unknown key,
group option or value type) is refused in about a second; torch and Lightning, several seconds to import (a minute
on a loaded machine), are imported for the job alone. Every call runs inside ``signals_deferred``
(signals.py)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from unet_upsampling.console import quiet_console
from unet_upsampling.distributed import adopt_rank_zero_job
from unet_upsampling.signals import signals_deferred


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def _train(cfg: DictConfig) -> float | None:
    from unet_upsampling.train import train_job

    return train_job(cfg)


@hydra.main(version_base="1.3", config_path="configs", config_name="eval")
def _evaluate(cfg: DictConfig) -> None:
    from unet_upsampling.evaluate import evaluate

    evaluate(cfg)


@hydra.main(version_base="1.3", config_path="configs", config_name="predict")
def _predict(cfg: DictConfig) -> None:
    from unet_upsampling.predict import predict

    predict(cfg)


def train(cfg: DictConfig | None = None) -> float | None:
    """train.py; a DDP process started by rank 0 runs rank 0's job, not its argv (distributed.py). Returns
    ``optimized_metric`` for Hydra's sweepers."""
    quiet_console()
    if cfg is None:
        adopt_rank_zero_job()
    with signals_deferred():
        return _train(cfg)


def evaluate() -> None:
    """eval.py: a signal while Hydra starts stops the evaluation at its first safe point."""
    quiet_console()
    with signals_deferred():
        _evaluate()


def predict() -> None:
    """predict.py: a signal while Hydra starts stops the prediction before its first image."""
    quiet_console()
    with signals_deferred():
        _predict()
