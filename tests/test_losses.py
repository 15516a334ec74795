"""Losses as Hydra targets (configs/task/loss/): what they compute, the ignore index, and the checkpoint boundary."""

from __future__ import annotations

import sys
from importlib.resources import files

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import OmegaConf

from unet_upsampling.builders import build_task
from unet_upsampling.errors import ConfigError
from unet_upsampling.trust import rebuild_task

from conftest import compose_config

LOSSES = ("ce", "dice", "ce_dice", "focal", "lovasz")
IGNORE = 255


def batch(ignore_index: int = IGNORE) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (2, 3, 4, 4) and a mask with every class present and three ignored pixels."""
    logits = torch.linspace(-2, 2, 2 * 3 * 4 * 4).reshape(2, 3, 4, 4).sin() * 3
    mask = torch.arange(2 * 4 * 4).reshape(2, 4, 4) % 3
    mask[0, 0, :3] = ignore_index
    return logits, mask


def loss(name: str, ignore_index: int = IGNORE):
    cfg = compose_config("train", [f"task/loss={name}", f"data.ignore_index={ignore_index}"])
    return instantiate(cfg.task.loss)


def test_the_ce_loss_is_torchs_cross_entropy_with_the_ignore_index():
    logits, mask = batch()
    assert torch.equal(loss("ce")(logits, mask), F.cross_entropy(logits, mask, ignore_index=IGNORE))


def test_the_default_loss_is_ce_plus_the_soft_dice_of_earlier_versions():
    """The default run's loss: cross-entropy + 1 - mean_c (2 sum p t + 1) / (sum p + sum t + 1), ignored pixels
    out (the formula of the hand-written loss it replaces, equal where every class is in the batch)."""
    assert compose_config("train").task.loss.losses[1]._target_ == "segmentation_models_pytorch.losses.DiceLoss"
    logits, mask = batch()
    valid = (mask != IGNORE).unsqueeze(1)
    probs = logits.softmax(1) * valid
    onehot = F.one_hot(mask.where(valid[:, 0], 0), 3).movedim(-1, 1) * valid
    dice = (2 * (probs * onehot).sum((0, 2, 3)) + 1) / (probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3)) + 1)
    expected = F.cross_entropy(logits, mask, ignore_index=IGNORE) + 1 - dice.mean()
    default = build_task(compose_config("train", [f"data.ignore_index={IGNORE}"])).loss_fn
    torch.testing.assert_close(default(logits, mask), expected)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("ignore_index", [IGNORE, -100])
def test_every_loss_leaves_ignored_pixels_out_and_trains(name, ignore_index):
    """The task's ignore index reaches the loss: the logits at ignored pixels change neither value nor gradient."""
    logits, mask = batch(ignore_index)
    fn = loss(name, ignore_index)
    changed = logits.clone()
    changed[0, :, 0, :3] = torch.tensor([9.0, -9.0, 0.0]).view(3, 1)
    logits.requires_grad_(True)
    value = fn(logits, mask)
    value.backward()
    assert torch.isfinite(value) and value > 0
    torch.testing.assert_close(fn(changed, mask), value.detach())
    assert logits.grad[0, :, 0, :3].abs().max() == 0 and logits.grad.abs().sum() > 0


def test_a_loss_named_as_a_string_is_refused_with_the_group_syntax():
    with pytest.raises(ConfigError, match=r"task\.loss='focal': the loss is a config group now: task/loss=focal"):
        build_task(compose_config("train", ["task.loss=focal"]))


def test_a_loss_class_can_be_named_on_the_command_line():
    cfg = compose_config("train", ["task/loss=ce", "task.loss._target_=segmentation_models_pytorch.losses.JaccardLoss"])
    with pytest.raises(Exception, match="mode"):  # JaccardLoss needs mode=: the class is reached and called
        build_task(cfg)
    cfg = compose_config(
        "train", ["task/loss=dice", "task.loss._target_=segmentation_models_pytorch.losses.JaccardLoss"]
    )
    assert type(build_task(cfg).loss_fn).__name__ == "JaccardLoss"


STORED = {
    "model": {
        "_target_": "unet_upsampling.models.UNet",
        "depth": 2,
        "base_channels": 4,
        "num_classes": 2,
        "upsample": {"_target_": "unet_upsampling.models.upsample.TransposedConv", "_partial_": True},
    },
    "task": {"_target_": "unet_upsampling.task.SegmentationTask", "num_classes": 2},
}


@pytest.mark.parametrize(
    "stored",
    [
        {"_target_": "os.system", "command": "touch {marker}"},
        {"_target_": "planted_loss.Loss"},
        {"_target_": "unet_upsampling.losses.SumLoss", "losses": [{"_target_": "planted_loss.Loss"}]},
        "planted_loss",
    ],
)
def test_a_stored_loss_other_than_the_shipped_ones_is_never_imported_or_called(stored, tmp_path, monkeypatch):
    """Inference needs no loss: a checkpoint's task.loss naming anything else is dropped before any import."""
    marker = tmp_path / "pwned"
    (tmp_path / "planted_loss.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\nLoss = dict\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    if isinstance(stored, dict) and "command" in stored:
        stored = {**stored, "command": stored["command"].format(marker=marker)}
    task = rebuild_task({**STORED, "task": {**STORED["task"], "loss": stored}}, "x.ckpt")
    assert task.loss_fn is None and not marker.exists() and "planted_loss" not in sys.modules


@pytest.mark.parametrize("name", LOSSES)
def test_a_checkpoints_shipped_loss_is_rebuilt_as_trained_and_old_names_still_load(name):
    """eval.py measures the loss train.py measured: the stored (resolved) config, or an old checkpoint's name."""
    cfg = compose_config("train", [f"task/loss={name}", f"data.ignore_index={IGNORE}"])
    stored = OmegaConf.to_container(cfg.task.loss, resolve=True)
    logits, mask = batch()
    expected = instantiate(cfg.task.loss)(logits, mask)
    for loss in (stored, name):
        task = rebuild_task({**STORED, "task": {**STORED["task"], "ignore_index": IGNORE, "loss": loss}}, "x.ckpt")
        torch.testing.assert_close(task.loss_fn(logits, mask), expected)


def test_the_optuna_search_chooses_among_shipped_losses():
    params = OmegaConf.load(files("unet_upsampling.configs") / "hparams_search" / "optuna.yaml").hydra.sweeper.params
    choices = params["task/loss"].removeprefix("choice(").removesuffix(")").split(", ")
    assert choices == ["ce", "dice", "ce_dice"] and all(loss(name) for name in choices)
