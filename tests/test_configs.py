"""Every config group option composes, and the parts it describes instantiate."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from unet_upsampling.builders import build_task
from unet_upsampling.checks import check_config
from unet_upsampling.data import SegmentationDataModule
from unet_upsampling.errors import ConfigError
from unet_upsampling.task import SegmentationTask

from conftest import CONFIGS, TINY, UPSAMPLE_MODES, compose_config, run_app


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
            continue  # trainer=gpu needs a GPU; tests/test_gpu_settings.py checks its composed values
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


def test_help_lists_only_the_groups_a_user_picks_from(tmp_path, monkeypatch, capsys):
    assert run_app("train.py", "--help", cwd=tmp_path, monkeypatch=monkeypatch) == 0
    groups = capsys.readouterr().out.split("== Configuration groups ==")[1].split("== Config ==")[0]
    listed = {line.split(":")[0] for line in groups.splitlines() if ": " in line}
    assert {"data", "model", "upsample", "trainer", "task/loss"} <= listed
    assert {name for name in listed if "/" in name} == {"task/loss"}, groups  # data/base, data/transforms were listed


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.max_steps=0", "trainer.max_steps=0 trains nothing: give a positive number"),
        ("trainer.max_epochs=0", "trainer.max_epochs=0 trains nothing: give a positive number"),
    ],
)
def test_a_run_that_would_train_nothing_is_refused(override, message, tmp_path, monkeypatch, capsys):
    with pytest.raises(ConfigError, match=message):
        check_config(compose_config("train", [override]))
    code = run_app("train.py", *TINY, override, f"hydra.run.dir={tmp_path}", cwd=tmp_path, monkeypatch=monkeypatch)
    err = capsys.readouterr().err
    assert code == 1 and message in err and "Traceback" not in err and not (tmp_path / "metrics.json").exists()


DDP_TARGET = "{_target_:lightning.pytorch.strategies.DDPStrategy"


@pytest.mark.parametrize(
    "strategy, method",
    [
        ("ddp_spawn", "spawn"),
        ("ddp_fork", "fork"),
        ("ddp_notebook", "fork"),
        ("ddp_spawn_find_unused_parameters_true", "spawn"),
        (DDP_TARGET + ",start_method:forkserver}", "forkserver"),
    ],
)
def test_strategies_of_lightning_s_multiprocessing_launcher_are_refused_by_start_method(strategy, method):
    """Refused for what they are (processes that never report back to train.py), whatever their name."""
    with pytest.raises(ConfigError, match=rf"trainer\.strategy=.* starts its processes with {method}: such processes"):
        check_config(compose_config("train", [f"trainer.strategy={strategy}"]))


@pytest.mark.parametrize("strategy", ["auto", "ddp", "ddp_find_unused_parameters_true", DDP_TARGET + "}", "fsdp"])
def test_strategies_that_start_train_py_again_pass(strategy):
    check_config(compose_config("train", [f"trainer.strategy={strategy}"]))
