"""The entry points end to end, in subprocesses, as a user runs them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from conftest import SHARED_DATA, TINY, UPSAMPLE_MODES, read_metrics, run_entry


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """Two short epochs of the tiny default configuration."""
    run_dir = tmp_path_factory.mktemp("trained")
    run_entry("train.py", *TINY, "trainer.max_epochs=2", f"hydra.run.dir={run_dir}", cwd=run_dir)
    return run_dir


@pytest.mark.parametrize("mode", UPSAMPLE_MODES)
def test_fast_dev_run_every_mode(mode, tmp_path):
    result = run_entry(
        "train.py", f"upsample={mode}", "trainer.fast_dev_run=true", *TINY, f"hydra.run.dir={tmp_path}", cwd=tmp_path
    )
    metrics = read_metrics(tmp_path)
    assert {"val/dice", "val/iou", "val/dice_c0", "val/dice_c1", "val/iou_c1", "test/dice"} <= metrics.keys()
    assert result.stdout.rstrip().splitlines()[-1] == f"run directory: {tmp_path}"
    assert f"upsample={mode}" in result.stdout


def test_trained_run_writes_metrics_checkpoints_and_figure(trained_run):
    metrics = read_metrics(trained_run)
    assert metrics["epoch"] == 2 and metrics["global_step"] == 4
    assert 0 <= metrics["val/dice"] <= 1 and metrics["val/dice"] == pytest.approx(
        (metrics["val/dice_c0"] + metrics["val/dice_c1"]) / 2
    )
    assert Path(metrics["best_checkpoint"]).is_file()
    assert (trained_run / "checkpoints" / "last.ckpt").is_file()
    assert (trained_run / "predictions.png").stat().st_size > 10_000
    assert (trained_run / "csv" / "metrics.csv").read_text().count("\n") > 2


def test_multirun_makes_one_directory_per_mode(tmp_path):
    run_entry(
        "train.py",
        "-m",
        "upsample=deconv,nearest_conv",
        "trainer.fast_dev_run=true",
        *TINY,
        f"hydra.sweep.dir={tmp_path}",
        cwd=tmp_path,
    )
    runs = sorted(p.parent for p in tmp_path.glob("*/metrics.json"))
    assert [p.name for p in runs] == ["0", "1"]
    assert ["upsample=deconv" in OmegaConf.load(p / ".hydra" / "overrides.yaml") for p in runs] == [True, False]
    assert ["upsample=nearest_conv" in OmegaConf.load(p / ".hydra" / "overrides.yaml") for p in runs] == [False, True]


def test_resume_from_last_checkpoint_continues_epoch_count(trained_run, tmp_path):
    last = trained_run / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=False)["epoch"] == 1
    result = run_entry(
        "train.py", *TINY, "trainer.max_epochs=3", f"ckpt_path={last}", f"hydra.run.dir={tmp_path}", cwd=tmp_path
    )
    assert "Restored all states from the checkpoint" in result.stdout + result.stderr
    metrics = read_metrics(tmp_path)
    assert metrics["epoch"] == 3 and metrics["global_step"] == 6  # one more epoch of 2 steps, not three


def test_eval_writes_metrics_of_the_checkpoint(trained_run, tmp_path):
    trained = read_metrics(trained_run)
    run_entry(
        "eval.py", f"ckpt_path={trained['best_checkpoint']}", *TINY[4:], f"hydra.run.dir={tmp_path}", cwd=tmp_path
    )
    evaluated = read_metrics(tmp_path)
    assert evaluated["val/dice"] == pytest.approx(trained["val/dice"], abs=1e-6)
    assert evaluated["test/iou_c1"] == pytest.approx(trained["test/iou_c1"], abs=1e-6)


def test_predict_writes_one_mask_per_image_any_size(trained_run, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name, (h, w) in {"a": (37, 53), "b": (64, 64), "c": (101, 29)}.items():
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (h, w), np.uint8)).save(inputs / f"{name}.png")
    run_entry(
        "predict.py",
        f"ckpt_path={trained_run / 'checkpoints' / 'last.ckpt'}",
        f"input={inputs}",
        f"output={tmp_path / 'out'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )
    for name, size in {"a": (37, 53), "b": (64, 64), "c": (101, 29)}.items():
        mask = np.asarray(Image.open(tmp_path / "out" / f"{name}.png"))
        assert mask.shape == size and set(np.unique(mask)) <= {0, 1}


def test_folder_data_trains_and_validates_on_full_odd_sized_images(folder_binary_255, tmp_path):
    run_entry(
        "train.py",
        "data=folder",
        f"data.root={folder_binary_255}",
        "data.mask_values={0:0,255:1}",
        "data.crop_size=32",
        "data.batch_size=2",
        "model.depth=3",
        "model.base_channels=4",
        "trainer.max_epochs=1",
        f"hydra.run.dir={tmp_path}",
        cwd=tmp_path,
    )
    metrics = read_metrics(tmp_path)
    assert metrics["global_step"] == 2  # 5 train images, batches of 2, last partial batch dropped
    assert "test/dice" not in metrics  # no test split in a flat folder


ISBI = SHARED_DATA / "isbi2012-membrane"
MEMBRANE_DICE_THRESHOLD = 0.6  # predicting "membrane" everywhere scores about 0.36


@pytest.mark.skipif(not ISBI.is_dir(), reason=f"{ISBI} is absent")
def test_short_training_on_isbi_membranes(tmp_path):
    run_entry(
        "train.py",
        "data=isbi2012",
        f"data.root={ISBI}",
        "data.crop_size=128",
        "data.batch_size=4",
        "model.depth=3",
        "model.base_channels=8",
        "trainer.max_steps=80",
        "trainer.max_epochs=-1",
        "trainer.val_check_interval=40",
        "trainer.check_val_every_n_epoch=null",
        f"hydra.run.dir={tmp_path}",
        cwd=tmp_path,
    )
    assert read_metrics(tmp_path)["val/dice_c1"] > MEMBRANE_DICE_THRESHOLD
