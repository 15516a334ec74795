"""Bad input gets a clear error; faults leave nothing lost; the same seed gives the same result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.errors import MissingConfigException
from hydra.utils import instantiate
from PIL import Image

from unet_upsampling.checkpoint import build_module
from unet_upsampling.checks import check_run

from conftest import ROOT, TINY, compose_config, read_metrics, run_entry, write_pair


def setup_folder(root: Path, *overrides: str):
    dm = instantiate(
        compose_config(
            "train",
            [
                "data=folder",
                f"data.root={root}",
                "data.crop_size=32",
                "data.batch_size=2",
                "data.mask_values={0:0,255:1}",
                *overrides,
            ],
        ).data
    )
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
            r"data\.convert_channels=true",
        ),
        ("values", r"img_4\.png: values \[7\] are not in data\.mask_values"),
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
    with pytest.raises(ValueError, match=rf"(?s)1 bad sample\(s\) in .*{message}.*data\.on_bad_sample=skip"):
        setup_folder(folder_binary_255)


def test_skip_leaves_bad_samples_out_and_lists_them(folder_binary_255, caplog):
    (folder_binary_255 / "images" / "img_1.png").write_bytes(b"not a png")
    dm = setup_folder(folder_binary_255, "data.on_bad_sample=skip")
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
    dm = setup_folder(folder_binary_255, "data.convert_channels=true")
    assert all(image.shape[0] == 1 for ds in dm.splits.values() for image, _ in ds)


def test_empty_folder_and_too_few_images(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(FileNotFoundError, match="no images .* in .*images"):
        setup_folder(tmp_path)
    for i in range(3):
        write_pair(tmp_path, f"x{i}", (40, 40), rgb=False, mask_values=(0, 255), seed=i)
    with pytest.raises(ValueError, match="the train split has 2 images, fewer than data.batch_size=4"):
        setup_folder(tmp_path, "data.batch_size=4")
    with pytest.raises(FileNotFoundError, match="data.root=.*missing is not a directory"):
        setup_folder(tmp_path / "missing")


def test_unknown_upsample_mode_lists_the_valid_ones():
    with pytest.raises(MissingConfigException, match="(?s)Could not find 'upsample/bicubic'.*deconv_k3.*nearest_conv"):
        compose_config("train", ["upsample=bicubic"])


def test_inconsistent_settings_are_refused_before_training():
    def check(*overrides):
        cfg = compose_config("train", list(overrides))
        check_run(instantiate(cfg.data), build_module(cfg).net)

    with pytest.raises(ValueError, match=r"model.num_classes=3 but data.num_classes=2"):
        check("model.num_classes=3")
    with pytest.raises(ValueError, match=r"data.crop_size=24 is smaller than 2\*\*model.depth = 32"):
        check("model.depth=5", "data.crop_size=24")
    with pytest.raises(Exception, match=r"(?s)o = \(i-1\)s - 2p \+ k \+ output_padding = 2i \+ 3"):
        check("upsample=deconv_k3", "upsample.padding=-0", "upsample.kernel_size=5")
    with pytest.raises(Exception, match=r"upsample.kernel_size=2: .* odd kernel size; use upsample.kernel_size=3"):
        check("upsample=nearest_conv", "upsample.kernel_size=2")


def test_non_finite_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path):
    result = run_entry(
        "train.py",
        *TINY,
        "trainer.max_epochs=4",
        "callbacks.finite_loss_guard.every_n_steps=1",
        "+callbacks.poison._target_=fault_injection.PoisonWeights",
        "+callbacks.poison.at_step=3",
        f"hydra.run.dir={tmp_path}",
        cwd=tmp_path,
        check=False,
        env={"PYTHONPATH": str(ROOT / "tests")},
    )
    assert result.returncode != 0
    assert "training loss is nan at step 4 (epoch 1): training stopped" in result.stderr + result.stdout
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 0 and all(
        torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point()
    )
    assert not (tmp_path / "metrics.json").exists()


COMPARED = lambda m: {k: v for k, v in m.items() if k.startswith(("val/", "test/")) or k in ("epoch", "global_step")}  # noqa: E731


def test_a_killed_run_resumes_from_last_and_matches_an_uninterrupted_one(tmp_path):
    args = [*TINY, "data.splits.train=16", "trainer.max_epochs=6", "seed=3"]
    run_entry("train.py", *args, f"hydra.run.dir={tmp_path / 'whole'}", cwd=tmp_path)
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py"), *args, f"hydra.run.dir={killed}"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "LOG_DIR": str(tmp_path / "logs")},
    )
    deadline = time.time() + 300
    while not (killed / "checkpoints" / "last.ckpt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # somewhere in the following epochs
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "metrics.json").exists(), "the run finished before it was killed: kill it sooner"
    for checkpoint in (killed / "checkpoints").glob("*.ckpt"):
        torch.load(checkpoint, weights_only=False)  # every file on disk is whole
    run_entry("train.py", *args, "ckpt_path=last", f"hydra.run.dir={killed}", cwd=tmp_path)
    assert COMPARED(read_metrics(killed)) == COMPARED(read_metrics(tmp_path / "whole"))


def test_same_seed_twice_gives_the_same_metrics(tmp_path):
    for name in ("a", "b"):
        run_entry("train.py", *TINY, "trainer.max_epochs=2", "seed=7", f"hydra.run.dir={tmp_path / name}", cwd=tmp_path)
    a, b = (json.loads((tmp_path / n / "metrics.json").read_text()) for n in ("a", "b"))
    wall_clock_and_paths = {"train_time_s", "best_checkpoint"}
    assert {k: v for k, v in a.items() if k not in wall_clock_and_paths} == {
        k: v for k, v in b.items() if k not in wall_clock_and_paths
    }
    assert a["best_checkpoint"].replace(str(tmp_path / "a"), "") == b["best_checkpoint"].replace(
        str(tmp_path / "b"), ""
    )
