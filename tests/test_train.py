"""The entry points end to end, run in this process exactly as `python train.py ...` runs them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict
from PIL import Image

from unet_upsampling.builders import build_task
from unet_upsampling.checkpoint import CONFIG_KEY, load_checkpoint
from unet_upsampling.train import train, validation_schedule
from unet_upsampling.trust import rebuild_eval_transform

from conftest import SHARED_DATA, TINY, compose_config, grey_image, read_metrics, run_app, run_predict


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """Two short epochs of the tiny default configuration."""
    run_dir = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert (
            run_app(
                "train.py",
                *TINY,
                "trainer.max_epochs=2",
                f"hydra.run.dir={run_dir}",
                cwd=run_dir,
                monkeypatch=monkeypatch,
            )
            == 0
        )
    return run_dir


def test_a_fast_dev_run_ends_with_the_summary(tmp_path, monkeypatch, capsys):
    """Every mode runs the same path (tests/test_study.py sweeps them all); the console ends with the summary."""
    assert (
        run_app(
            "train.py",
            "upsample=deconv_k3",
            "trainer.fast_dev_run=true",
            *TINY,
            f"hydra.run.dir={tmp_path}",
            cwd=tmp_path,
            monkeypatch=monkeypatch,
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1] == f"run directory: {tmp_path}"
    assert "upsample=deconv_k3" in out and "flat_std" in out and "pef2" in out


def test_trained_run_writes_metrics_checkpoints_and_figure(trained_run):
    metrics = read_metrics(trained_run)
    assert metrics["epoch"] == 2 and metrics["global_step"] == 4
    assert 0 <= metrics["val/dice"] <= 1
    assert metrics["val/dice"] == pytest.approx((metrics["val/dice_c0"] + metrics["val/dice_c1"]) / 2)
    assert Path(metrics["best_checkpoint"]).is_file()
    assert (trained_run / "checkpoints" / "last.ckpt").is_file()
    assert (trained_run / "predictions.png").stat().st_size > 10_000
    assert (trained_run / "csv" / "metrics.csv").read_text().count("\n") > 2
    assert 0 < metrics["eval_time_s"] < metrics["train_time_s"]
    assert metrics["upsample_flat_at_init"] is False  # deconv: random transposed convolution


def test_the_prediction_figure_shows_the_best_checkpoints_predictions(trained_run):
    task, _ = load_checkpoint(read_metrics(trained_run)["best_checkpoint"])
    shown = np.load(trained_run / "predictions.npz")
    with torch.no_grad():
        preds = task(torch.from_numpy(shown["images"])).argmax(1).numpy()
    assert shown["images"].shape[0] == 4 and np.array_equal(shown["preds"], preds)


@pytest.mark.slow
def test_resume_from_last_checkpoint_continues_epoch_count(trained_run, tmp_path, monkeypatch, caplog):
    last = trained_run / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 1
    assert (
        run_app(
            "train.py",
            *TINY,
            "trainer.max_epochs=3",
            f"ckpt_path={last}",
            f"hydra.run.dir={tmp_path}",
            cwd=tmp_path,
            monkeypatch=monkeypatch,
        )
        == 0
    )
    assert "Restored all states from the checkpoint" in caplog.text
    metrics = read_metrics(tmp_path)
    assert metrics["epoch"] == 3 and metrics["global_step"] == 6  # one more epoch of 2 steps, not three
    assert metrics["init/dice"] == read_metrics(trained_run)["init/dice"]  # carried by the checkpoint


def test_eval_writes_metrics_of_the_checkpoint(trained_run, tmp_path, monkeypatch):
    trained = read_metrics(trained_run)
    assert (
        run_app(
            "eval.py",
            f"ckpt_path={trained['best_checkpoint']}",
            f"hydra.run.dir={tmp_path}",
            cwd=tmp_path,
            monkeypatch=monkeypatch,
        )
        == 0
    )
    evaluated = read_metrics(tmp_path)
    assert evaluated["val/dice"] == pytest.approx(trained["val/dice"], abs=1e-6)
    assert evaluated["test/iou_c1"] == pytest.approx(trained["test/iou_c1"], abs=1e-6)


def predict_random_images(checkpoint, sizes: dict, tmp_path, monkeypatch) -> dict:
    """Writes one random grey image per name and (h, w) into tmp_path/in, runs predict.py on them with
    checkpoint, and returns the masks it wrote by name."""
    for name, size in sizes.items():
        grey_image(tmp_path / "in" / f"{name}.png", size)
    assert run_predict(checkpoint, tmp_path, monkeypatch, f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}") == 0
    return {name: np.asarray(Image.open(tmp_path / "out" / f"{name}.png")) for name in sizes}


def test_predict_writes_one_mask_per_image_any_size(trained_run, tmp_path, monkeypatch):
    sizes = {"a": (37, 53), "b": (64, 64), "c": (101, 29)}
    masks = predict_random_images(trained_run / "checkpoints" / "last.ckpt", sizes, tmp_path, monkeypatch)
    for name, size in sizes.items():
        assert masks[name].shape == size and set(np.unique(masks[name])) <= {0, 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out"]  # no staging folder, no log folder left


def test_a_model_trained_at_half_size_predicts_at_half_size_and_writes_masks_of_the_inputs_size(
    trained_run, tmp_path, monkeypatch
):
    checkpoint = torch.load(trained_run / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint[CONFIG_KEY]["data"]["scale"] = 0.5
    torch.save(checkpoint, tmp_path / "half.ckpt")
    _, config = load_checkpoint(tmp_path / "half.ckpt")
    transform = rebuild_eval_transform(config, source="half.ckpt")
    assert transform(image=np.zeros((64, 96, 1), np.uint8))["image"].shape == (1, 32, 48)
    sizes = {"a": (67, 53), "b": (96, 64)}
    masks = predict_random_images(tmp_path / "half.ckpt", sizes, tmp_path, monkeypatch)
    assert {name: mask.shape for name, mask in masks.items()} == sizes


@pytest.mark.slow
def test_folder_data_trains_and_validates_on_full_odd_sized_images(folder_binary_255, tmp_path, monkeypatch):
    assert (
        run_app(
            "train.py",
            "data=folder",
            f"data.source.root={folder_binary_255}",
            "data.source.mask_values={0:0,255:1}",
            "data.crop_size=32",
            "data.batch_size=2",
            "data.min_batches_per_epoch=1",
            "model.depth=3",
            "model.base_channels=4",
            "trainer.max_epochs=1",
            f"hydra.run.dir={tmp_path}",
            cwd=tmp_path,
            monkeypatch=monkeypatch,
        )
        == 0
    )
    metrics = read_metrics(tmp_path)
    assert metrics["global_step"] == 2  # 5 train images, batches of 2, last partial batch dropped
    assert "test/dice" not in metrics  # no test split in a flat folder


@pytest.mark.parametrize("hydra_node", ["kept", "none", "set_then_deleted"])
def test_train_from_a_composed_config(hydra_node, tmp_path, monkeypatch):
    """The Python API: train(cfg) on a config from Hydra's compose API, with or without the hydra node, or as
    lightning-hydra-template's tests call it (the node given to HydraConfig, then deleted from the config)."""
    from hydra import compose, initialize_config_module
    from hydra.core.hydra_config import HydraConfig

    monkeypatch.setenv("LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # a fresh Python session: no Hydra job around
    with initialize_config_module("unet_upsampling.configs", version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                *TINY,
                "trainer.max_steps=2",
                "validations=1",
                "test=false",
                f"hydra.run.dir={tmp_path / 'run'}",
            ],
            return_hydra_config=hydra_node != "none",
        )
    if hydra_node == "set_then_deleted":
        HydraConfig().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]
    metrics = train(cfg)
    run_dir = tmp_path / "run" if hydra_node != "none" else next((tmp_path / "logs" / "train" / "runs").iterdir())
    assert read_metrics(run_dir) == json.loads(json.dumps(metrics, default=float)) | {
        k: None for k, v in metrics.items() if isinstance(v, float) and v != v
    }
    assert metrics["global_step"] == 2 and "init/dice" in metrics and "val/dice" in metrics


@pytest.mark.slow
def test_step_cadence_validates_every_n_steps_across_epochs(tmp_path, monkeypatch):
    """validations=3 over 12 steps of 2-step epochs: validations at steps 4, 8 and 12, not every epoch."""
    overrides = [*TINY, "trainer.max_steps=12", "trainer.max_epochs=-1", "validations=3", "test=false"]
    assert run_app("train.py", *overrides, f"hydra.run.dir={tmp_path}", cwd=tmp_path, monkeypatch=monkeypatch) == 0
    rows = (tmp_path / "csv" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    dice, step = header.index("val/dice"), header.index("step")
    probed = header.index("val/flat_std")
    validated = [(int(r.split(",")[step]), bool(r.split(",")[probed])) for r in rows[1:] if r.split(",")[dice]]
    # init (probed), after 4 and 8 optimiser steps (not probed: every 5th validation only) and after the last step
    # (probed: the final weights), each once at the step of the weights it measured: the curves never go back
    assert validated == [(0, True), (4, False), (8, False), (12, True)]
    # the best checkpoint's values reach the loggers under their own keys, at its step
    best_column = header.index("best/dice")
    best_rows = [r.split(",") for r in rows[1:] if r.split(",")[best_column]]
    metrics = read_metrics(tmp_path)
    assert len(best_rows) == 1 and int(best_rows[0][step]) == int(metrics["step"]) in (4, 8, 12)
    assert float(best_rows[0][best_column]) == pytest.approx(metrics["val/dice"])
    probe = compose_config("train", overrides)
    assert probe.validations == 3


ISBI = SHARED_DATA / "isbi2012-membrane"
MEMBRANE_DICE_THRESHOLD = 0.6  # predicting "membrane" everywhere scores about 0.36


@pytest.mark.skipif(not ISBI.is_dir(), reason=f"{ISBI} is absent")
@pytest.mark.slow
def test_short_training_on_isbi_membranes(tmp_path, monkeypatch):
    assert (
        run_app(
            "train.py",
            "data=isbi2012",
            f"data.source.root={ISBI}",
            "data.crop_size=64",
            "data.batch_size=4",
            "model.depth=2",
            "model.base_channels=8",
            "trainer.max_steps=60",
            "trainer.max_epochs=-1",
            "validations=1",
            "callbacks.artifact_probe=null",  # the quality of a short training, not its artifacts
            "test=false",
            f"hydra.run.dir={tmp_path}",
            cwd=tmp_path,
            monkeypatch=monkeypatch,
        )
        == 0
    )
    assert read_metrics(tmp_path)["val/dice_c1"] > MEMBRANE_DICE_THRESHOLD


@pytest.mark.parametrize(
    "overrides, every",
    [
        (["trainer.max_steps=12", "validations=3"], 4),
        (["trainer.max_steps=100", "validations=3"], 50),  # not every 34: the last after step 68
        (["trainer.max_steps=97", "validations=10"], 10),  # a prime: every 10 (not one validation at 97)
        (["trainer.max_steps=98", "validations=10"], 14),  # 7 validations, the last after step 98
        (
            ["trainer.max_steps=-1", "trainer.max_epochs=5", "data.min_batches_per_epoch=3", "validations=4"],
            5,
        ),  # 20 steps
    ],
)
def test_validations_are_evenly_spaced_and_the_last_follows_the_last_step(overrides, every):
    cfg = compose_config("train", [*TINY, "trainer.max_epochs=-1", *overrides])
    schedule = validation_schedule(cfg, instantiate(cfg.data))
    assert schedule == {"val_check_interval": every, "check_val_every_n_epoch": None}


def test_the_default_run_trains_three_epochs_of_64_steps_validated_every_24():
    """Synthetic data, 64 images in batches of 8: 8 passes an epoch (data.min_batches_per_epoch=64)."""
    cfg = compose_config("train")
    data = instantiate(cfg.data)
    assert (len(data.train_dataloader()), data.passes_per_epoch(), cfg.trainer.max_epochs) == (64, 8, 3)
    assert validation_schedule(cfg, data)["val_check_interval"] == 24


def test_a_resumed_cosine_given_more_steps_follows_the_new_total_to_zero():
    """Resumed at step 3 of a 6-step cosine with 12 steps to go in all: the rates of an uninterrupted 12-step run."""
    task = build_task(OmegaConf.to_container(compose_config("train", TINY), resolve=True))
    optimizer = task.optimizer_factory(task.parameters())
    schedule = task.scheduler_factory(optimizer, T_max=6)
    for _ in range(3):
        optimizer.step()
        schedule.step()
    task.trainer = SimpleNamespace(
        global_step=3, estimated_stepping_batches=12, lr_scheduler_configs=[SimpleNamespace(scheduler=schedule)]
    )
    task.on_train_start()
    rates = []
    for _ in range(3, 12):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    base = task.optimizer_factory.keywords["lr"]
    assert rates == pytest.approx([base * (1 + math.cos(math.pi * t / 12)) / 2 for t in range(3, 12)])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0, abs=1e-12) and schedule.get_last_lr()[0] < 1e-12
