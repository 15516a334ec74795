"""Every config group option composes, and the parts it describes instantiate."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from unet_upsampling.builders import build_task
from unet_upsampling.data import SegmentationDataModule
from unet_upsampling.task import SegmentationTask

from conftest import CONFIGS, UPSAMPLE_MODES, compose_config


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIGS / group).glob("*.yaml"))


@pytest.mark.parametrize("mode", UPSAMPLE_MODES)
def test_train_config_instantiates_with_every_upsample_mode(mode):
    cfg = compose_config("train", [f"upsample={mode}"])
    assert cfg.upsample_name == mode
    module = build_task(OmegaConf.to_container(cfg, resolve=True))
    assert isinstance(module, SegmentationTask)
    assert (
        module.net.decoder.upsample[0].__class__.__name__
        == OmegaConf.select(cfg, "upsample._target_").rsplit(".", 1)[1]
    )


@pytest.mark.parametrize("data", options("data"))
def test_every_data_option_instantiates(data, tmp_path):
    cfg = compose_config("train", [f"data={data}", f"data.source.root={tmp_path}"] if data != "synthetic" else [])
    datamodule = instantiate(cfg.data)
    assert isinstance(datamodule, SegmentationDataModule)
    assert cfg.model.num_classes == datamodule.num_classes


@pytest.mark.parametrize("group", ["trainer", "callbacks", "logger"])
def test_every_trainer_callbacks_logger_option_instantiates(group, tmp_path):
    for option in options(group):
        cfg = compose_config("train", [f"{group}={option}", f"hydra.run.dir={tmp_path}"])
        if group == "trainer" and cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
            continue  # trainer=gpu needs a GPU; tests/test_benchmark.py checks its composed values
        if group == "trainer":
            assert isinstance(instantiate(cfg.trainer, logger=False), L.Trainer)
        else:
            assert all(instantiate(node) is not None for node in cfg[group].values())


@pytest.mark.parametrize("name", ["eval", "predict"])
def test_eval_and_predict_configs_compose(name):
    cfg = compose_config(name, ["ckpt_path=x.ckpt", "input=in", "output=out"] if name == "predict" else ["ckpt_path=x"])
    assert cfg.ckpt_path.startswith("x")


def test_trainer_overrides_reach_lightning():
    cfg = compose_config("train", ["trainer.max_steps=300", "trainer.fast_dev_run=true"])
    trainer = instantiate(cfg.trainer, logger=False)
    assert trainer.max_steps == 1 and trainer.fast_dev_run  # fast_dev_run caps steps at one batch
    assert instantiate(compose_config("train", ["trainer.max_steps=300"]).trainer, logger=False).max_steps == 300


def test_loss_option_and_unknown_loss():
    assert build_task(compose_config("train", ["task.loss=dice"])).loss_fn.__name__ == "soft_dice_loss"
    with pytest.raises(Exception, match=r"choose task\.loss=ce, dice, ce_dice"):
        build_task(compose_config("train", ["task.loss=focal"]))


@pytest.mark.parametrize("data", options("data"))
def test_the_study_takes_its_budget_from_the_chosen_dataset(data):
    """study_budget.<data> sets steps, crops, batch and validations; a dataset without an entry gets `default`."""
    cfg = compose_config("train", ["experiment=upsample_study", f"data={data}"])
    budget = cfg.study_budget.get(data, cfg.study_budget.default)
    assert (cfg.trainer.max_steps, cfg.data.crop_size, cfg.data.batch_size, cfg.validations) == (
        budget.steps,
        budget.crop_size,
        budget.batch_size,
        budget.validations,
    )
    # the budgets differ, so the lookup is by dataset, not one value for all
    assert len({(b.steps, b.validations) for b in cfg.study_budget.values()}) > 1
