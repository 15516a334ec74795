"""Bad input gets a clear error naming the thing and the fix, before any work; the same seed gives the same result."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import re
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hydra.errors import MissingConfigException
from PIL import Image

from unet_upsampling.errors import ConfigError, DataError
from unet_upsampling.loggers import CSVLogger, csv_logger
from unet_upsampling.report.build import write_report

from conftest import (
    ROOT,
    TINY,
    check_composed,
    compose_config,
    folder_datamodule,
    grey_image,
    read_metrics,
    reproducible,
    run_app,
    run_predict,
    write_pair,
)


def setup_folder(root: Path, *overrides: str):
    """The folder data module of 0/255 masks, set up: its files checked."""
    dm = folder_datamodule(root, "data.source.mask_values={0:0,255:1}", *overrides)
    dm.setup()
    return dm


@pytest.mark.parametrize(
    "fault, message",
    [
        ("truncated", r"img_1\.png: unreadable or truncated image"),
        ("size", r"img_2\.png is 70x65 but its mask img_2\.png is 40x49"),
        (
            "channels",
            r"img_3\.png has 3 channel\(s\) but data\.in_channels=1: set data\.in_channels=3, or "
            r"data\.source\.convert_channels=true",
        ),
        ("values", r"img_4\.png: values \[7\] are not in data\.source\.mask_values"),
        ("unpaired", r"img_5\.png: no image"),
    ],
)
def test_bad_folder_samples_are_named_with_the_fix(folder_binary_255, fault, message):
    images, masks = folder_binary_255 / "images", folder_binary_255 / "masks"
    if fault == "truncated":
        data = (images / "img_1.png").read_bytes()
        (images / "img_1.png").write_bytes(data[: len(data) // 2])
    elif fault == "size":
        Image.fromarray(np.zeros((40, 49), np.uint8)).save(masks / "img_2.png")
    elif fault == "channels":
        Image.open(images / "img_3.png").convert("RGB").save(images / "img_3.png")
    elif fault == "values":
        mask = np.asarray(Image.open(masks / "img_4.png")).copy()
        mask[0, 0] = 7
        Image.fromarray(mask).save(masks / "img_4.png")
    else:
        (images / "img_5.png").unlink()
    with pytest.raises(ValueError, match=rf"(?s)1 bad sample\(s\) in .*{message}.*data\.source\.on_bad_sample=skip"):
        setup_folder(folder_binary_255)


def test_images_beyond_pillows_pixel_limit_are_listed_as_bad_samples(folder_binary_255, monkeypatch):
    """Pillow's limit lowered to 2 x 2000 pixels stands for its 2 x 89 Mpx: img_0 (61x77) and img_2 (70x65) are
    beyond it."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    with pytest.raises(
        DataError,
        match=r"(?s)2 bad sample\(s\).*img_0\.png: Image size \(4697 pixels\) exceeds limit .*"
        r"Cut it into tiles on disk.*img_2\.png: Image size",
    ):
        setup_folder(folder_binary_255)


def test_skip_leaves_bad_samples_out_and_lists_them(folder_binary_255, caplog):
    (folder_binary_255 / "images" / "img_1.png").write_bytes(b"not a png")
    dm = setup_folder(folder_binary_255, "data.source.on_bad_sample=skip")
    assert sum(len(ds) for ds in dm.splits.values()) == 5
    assert "left out 1 sample(s)" in caplog.text and "img_1.png: unreadable" in caplog.text


def test_when_every_file_is_bad_the_error_does_not_suggest_skipping(folder_binary_255):
    for path in (folder_binary_255 / "images").iterdir():
        Image.open(path).convert("RGB").save(path)
    with pytest.raises(ValueError, match=r"(?s)6 bad sample\(s\).*No pair is usable as configured") as error:
        setup_folder(folder_binary_255)
    assert "on_bad_sample=skip" not in str(error.value)


def test_convert_channels_accepts_rgb_files_for_a_grey_model(folder_binary_255):
    Image.open(folder_binary_255 / "images" / "img_3.png").convert("RGB").save(
        folder_binary_255 / "images" / "img_3.png"
    )
    dm = setup_folder(folder_binary_255, "data.source.convert_channels=true")
    assert all(image.shape[0] == 1 for ds in dm.splits.values() for image, _ in ds)


def test_empty_folder_and_too_few_images(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(DataError, match=r"no images .* in .*images"):
        setup_folder(tmp_path)
    for i in range(3):
        write_pair(tmp_path, f"x{i}", (40, 40), rgb=False, mask_values=(0, 255), seed=i)
    with pytest.raises(DataError, match=r"the train split has 2 images, fewer than data\.batch_size=4"):
        setup_folder(tmp_path, "data.batch_size=4")
    with pytest.raises(DataError, match=r"data\.source\.root=.*missing is not a directory"):
        setup_folder(tmp_path / "missing")


def test_unknown_upsample_mode_lists_the_valid_ones():
    with pytest.raises(MissingConfigException, match=r"(?s)Could not find 'upsample/bicubic'.*deconv_k3.*nearest_conv"):
        compose_config("train", ["upsample=bicubic"])


def test_inconsistent_settings_are_refused_before_training():
    with pytest.raises(ConfigError, match=r"model.num_classes=3 but data.num_classes=2"):
        check_composed("model.num_classes=3")
    with pytest.raises(ConfigError, match=r"data.crop_size=24 is smaller than 32 px"):
        check_composed("model.depth=5", "data.crop_size=24")
    with pytest.raises(ConfigError, match=r"(?s)o = \(i-1\)s - 2p \+ k \+ output_padding = 2i \+ 3"):
        check_composed("upsample=deconv_k3", "upsample.padding=-0", "upsample.kernel_size=5")
    with pytest.raises(ConfigError, match=r"upsample.kernel_size=2: .* odd kernel size; use upsample.kernel_size=3"):
        check_composed("upsample=nearest_conv", "upsample.kernel_size=2")


def test_validation_images_smaller_than_the_network_takes_are_named(tmp_path):
    for split, sizes in (("train", [(64, 64)] * 2), ("val", [(64, 64), (12, 40), (40, 9)])):
        for i, size in enumerate(sizes):
            write_pair(tmp_path / split, f"{split}{i}", size, rgb=False, mask_values=(0, 1), seed=i)
    with pytest.raises(
        DataError,
        match=r"2 validation/test image\(s\) are smaller than 16 px.*val1\.png \(12x40\), "
        r".*val2\.png \(40x9\)\. Lower model\.depth, or use larger images",
    ):
        check_composed(
            "data=folder", f"data.source.root={tmp_path}", "data.batch_size=2", "data.crop_size=32", "model.depth=4"
        )


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.max_steps=abc", "trainer.max_steps='abc' is not an integer (e.g. trainer.max_steps=300)"),
        ("task.optimizer.lr=0", "task.optimizer.lr=0 must be greater than 0"),
        ("task.optimizer.lr=-0.1", "task.optimizer.lr=-0.1 must be greater than 0"),
        ("data.batch_size=0", "data.batch_size=0 must be at least 1"),
        ("trainer.strategy=ddp_spawn", "trainer.strategy=ddp_spawn starts its processes with spawn: such processes"),
        ("trainer.accelerator=gpu", "trainer.accelerator=gpu but no CUDA GPU is visible on this machine"),
    ],
)
def test_bad_values_are_named_before_any_work_without_a_traceback(override, message, tmp_path, monkeypatch, capsys):
    if "accelerator=gpu" in override and torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    code = run_app("train.py", *TINY, override, f"hydra.run.dir={tmp_path}", cwd=tmp_path, monkeypatch=monkeypatch)
    err = capsys.readouterr().err
    assert code == 1 and message in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hydra", "train.log"]  # no data read, nothing trained
    assert message in (tmp_path / "train.log").read_text()


def test_a_preset_without_its_data_names_data_dir_once_and_leaves_no_run_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DATA_DIR", raising=False)
    code = run_app("train.py", "data=isbi2012", cwd=tmp_path, monkeypatch=monkeypatch)
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in err
    assert (out + err).count("data.source.root=data/isbi2012-membrane is not a directory") == 1
    assert f"the data presets read from DATA_DIR, which is not set: from {tmp_path / 'data'}" in err
    assert "Set DATA_DIR to the folder that holds isbi2012-membrane/ (DATA_DIR=/path/to/data python ...)" in err
    assert (tmp_path / "logs").is_dir() and not list((tmp_path / "logs").iterdir())  # no run directory


def test_a_failed_evaluation_leaves_no_run_directory_and_names_data_dir(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DATA_DIR", "nowhere")
    code = run_app("eval.py", f"ckpt_path={checkpoint}", "data=vnc_em", cwd=tmp_path, monkeypatch=monkeypatch)
    assert code == 1 and "the data presets read from DATA_DIR=nowhere" in capsys.readouterr().err
    assert not list((tmp_path / "logs").iterdir())


@pytest.mark.parametrize(
    "written, where, kept, in_logs",
    [
        ([], "logs/train/runs/1", False, ["other"]),  # and the folders its removal left empty
        (["checkpoints/last.ckpt"], "logs/train/runs/1", True, ["other", "train"]),
        ([], "elsewhere/1", True, ["other"]),  # hydra.run.dir outside LOG_DIR: the user's directory
        ([], "sweep member", True, ["other", "train"]),  # the sweep's report quotes its train.log
    ],
)
def test_a_run_failing_before_it_wrote_anything_leaves_no_directory_under_the_logs(
    written, where, kept, in_logs, tmp_path
):
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from unet_upsampling.jobs import no_empty_run_dir

    run_dir = tmp_path / ("logs/train/multiruns/1/0" if where == "sweep member" else where)
    for name in [".hydra/config.yaml", "train.log", "train.lock", *written]:
        (run_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (run_dir / name).write_text("")
    (tmp_path / "logs" / "other").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as monkeypatch:
        if where == "sweep member":
            monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
            monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: SimpleNamespace(mode=RunMode.MULTIRUN)))
        with pytest.raises(ConfigError), no_empty_run_dir(run_dir, tmp_path / "logs"):
            raise ConfigError("a bad value")
    assert run_dir.is_dir() == kept and sorted(p.name for p in (tmp_path / "logs").iterdir()) == in_logs


def test_the_gpu_experiment_without_a_gpu_says_what_to_do(tmp_path, monkeypatch, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    code = run_app(
        "train.py", "experiment=upsample_study_gpu", f"hydra.run.dir={tmp_path}", cwd=tmp_path, monkeypatch=monkeypatch
    )
    err = capsys.readouterr().err
    assert code == 1 and "needs a GPU; add trainer.accelerator=cpu for a (slow) smoke run" in err


def test_full_traceback_on_request(tmp_path, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(ConfigError, match=r"data\.batch_size=0 must be at least 1"):
        run_app(
            "train.py", *TINY, "data.batch_size=0", f"hydra.run.dir={tmp_path}", cwd=tmp_path, monkeypatch=monkeypatch
        )


def test_an_unwritable_checkpoint_directory_fails_before_training_naming_it(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoints").write_text("a file where the checkpoint folder should be")
    code = run_app("train.py", *TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path, monkeypatch=monkeypatch)
    err = capsys.readouterr().err
    assert code == 1 and f"cannot write to {run_dir / 'checkpoints'}" in err
    assert not (run_dir / "csv").exists()  # nothing trained or logged


def test_a_second_run_in_a_locked_run_directory_is_refused_before_it_writes_there(tmp_path, monkeypatch, capsys):
    """The lock of a run that is going on (held here, as that run's process holds it): refused, naming the holder,
    before Hydra writes .hydra/ or train.log, and the holder's lock left as it was."""
    lock = tmp_path / "train.lock"
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": "2026-12-07T09:00:00"}
    lock.write_text(json.dumps(record))
    with lock.open("r+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code = run_app("train.py", *TINY, f"hydra.run.dir={tmp_path}", cwd=tmp_path, monkeypatch=monkeypatch)
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"{tmp_path} is in use by another run (pid {os.getpid()} on {socket.gethostname()}, started " in err
    assert f"its lock is {lock}). Wait for that run to end" in err
    assert [p.name for p in tmp_path.iterdir()] == ["train.lock"] and json.loads(lock.read_text()) == record


def test_a_run_directory_that_cannot_be_made_is_named_before_anything_else(tmp_path, monkeypatch, capsys):
    (tmp_path / "file").write_text("a file where the run directory's parent should be")
    run_dir = tmp_path / "file" / "run"
    code = run_app("train.py", *TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path, monkeypatch=monkeypatch)
    err = capsys.readouterr().err
    assert code == 1 and f"cannot write to {run_dir} (Not a directory)" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "removal",
    [
        "callbacks.progress_bar=null",
        "~callbacks.progress_bar",
        "callbacks.artifact_probe=null",
        "~callbacks.best_checkpoint",
    ],
)
def test_any_callback_can_be_removed(removal, tmp_path, monkeypatch):
    assert (
        run_app(
            "train.py",
            *TINY,
            "trainer.fast_dev_run=true",
            removal,
            f"hydra.run.dir={tmp_path}",
            cwd=tmp_path,
            monkeypatch=monkeypatch,
        )
        == 0
    )
    assert "val/dice" in read_metrics(tmp_path)


@pytest.mark.slow
def test_eval_without_a_progress_bar_and_on_mismatched_channels(tmp_path, monkeypatch, capsys):
    trained = tmp_path / "trained"
    assert (
        run_app(
            "train.py", *TINY, "trainer.max_epochs=1", f"hydra.run.dir={trained}", cwd=tmp_path, monkeypatch=monkeypatch
        )
        == 0
    )
    last = f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}"
    assert (
        run_app(
            "eval.py",
            last,
            "~callbacks.progress_bar",
            f"hydra.run.dir={tmp_path / 'e1'}",
            cwd=tmp_path,
            monkeypatch=monkeypatch,
        )
        == 0
    )
    folder = tmp_path / "rgb"
    for i in range(3):
        write_pair(folder, f"x{i}", (40, 40), rgb=True, mask_values=(0, 1), seed=i)
    code = run_app(
        "eval.py",
        last,
        "data=folder",
        f"data.source.root={folder}",
        "data.in_channels=3",
        "data.batch_size=1",
        f"hydra.run.dir={tmp_path / 'e2'}",
        cwd=tmp_path,
        monkeypatch=monkeypatch,
    )
    err = capsys.readouterr().err
    assert code == 1 and "model.in_channels=1 but data.in_channels=3" in err


def test_small_synthetic_images_work(tmp_path, monkeypatch):
    assert (
        run_app(
            "train.py",
            *TINY,
            "data.source.size=32",
            "data.crop_size=32",
            "trainer.fast_dev_run=true",
            f"hydra.run.dir={tmp_path}",
            cwd=tmp_path,
            monkeypatch=monkeypatch,
        )
        == 0
    )


FOUR_STEPS = [*TINY, "trainer.max_steps=4", "validations=2"]


@pytest.fixture(scope="module")
def four_steps(tmp_path_factory) -> Path:
    """The uninterrupted run of the signal tests."""
    run_dir = tmp_path_factory.mktemp("four_steps")
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert run_app("train.py", *FOUR_STEPS, f"hydra.run.dir={run_dir}", cwd=run_dir, monkeypatch=monkeypatch) == 0
    return run_dir


def csv_rows(run_dir: Path) -> list[dict]:
    with (run_dir / "csv" / "metrics.csv").open() as file:
        return list(csv.DictReader(file))


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, at, phase, step, code",
    [
        ("SIGTERM", "init", "the validation before training", 0, 143),
        ("SIGTERM", "fit", "training", 3, 143),
        ("SIGTERM", "figures", "the validation of the best checkpoint (and its figures)", 4, 143),
        ("SIGTERM", "test", "the test of the best checkpoint", 4, 143),
        ("SIGTERM", "test_end", "the test of the best checkpoint", 4, 143),  # after its last batch: no metrics.json
    ],  # SIGINT (Ctrl-C, exit 130): tests/test_resume.py stops a run with it and resumes
)
def test_a_signal_in_any_phase_stops_the_run_saying_where_and_how_to_go_on(
    name, at, phase, step, code, four_steps, tmp_path, monkeypatch, capsys
):
    """SIGTERM (a scheduler, docker stop) or SIGINT (Ctrl-C) in any phase: exit 128 + the signal, one line
    naming the phase and step and how to resume, no metrics.json (a stopped run is not a finished one)."""
    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    run = [*FOUR_STEPS, f"hydra.run.dir={tmp_path}"]
    send = ["+callbacks.signal._target_=fault_injection.SendSignal", f"+callbacks.signal.signal={name}"]
    assert (
        run_app(
            "train.py",
            *run,
            *send,
            f"+callbacks.signal.at={at}",
            "+callbacks.signal.step=2",
            cwd=tmp_path,
            monkeypatch=monkeypatch,
        )
        == code
    )
    err = capsys.readouterr().err
    resume = f"resume with the same overrides plus ckpt_path=last hydra.run.dir={tmp_path}"
    how = "no checkpoint was written yet: run the same command again" if at == "init" else resume
    message = f"stopped by {name} during {phase} at step {step}"
    assert re.search(rf"{re.escape(message)} \(epoch \d\); {re.escape(how)}\n", err)
    assert "Traceback" not in err and message in (tmp_path / "train.log").read_text()
    assert not (tmp_path / "metrics.json").exists()
    if at in ("figures", "test"):  # the resume command finishes the run (fit has nothing left) as if never stopped
        assert run_app("train.py", *run, "ckpt_path=last", cwd=tmp_path, monkeypatch=monkeypatch) == 0
        resumed, whole = (reproducible(read_metrics(d)) for d in (tmp_path, four_steps))
        assert resumed == whole and resumed["epoch"] == 2 and "test/dice" in resumed and "init/dice" in resumed
        assert csv_rows(tmp_path) == csv_rows(four_steps)


def test_non_finite_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "tests"))
    code = run_app(
        "train.py",
        *TINY,
        "trainer.max_epochs=4",
        "validations=null",
        "callbacks.finite_loss_guard.every_n_steps=1",
        "+callbacks.poison._target_=fault_injection.PoisonWeights",
        "+callbacks.poison.at_step=3",
        f"hydra.run.dir={tmp_path}",
        cwd=tmp_path,
        monkeypatch=monkeypatch,
    )
    err = capsys.readouterr().err
    assert code == 1 and "training loss is nan at step 4 (epoch 1): training stopped" in err
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())
    assert not (tmp_path / "metrics.json").exists()


def resume_into(run_dir: Path, checkpoint: Path, monkeypatch, *overrides: str) -> int:
    """train.py resuming ``checkpoint`` (TINY's, one epoch) for a second epoch, in ``run_dir``, with ``overrides``."""
    args = [*TINY, "trainer.max_epochs=2", "test=false", f"ckpt_path={checkpoint}", f"hydra.run.dir={run_dir}"]
    return run_app("train.py", *args, *overrides, cwd=run_dir.parent, monkeypatch=monkeypatch)


@pytest.mark.parametrize(
    "overrides, lines, fix",
    [
        (
            ["task.optimizer.lr=0.5"],
            ["task.optimizer.lr: 0.003 in the checkpoint, 0.5 now"],
            "(task.optimizer.lr: restored from the checkpoint, never changed on resume)",
        ),
        (
            ["seed=5"],
            ["data.seed: 0 in the checkpoint, 5 now", "seed: 0 in the checkpoint, 5 now"],
            "resume.allow_changes=[data.seed,seed]",
        ),
        (
            ["model.base_channels=8"],
            ["model.base_channels: 4 in the checkpoint, 8 now"],
            "(model.base_channels: restored from the checkpoint, never changed on resume)",
        ),
        (
            ["data.source.train=16"],
            ["data.source.train: 8 in the checkpoint, 16 now"],
            "resume.allow_changes=[data.source.train]",
        ),
        (["task.optimizer.lr=0.5", "resume.allow_changes=[task.optimizer]"], [], "task.optimizer cannot change"),
    ],
)
def test_a_resume_that_changes_what_shapes_the_run_is_refused_naming_each_change(
    overrides, lines, fix, checkpoint, tmp_path, monkeypatch, capsys
):
    run_dir = tmp_path / "resumed"
    assert resume_into(run_dir, checkpoint, monkeypatch, *overrides) == 1
    err = capsys.readouterr().err
    assert all(f"\n  - {line}" in err for line in lines) and fix in err and "Traceback" not in err
    assert sorted(p.name for p in run_dir.iterdir()) == [".hydra", "train.log"]  # nothing trained


@pytest.mark.slow
def test_a_resume_goes_on_with_what_cannot_change_the_result_and_with_the_changes_it_allows(
    checkpoint, tmp_path, monkeypatch
):
    run_dir = tmp_path / "resumed"
    neutral = ["callbacks.progress_bar.every_s=0", "data.eval_batch_size=2", "~logger"]
    allowed = ["seed=5", "resume.allow_changes=[seed,data.seed]"]
    assert resume_into(run_dir, checkpoint, monkeypatch, *neutral, *allowed) == 0
    assert "resume.allow_changes: seed changes from 0 (the checkpoint's) to 5" in (run_dir / "train.log").read_text()
    assert read_metrics(run_dir)["global_step"] == 4  # the second epoch trained


@pytest.mark.slow
def test_same_seed_twice_gives_the_same_metrics(checkpoint, tmp_path, monkeypatch):
    """A second run of the shared checkpoint run (conftest.trained), same config and seed: the same metrics."""
    first = checkpoint.parents[1]
    args = [*TINY, "trainer.max_epochs=1", "test=false", f"hydra.run.dir={tmp_path / 'again'}"]
    assert run_app("train.py", *args, cwd=tmp_path, monkeypatch=monkeypatch) == 0
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (first, tmp_path / "again"))
    assert reproducible(a) == reproducible(b)
    assert a["global_step"] == 2 and a["init/loss"] != a["val/loss"]  # it trained
    assert Path(a["best_checkpoint"]).relative_to(first) == Path(b["best_checkpoint"]).relative_to(tmp_path / "again")


def test_predict_refuses_to_write_over_its_input(checkpoint, tmp_path, monkeypatch, capsys):
    grey_image(tmp_path / "in" / "a.png", (40, 40))
    before = (tmp_path / "in" / "a.png").read_bytes()
    code = run_predict(checkpoint, tmp_path, monkeypatch, f"input={tmp_path / 'in'}", f"output={tmp_path / 'in' / '.'}")
    assert code == 1 and "is the input folder" in capsys.readouterr().err
    assert (tmp_path / "in" / "a.png").read_bytes() == before and len(list((tmp_path / "in").iterdir())) == 1


def test_predict_names_every_bad_input_and_writes_nothing(checkpoint, tmp_path, monkeypatch, capsys):
    for name, size in {"a": (40, 40), "b": (40, 40), "c": (3, 40), "d": (40, 40)}.items():
        grey_image(tmp_path / "in" / f"{name}.png", size)
    data = (tmp_path / "in" / "b.png").read_bytes()
    (tmp_path / "in" / "b.png").write_bytes(data[: len(data) // 2])
    code = run_predict(checkpoint, tmp_path, monkeypatch, f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}")
    err = capsys.readouterr().err
    assert code == 1 and "2 of 4 input image(s) cannot be predicted, nothing was written" in err
    assert "b.png: unreadable or truncated image" in err and "c.png is 3x40, smaller than 4 px" in err
    assert not (tmp_path / "out").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["in"]
    assert (
        run_predict(
            checkpoint,
            tmp_path,
            monkeypatch,
            f"input={tmp_path / 'in'}",
            f"output={tmp_path / 'out'}",
            "on_bad_input=skip",
        )
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "d.png"]


def test_predict_on_a_missing_folder_names_the_key_and_leaves_no_output(checkpoint, tmp_path, monkeypatch, capsys):
    code = run_predict(checkpoint, tmp_path, monkeypatch, f"input={tmp_path / 'nowhere'}", f"output={tmp_path / 'out'}")
    err = capsys.readouterr().err
    assert code == 1 and f"input: {tmp_path / 'nowhere'} is not a directory" in err and "data.root" not in err
    assert not (tmp_path / "out").exists()


def test_an_unknown_mode_in_a_sweep_runs_nothing_and_the_report_says_why(tmp_path, monkeypatch, capsys):
    code = run_app(
        "train.py",
        "-m",
        "upsample=deconv,nonexistent",
        *TINY,
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        cwd=tmp_path,
        monkeypatch=monkeypatch,
    )
    assert code == 1 and "Could not find 'upsample/nonexistent'" in capsys.readouterr().err
    assert not list(tmp_path.rglob("metrics.json"))
    with pytest.raises(FileNotFoundError, match=r"(?s)no run directory.*unknown option among the sweep values"):
        write_report(tmp_path / "sweep")


@pytest.mark.slow
def test_a_member_failing_at_run_time_logs_its_error_and_the_report_quotes_it(tmp_path, monkeypatch):
    code = run_app(
        "train.py",
        "-m",
        "upsample=deconv",
        "model.depth=2,6",
        *TINY[1:],
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={tmp_path}",
        cwd=tmp_path,
        monkeypatch=monkeypatch,
    )
    assert code == 1
    assert (tmp_path / "0" / "metrics.json").is_file() and not (tmp_path / "1" / "metrics.json").exists()
    log = (tmp_path / "1" / "train.log").read_text()
    assert "data.crop_size=48 is smaller than 64 px" in log
    write_report(tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert "2 runs: 1 finished, 1 failed" in report and "data.crop_size=48 is smaller than 64 px" in report


def test_a_stop_at_any_moment_leaves_metrics_csv_whole(tmp_path, monkeypatch):
    """kill -9 or a second Ctrl-C while metrics.csv is rewritten (a new key; a resume dropping the rows after its
    checkpoint) leaves the old file whole; a resume stopped half way recovers every row."""
    path = tmp_path / "csv" / "metrics.csv"
    logger = CSVLogger(save_dir=tmp_path, name="csv", version="")
    for step in range(3):
        logger.log_metrics({"train/loss": 1.0 / (step + 1)}, step=step)
    whole = path.read_text()

    def stopped_here(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(csv.DictWriter, "writerows", stopped_here)
    with pytest.raises(KeyboardInterrupt):
        logger.log_metrics({"val/dice": 0.5}, step=3)  # a new column: the file is written again
    monkeypatch.undo()
    assert path.read_text() == whole

    monkeypatch.setattr(csv_logger, "write_rows", stopped_here)
    resumed = CSVLogger(save_dir=tmp_path, name="csv", version="")
    resumed.resume_at(2)
    with pytest.raises(KeyboardInterrupt):
        resumed.log_metrics({"train/loss": 0.3}, step=2)  # stopped as the resumed run starts its log
    monkeypatch.undo()
    again = CSVLogger(save_dir=tmp_path, name="csv", version="")
    again.resume_at(2)
    again.log_metrics({"train/loss": 0.3}, step=2)
    with path.open() as file:
        assert [(r["step"], r["train/loss"]) for r in csv.DictReader(file)] == [
            ("0", "1.0"),
            ("1", "0.5"),
            ("2", "0.3"),
        ]
