"""A run a person can follow from anywhere: plain progress lines in log files, train.log, TensorBoard, MLflow."""

from __future__ import annotations

import csv
import logging
import os
import re
import subprocess

import lightning as L
import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from conftest import ROOT, TINY, compose_config, read_metrics, run_app, write_pair

STEPS = ["trainer.max_steps=6", "trainer.max_epochs=-1", "validations=2", "test=false"]


def test_plain_progress_lines_when_stdout_is_not_a_terminal(tmp_path, monkeypatch, capsys, caplog, recwarn):
    """Lines a person can read in a log file, without Lightning's chatter or known third-party warnings: trained by
    epochs (Lightning then loads the data to count the steps), the loss logged every 4 steps and a line every step,
    so the loss logged at step 4 must show on one line, not on the lines of steps 5 and 6 too."""
    assert (
        run_app(
            "train.py",
            *TINY,
            *STEPS,
            "trainer.max_epochs=3",
            "trainer.log_every_n_steps=4",
            "callbacks.progress_bar.every_s=0",
            f"hydra.run.dir={tmp_path}",
            cwd=tmp_path,
            monkeypatch=monkeypatch,
        )
        == 0
    )
    out, err = capsys.readouterr()
    assert "\x1b" not in out and "\r" not in out
    # Lightning's advertisements and its second model summary are gone; the summary counts the network's FLOPs
    assert "Tip:" not in out + err and "Skipping setting a default `ModelSummary`" not in out + err
    assert "Total FLOPs: " in out and "Total FLOPs: 0 " not in out
    chatter = ("GPU available", "TPU available", "Loading `train_dataloader`", "Tip:")
    assert not [r.getMessage() for r in caplog.records if r.getMessage().startswith(chatter)]
    assert not [str(w.message) for w in recwarn if "LeafSpec" in str(w.message)]
    steps = [line for line in out.splitlines() if line.startswith("epoch ") and " step " in line]
    assert len(steps) == 6  # a line per step at every_s=0; none at the end, where no batch was trained since
    assert all("images/s" in line and "left" in line and " 0.0 images/s" not in line for line in steps)
    assert " step 6/6 " in steps[-1]
    assert [line.split(" step ")[1].split(" ")[0] for line in steps if " loss " in line] == ["5/6"]
    validations = [line for line in out.splitlines() if "validation at step" in line]
    assert [line.split(":")[0] for line in validations] == ["validation at step 3", "final validation at step 6"]
    assert all("dice " in line for line in validations)
    # the best checkpoint is the last step's: measured as it is, not validated again
    assert "validation before training at step 0" in out and "measured: the final weights (step 6)" in out
    assert "validation of the best checkpoint" not in out
    assert "training done: step 6" in out
    assert "training from step 0 (epoch 0) on cpu" in (tmp_path / "train.log").read_text()


def test_the_console_leaves_out_the_two_known_warnings_and_no_other(recwarn):
    """Torch warns about a read-only array once per process, so a run cannot show it twice: the filters themselves
    are checked, each for its message from its module alone."""
    import warnings

    from unet_upsampling.console import quiet_console

    quiet_console()
    not_writable = "The given NumPy array is not writable, and PyTorch does not support non-writable tensors."
    leaf = "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)` instead."
    albumentations = "albumentations.pytorch.transforms"
    warnings.warn_explicit(not_writable, UserWarning, "transforms.py", 104, module=albumentations)
    warnings.warn_explicit(leaf, FutureWarning, "_pytree.py", 21, module="lightning.pytorch.utilities._pytree")
    warnings.warn_explicit(not_writable, UserWarning, "folder.py", 1, module="unet_upsampling.data.folder")
    warnings.warn_explicit("another warning", UserWarning, "transforms.py", 105, module=albumentations)
    shown = [(str(w.message), w.filename) for w in recwarn]
    assert shown == [(not_writable, "folder.py"), ("another warning", "transforms.py")]


def test_train_log_tells_the_story_of_a_run(tmp_path, monkeypatch):
    assert run_app("train.py", *TINY, *STEPS, f"hydra.run.dir={tmp_path}", cwd=tmp_path, monkeypatch=monkeypatch) == 0
    lines = (tmp_path / "train.log").read_text().splitlines()

    def first(text: str) -> int:
        return next(i for i, line in enumerate(lines) if text in line)

    order = [
        first("overrides: model.depth=2"),
        first("data: train 8 images"),
        first("data: classes"),
        first("network: UNet, upsample=deconv"),
        first("validation at step 3"),
        first("checkpoint: "),
        first("final validation at step 6"),
        first("time: start-up"),
        first("measure"),
        first("measured: the final weights (step 6)"),  # the best checkpoint is the last step's: no re-validation
        first("metrics: "),
    ]
    assert order == sorted(order)
    assert any("pef2" in line and "flat_std" not in line for line in lines if "validation at step 3" in line)
    assert any("best val/dice" in line for line in lines) and any("last.ckpt" in line for line in lines)


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.batch_size=0", "data.batch_size=0 must be at least 1"),
        ("model.depth=6", "data.crop_size=48 is smaller than 64 px"),
    ],
)
def test_train_log_ends_with_the_error_of_a_failed_run(override, message, tmp_path, monkeypatch):
    assert run_app("train.py", *TINY, override, f"hydra.run.dir={tmp_path}", cwd=tmp_path, monkeypatch=monkeypatch) == 1
    text = (tmp_path / "train.log").read_text().strip()
    assert message in text.splitlines()[-1] or message in text.split("[ERROR]")[-1]


@pytest.mark.slow
def test_tensorboard_gets_figures_and_hparams(tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    assert (
        run_app(
            "train.py",
            *TINY,
            *STEPS,
            "logger=tensorboard",
            "trainer.log_every_n_steps=2",
            f"hydra.run.dir={tmp_path}",
            cwd=tmp_path,
            monkeypatch=monkeypatch,
        )
        == 0
    )
    assert len(list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))) == 1  # one event file per run
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    assert {"artifacts/flat_field", "predictions"} <= set(events.Tags()["images"])
    assert len(events.Images("artifacts/flat_field")) >= 2  # before training and the best checkpoint's
    plugins = events.PluginTagToContent("hparams")
    assert "_hparams_/experiment" in plugins and "_hparams_/session_start_info" in plugins
    start = plugins["_hparams_/session_start_info"]
    assert b"upsample_name" in start and b"deconv" in start
    assert (
        b"hparams/val/dice" in plugins["_hparams_/experiment"]
        and b"hparams/val/flat_std" in plugins["_hparams_/experiment"]
    )
    metrics = read_metrics(tmp_path)
    (final,) = events.Scalars("hparams/val/dice")
    assert final.value == pytest.approx(metrics["val/dice"]) and final.step == metrics["global_step"]
    # one value per step on the curve, the last one the measured weights' (the best checkpoint is the last step's)
    dice = events.Scalars("val/dice")
    assert [e.step for e in dice] == [0, 3, 6] and metrics["step"] == 6
    assert dice[-1].value == pytest.approx(metrics["val/dice"], abs=1e-6)
    assert len(events.Scalars("lr-AdamW")) >= 1  # the learning-rate curve


@pytest.mark.parametrize(
    "logger, availability",
    [
        (
            "tensorboard",
            [
                "lightning.fabric.loggers.tensorboard._TENSORBOARD_AVAILABLE",
                "lightning.fabric.loggers.tensorboard._TENSORBOARDX_AVAILABLE",
            ],
        ),
        ("mlflow", ["lightning.pytorch.loggers.mlflow._MLFLOW_AVAILABLE"]),
    ],
)
def test_a_logger_whose_package_is_missing_is_named_with_the_install_command(
    logger, availability, tmp_path, monkeypatch, capsys
):
    for flag in availability:  # as on an installation without the loggers extra
        monkeypatch.setattr(flag, False)
    code = run_app(
        "train.py", *TINY, f"logger={logger}", f"hydra.run.dir={tmp_path}", cwd=tmp_path, monkeypatch=monkeypatch
    )
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"logger={logger} needs a package this installation lacks" in err and 'pip install -e ".[loggers]"' in err


@pytest.mark.slow
def test_mlflow_local_store_holds_params_metrics_and_artifacts(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert (
        run_app(
            "train.py",
            *TINY,
            *STEPS,
            "logger=mlflow",
            f"hydra.run.dir={tmp_path / 'run'}",
            cwd=tmp_path,
            monkeypatch=monkeypatch,
        )
        == 0
    )
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'logs' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("train").experiment_id])
    assert run.info.run_name == "deconv-seed0"
    assert run.data.params["upsample_name"] == "deconv" and run.data.params["model.depth"] == "2"
    assert run.data.params["data"] == "synthetic" and run.data.params["loss"] == "ce_dice"  # the Hydra choices
    assert not any("${" in value for value in run.data.params.values())  # resolved, no interpolation
    metrics = read_metrics(tmp_path / "run")
    assert not any("_" in k and k.replace("_", "/", 1) in run.data.metrics for k in run.data.metrics)  # once each
    history = client.get_metric_history(run.info.run_id, "val/dice")
    assert metrics["val/dice"] == pytest.approx(next(m.value for m in history if m.step == metrics["step"]))
    assert run.data.metrics["init/dice"] == pytest.approx(metrics["init/dice"]) and "train_time_s" in run.data.metrics
    assert "train/loss_mean" in run.data.metrics  # every validation during training logs it
    files = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"metrics.json", "train.log", ".hydra", "artifacts", "predictions"} <= files
    figures = [
        a.path for folder in ("artifacts", "predictions") for a in client.list_artifacts(run.info.run_id, folder)
    ]
    assert figures and not any(f.endswith(("flat_field.png", "predictions.png")) for f in files)  # each figure once
    assert ".hydra/config.yaml" in {a.path for a in client.list_artifacts(run.info.run_id, ".hydra")}
    tags = run.data.tags
    assert (tags["dataset"], tags["mode"], tags["seed"]) == ("synthetic", "deconv", "0")
    assert (
        tags["git_commit"].split("+")[0]
        == subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    )


def test_rgb_images_are_shown_in_colour_under_a_title_naming_the_weights_and_images(tmp_path, monkeypatch):
    from unet_upsampling.callbacks import prediction_figure as drawing

    titles, draw = [], drawing.prediction_figure
    monkeypatch.setattr(drawing, "prediction_figure", lambda *args: titles.append(args[4]) or draw(*args))
    folder = tmp_path / "rgb"
    rng = np.random.default_rng(0)
    for i in range(4):
        write_pair(folder, f"x{i}", (40, 40), rgb=True, mask_values=(0, 1), seed=i)
        image = np.asarray(Image.open(folder / "images" / f"x{i}.png")).copy()
        image[..., 0] = rng.integers(0, 255, image.shape[:2])  # red differs from green
        Image.fromarray(image).save(folder / "images" / f"x{i}.png")
    assert (
        run_app(
            "train.py",
            "data=folder",
            f"data.source.root={folder}",
            "data.in_channels=3",
            "data.crop_size=32",
            "data.batch_size=2",
            "data.min_batches_per_epoch=1",
            "model.depth=2",
            "model.base_channels=4",
            "trainer.max_epochs=1",
            f"hydra.run.dir={tmp_path / 'run'}",
            cwd=tmp_path,
            monkeypatch=monkeypatch,
        )
        == 0
    )
    assert np.load(tmp_path / "run" / "predictions.npz")["images"].shape[1] == 3
    # one step, so one validation: the final weights are the best checkpoint's, measured without a reload
    assert titles == ["final validation at step 1, 1 validation image"]
    figure = np.asarray(Image.open(tmp_path / "run" / "predictions.png").convert("RGB")).astype(int)
    panel = figure[:, : figure.shape[1] // 4]  # the image column
    assert (np.abs(panel[..., 0] - panel[..., 1]) > 30).mean() > 0.05


def test_a_validation_line_shows_only_what_that_validation_measured(tmp_path, monkeypatch, capsys):
    """The probe runs at every 2nd validation and at the final one: the 2nd's and 4th's lines must not show a
    flat_std. The checkpoint kept is the lowest val/dice (step 2), so it is validated again at the end. Every line
    gives the step and the values csv/metrics.csv recorded for that validation (one convention: the optimiser
    steps behind the weights measured); the best checkpoint's are logged as best/... at its step."""
    assert (
        run_app(
            "train.py",
            *TINY,
            "trainer.max_steps=8",
            "trainer.max_epochs=-1",
            "validations=4",
            "test=false",
            "callbacks.artifact_probe.every_n_validations=2",
            "callbacks.best_checkpoint.mode=min",
            "callbacks.progress_bar.mode=plain",
            f"hydra.run.dir={tmp_path}",
            cwd=tmp_path,
            monkeypatch=monkeypatch,
        )
        == 0
    )
    out = capsys.readouterr().out.splitlines()
    printed = [line for line in out if "validation" in line and " at step " in line]
    logged = [line.split("] - ", 1)[1] for line in (tmp_path / "train.log").read_text().splitlines() if "valid" in line]
    logged = [re.sub(r" \(epoch \d+\)", "", line) for line in logged if " at step " in line]
    with (tmp_path / "csv" / "metrics.csv").open() as file:
        rows = list(csv.DictReader(file))
    metrics = read_metrics(tmp_path)
    assert int(metrics["step"]) == 2 and metrics["best_checkpoint"].endswith("step_000002.ckpt")
    validated = [row for row in rows if row["val/dice"]]
    (best,) = [
        {"step": row["step"]} | {k.replace("best/", "val/"): v for k, v in row.items() if k.startswith("best/")}
        for row in rows
        if row["best/dice"]
    ]
    for lines in (printed, logged):
        stages = [line.split(":")[0] for line in lines]
        assert stages == [
            "validation before training at step 0",
            *(f"validation at step {s}" for s in (2, 4, 6)),
            "final validation at step 8",
            "validation of the best checkpoint at step 2",
        ]
        probed = ["flat_std" in line for line in lines]
        assert probed == [True, False, True, False, True, True], lines
        for line, row in zip(lines, [*validated, best], strict=True):
            assert line.split(":")[0].endswith(f" step {row['step']}")
            for name, value in (item.rsplit(" ", 1) for item in line.split(": ", 1)[1].split(", ")):
                assert float(value) == pytest.approx(float(row[f"val/{name}"]), rel=1e-3), (line, name)
    assert float(best["val/dice"]) == pytest.approx(metrics["val/dice"])


def test_a_misspelt_optimized_metric_is_an_error_listing_the_metrics():
    from unet_upsampling.errors import ConfigError
    from unet_upsampling.train import optimized

    metrics = {"val/dice": 0.7, "test/dice": 0.6, "best_checkpoint": "x.ckpt"}
    assert optimized(metrics, "val/dice") == 0.7 and optimized(metrics, None) is None
    with pytest.raises(ConfigError, match=r"optimized_metric='val/dcie' .* one of: test/dice, val/dice$"):
        optimized(metrics, "val/dcie")


def test_git_commit_is_none_outside_the_project_checkout(tmp_path, monkeypatch):
    from unet_upsampling import loggers

    assert loggers.git_commit() is None or len(loggers.git_commit().split("+")[0]) == 40
    monkeypatch.setenv("PATH", str(tmp_path))  # no git program
    assert loggers.git_commit() is None


def test_a_resumed_csv_keeps_the_rows_logged_before_the_checkpoint():
    """last.ckpt at step 4 is written after the validation of step 4 and before the training row of step 4 (the
    loss of the 5th batch): the resumed run logs that training row again, not the validation. A run stopped during
    its final validation (of the best checkpoint, step 2) logged that row after the checkpoint: it goes too."""
    from unet_upsampling.loggers import before_checkpoint

    rows = [
        {"step": "3", "train/loss": "0.9", "val/dice": ""},
        {"step": "4", "train/loss": "", "val/dice": "0.5"},
        {"step": "4", "train/loss": "0.8", "val/dice": ""},
        {"step": "5", "train/loss": "0.7", "val/dice": ""},
    ]
    assert before_checkpoint(rows, 4) == rows[:2]
    final = [{"step": "2", "train/loss": "", "val/dice": "0.6"}, *rows[:2], {"step": "2", "val/dice": "0.6"}]
    assert before_checkpoint(final, 4) == final[:3]


def test_a_run_without_loggers_trains_without_the_learning_rate_curve(tmp_path, monkeypatch):
    """Lightning's LearningRateMonitor refuses a Trainer without loggers; ~logger leaves the curve out."""
    run_dir = tmp_path / "run"
    overrides = [*TINY, "trainer.max_steps=2", "trainer.max_epochs=-1", "validations=1", "~logger"]
    assert run_app("train.py", *overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path, monkeypatch=monkeypatch) == 0
    assert read_metrics(run_dir)["global_step"] == 2 and not (run_dir / "csv").exists()


def test_run_log_names_each_checkpoint_write_once_at_its_step(tmp_path, caplog):
    """last.ckpt keeps its path across writes: each write (a new file renamed over it) is logged once, with the step
    it was written at, and an unchanged file is not logged again."""
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import ModelCheckpoint

    from unet_upsampling.callbacks import RunLog

    last = tmp_path / "last.ckpt"
    callback = ModelCheckpoint(dirpath=tmp_path, filename="last", monitor=None)
    trainer = SimpleNamespace(checkpoint_callbacks=[callback], global_step=0)
    run_log = RunLog()

    def log_at(step: int) -> list[str]:
        trainer.global_step = step
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="unet_upsampling.callbacks.run_log"):
            run_log.on_train_batch_start(trainer, None, None, 0)
        return [r.getMessage() for r in caplog.records]

    assert log_at(1) == []  # nothing written yet
    last.write_bytes(b"3")
    callback.best_model_path = str(last)
    assert log_at(3) == [f"checkpoint: {last} (step 3)"]
    assert log_at(4) == []
    (tmp_path / "tmp").write_bytes(b"6")
    os.replace(tmp_path / "tmp", last)
    assert log_at(6) == [f"checkpoint: {last} (step 6)"]


class LossRecorder(L.Callback):
    """Every step's training loss, as training_step returned it."""

    def __init__(self):
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def test_the_training_loss_reaches_the_log_at_logging_steps_and_validations_only(tmp_path):
    """log_every_n_steps=3 over 8 steps of 2-step epochs, validations after steps 4 and 8: train/loss is that step's
    loss, train/loss_mean the mean of the steps since the last mean (steps 1-3, 4, 5-6, 7-8); nothing at epoch
    ends."""
    from unet_upsampling.builders import build_datamodule, build_loggers, build_task, build_trainer
    from unet_upsampling.train import validation_schedule

    cfg = compose_config(
        "train",
        [
            *TINY,
            "trainer.max_steps=8",
            "trainer.max_epochs=-1",
            "trainer.log_every_n_steps=3",
            "validations=2",
            f"hydra.run.dir={tmp_path}",
        ],
    )
    data, recorder = build_datamodule(cfg), LossRecorder()
    trainer = build_trainer(
        cfg, [recorder], build_loggers(cfg), enable_progress_bar=False, **validation_schedule(cfg, data)
    )
    trainer.fit(build_task(OmegaConf.to_container(cfg, resolve=True)), datamodule=data)
    with (tmp_path / "csv" / "metrics.csv").open() as file:
        rows = [r for r in csv.DictReader(file) if r["train/loss"] or r["train/loss_mean"]]
    loss = recorder.losses
    assert len(loss) == 8
    logged = [(r["step"], r["train/loss"] and float(r["train/loss"]), float(r["train/loss_mean"])) for r in rows]
    assert (
        logged
        == [
            ("2", pytest.approx(loss[2]), pytest.approx(np.mean(loss[:3]))),  # the csv's step: Lightning's, one less
            ("4", "", pytest.approx(loss[3])),  # the validation after 4 steps
            ("5", pytest.approx(loss[5]), pytest.approx(np.mean(loss[4:6]))),
            ("8", "", pytest.approx(np.mean(loss[6:8]))),  # the validation after the last step
        ]
    )
    assert all(r["val/dice"] for r in rows if not r["train/loss"])


def test_a_save_appends_its_rows_and_a_new_key_rewrites_the_file(tmp_path, monkeypatch, caplog):
    from unet_upsampling.loggers import CSVLogger, csv_logger

    logger = CSVLogger(save_dir=tmp_path, name="csv", version="")
    logger.log_metrics({"train/loss": 1.0}, step=0)
    monkeypatch.setattr(csv_logger, "write_rows", lambda *a: pytest.fail("rewrote the file for a known key"))
    for step in (1, 2):
        logger.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)
    monkeypatch.undo()
    logger.log_metrics({"val/dice": 0.5}, step=3)
    with (tmp_path / "csv" / "metrics.csv").open() as file:
        reader = csv.DictReader(file)
        assert reader.fieldnames == ["step", "train/loss", "val/dice"]
        assert [(r["step"], r["train/loss"], r["val/dice"]) for r in reader] == [
            ("0", "1.0", ""),
            ("1", "0.5", ""),
            ("2", "0.3333333333333333", ""),
            ("3", "", "0.5"),
        ]
    CSVLogger(save_dir=tmp_path, name="csv", version="").log_metrics({"train/loss": 2.0}, step=0)  # a new run here
    assert (tmp_path / "csv" / "metrics.csv").read_text() == "step,train/loss\n0,2.0\n"
    assert "a new run in this directory; its rows replace the file's" in caplog.text


def test_a_row_cut_short_by_a_kill_is_left_out_when_the_run_resumes(tmp_path):
    """Killed inside the append of step 13's row, after its first digit: a resume at step 13 must not keep a row of
    step "1"."""
    from unet_upsampling.loggers import CSVLogger

    logger = CSVLogger(save_dir=tmp_path, name="csv", version="")
    for step in (10, 11, 12):
        logger.log_metrics({"train/loss": 1.0 / (step - 9)}, step=step)
    path = tmp_path / "csv" / "metrics.csv"
    with path.open("a") as file:
        file.write("1")
    resumed = CSVLogger(save_dir=tmp_path, name="csv", version="")
    resumed.resume_at(13)
    resumed.log_metrics({"train/loss": 0.25}, step=13)
    with path.open() as file:
        assert [(r["step"], r["train/loss"]) for r in csv.DictReader(file)] == [
            ("10", "1.0"),
            ("11", "0.5"),
            ("12", "0.3333333333333333"),
            ("13", "0.25"),
        ]


def test_the_loss_mean_travels_in_the_state_dict_and_an_older_checkpoint_s_sums_are_taken_up():
    import torch

    from unet_upsampling.builders import build_task
    from unet_upsampling.errors import CheckpointError
    from unet_upsampling.task import LOSS_MEAN_KEY

    def task():
        return build_task(OmegaConf.to_container(compose_config("train", TINY), resolve=True))

    trained = task()
    for loss in (1.0, 2.0, 4.5):
        trained.loss_mean.update(torch.tensor(loss))
    resumed = task()
    resumed.load_state_dict(trained.state_dict())  # what a checkpoint's state_dict restores
    assert {k: float(v) for k, v in resumed.loss_mean.metric_state.items()} == {"mean_value": 7.5, "weight": 3}
    weights = {k: v for k, v in trained.state_dict().items() if not k.startswith("loss_mean.")}
    task().load_state_dict(weights)  # strict: a checkpoint from before either format loads (eval.py, predict.py)
    older = {
        "global_step": 7,
        "state_dict": dict(weights),
        LOSS_MEAN_KEY: {"sum": torch.tensor(7.5), "steps": torch.tensor(3)},
    }
    from_older = task()
    from_older.on_load_checkpoint(older)  # Lightning calls it before loading the state dict
    from_older.load_state_dict(older["state_dict"])
    assert {k: float(v) for k, v in from_older.loss_mean.metric_state.items()} == {"mean_value": 7.5, "weight": 3}
    assert LOSS_MEAN_KEY not in older
    altered = {
        "global_step": 7,
        "state_dict": {},
        LOSS_MEAN_KEY: {"sum": torch.tensor(7.5), "steps": torch.tensor(1.5)},
    }
    with pytest.raises(CheckpointError, match=f"{LOSS_MEAN_KEY!r} entry is not a loss sum and a count of steps"):
        task().on_load_checkpoint(altered)
