"""eval.py scores a checkpoint as the end of train.py does, on the data the checkpoint was trained on."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from unet_upsampling.checkpoint import CONFIG_KEY, load_checkpoint, read_checkpoint
from unet_upsampling.errors import CheckpointError
from unet_upsampling.trust import rebuild_datamodule

from conftest import read_metrics, run_app, write_pair

SIZES = [(61, 77), (53, 49), (70, 65), (49, 81), (57, 57), (64, 51)]


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory) -> Path:
    """One epoch on 0/255 folder data kept under DATA_DIR=<base>/machine_a (the "training machine")."""
    base = tmp_path_factory.mktemp("eval")
    for i, size in enumerate(SIZES):
        write_pair(base / "machine_a" / "binary", f"img_{i}", size, rgb=False, mask_values=(0, 255), seed=i)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("DATA_DIR", str(base / "machine_a"))
        code = run_app(
            "train.py",
            "data=folder",
            f"data.source.root={base / 'machine_a' / 'binary'}",
            "data.source.mask_values={0:0,255:1}",
            "data.crop_size=32",
            "data.batch_size=2",
            "data.min_batches_per_epoch=1",
            "model.depth=2",
            "model.base_channels=4",
            "trainer.max_epochs=1",
            f"hydra.run.dir={base / 'run'}",
            cwd=base,
            monkeypatch=monkeypatch,
        )
    assert code == 0
    return base / "run"


def run_eval(folder_run: Path, tmp_path: Path, monkeypatch, data_dir: Path, *args: str) -> int:
    monkeypatch.setenv("DATA_DIR", str(data_dir))
    return run_app(
        "eval.py",
        f"ckpt_path={read_metrics(folder_run)['best_checkpoint']}",
        *args,
        f"hydra.run.dir={tmp_path / 'eval'}",
        cwd=tmp_path,
        monkeypatch=monkeypatch,
    )


def test_eval_scores_the_checkpoints_own_data_and_writes_what_training_writes(
    folder_run, tmp_path, monkeypatch, capsys
):
    assert run_eval(folder_run, tmp_path, monkeypatch, folder_run.parent / "machine_a") == 0
    trained, evaluated = read_metrics(folder_run), read_metrics(tmp_path / "eval")
    assert evaluated["val/dice"] == pytest.approx(trained["val/dice"], abs=1e-6)  # the folder data, not synthetic
    measured = {k for k in trained if k.startswith(("val/", "test/"))}
    assert measured == {k for k in evaluated if k.startswith(("val/", "test/"))}
    assert {"val/flat_std", "val/flat_pef2", "val/noise_pef2", "val/kernel_imbalance"} <= evaluated.keys()
    assert evaluated["val/flat_std"] == pytest.approx(trained["val/flat_std"], rel=1e-5)
    step = torch.load(trained["best_checkpoint"], weights_only=True)["global_step"]
    assert evaluated["global_step"] == step and evaluated["params"] == trained["params"]
    for name in ("flat_field.png", "predictions.png", "predictions.npz", "artifacts.npz", "eval.log"):
        assert (tmp_path / "eval" / name).is_file(), name
    assert set(np.load(tmp_path / "eval" / "artifacts.npz")) == {"final_flat", "final_spectrum"}
    log = (tmp_path / "eval" / "eval.log").read_text()
    out = capsys.readouterr().out
    assert (
        f"evaluation of the checkpoint at step {step}" in log and f"evaluation of the checkpoint at step {step}" in out
    )
    assert "before training" not in log + out
    assert f"data: the checkpoint's ({folder_run.parent / 'machine_a' / 'binary'})" in out


def test_the_stored_root_follows_data_dir_and_a_missing_one_is_named_with_the_fix(
    folder_run, tmp_path, monkeypatch, capsys
):
    moved = tmp_path / "machine_b"
    shutil.copytree(folder_run.parent / "machine_a" / "binary", moved / "binary")
    assert run_eval(folder_run, tmp_path, monkeypatch, moved) == 0
    assert f"data: the checkpoint's ({moved / 'binary'})" in capsys.readouterr().out
    dice = read_metrics(tmp_path / "eval")["val/dice"]
    assert dice == pytest.approx(read_metrics(folder_run)["val/dice"], abs=1e-6)

    assert run_eval(folder_run, tmp_path, monkeypatch, tmp_path / "nowhere") == 1
    err = capsys.readouterr().err
    assert f"was trained on data.source.root={folder_run.parent / 'machine_a' / 'binary'}" in err
    assert f"{tmp_path / 'nowhere' / 'binary'} does not exist" in err and "+data.source.root=DIR" in err
    assert f"set DATA_DIR (now {tmp_path / 'nowhere'})" in err and "Traceback" not in err

    (tmp_path / "eval" / "metrics.json").unlink()
    code = run_eval(folder_run, tmp_path, monkeypatch, tmp_path / "nowhere", f"+data.source.root={moved / 'binary'}")
    assert code == 0 and read_metrics(tmp_path / "eval")["val/dice"] == pytest.approx(dice, abs=1e-6)


@pytest.mark.parametrize(
    "key, target",
    [
        ("data._target_", "os.system"),
        ("data._target_", "unet_upsampling.task.SegmentationTask"),  # the project's, but not a DataModule
        ("data.source._target_", "subprocess.call"),
        ("data.source._target_", "unet_upsampling.data.folder.read_image"),  # the project's, not a split factory
        ("data.eval_transform[0]._target_", "subprocess.call"),
    ],
)
def test_a_stored_data_config_may_name_only_the_projects_data_classes(key, target, folder_run, tmp_path):
    data = read_checkpoint(read_metrics(folder_run)["best_checkpoint"])[CONFIG_KEY]["data"]
    marker = tmp_path / "pwned"
    node = {"data._target_": data, "data.source._target_": data["source"]}.get(key, {})
    if key.startswith("data.eval_transform"):
        data["eval_transform"] = [node]
    node.update({"_target_": target, "_args_": [f"touch {marker}"]})
    node.pop("_partial_", None)
    with pytest.raises(CheckpointError, match=re.escape(f"evil.ckpt: {key}={target!r} is not one of")):
        rebuild_datamodule(data, "evil.ckpt")
    assert not marker.exists()


def test_a_stored_download_is_turned_off_and_the_training_pipeline_is_not_rebuilt(tmp_path):
    marker = tmp_path / "pwned"
    data = {
        "_target_": "unet_upsampling.data.SegmentationDataModule",
        "source": {
            "_target_": "unet_upsampling.data.torchvision_sets.voc_splits",
            "_partial_": True,
            "root": str(tmp_path),
            "download": True,
        },
        "train_transform": [{"_target_": "subprocess.call", "_args_": [f"touch {marker}"]}],
        "eval_transform": [],
        "num_classes": 21,
        "in_channels": 3,
        "crop_size": 8,
    }
    datamodule = rebuild_datamodule(data, "stored.ckpt")
    assert datamodule.source.keywords["download"] is False and not marker.exists()


@pytest.mark.parametrize("step", ["12", -1, True, None])
def test_a_checkpoint_without_a_step_count_is_refused(step, folder_run, tmp_path):
    contents = torch.load(read_metrics(folder_run)["best_checkpoint"], weights_only=True)
    contents["global_step"] = step
    torch.save(contents, tmp_path / "odd.ckpt")
    with pytest.raises(
        CheckpointError, match=re.escape(f"odd.ckpt: global_step holds {step!r}, where train.py writes a count")
    ):
        load_checkpoint(tmp_path / "odd.ckpt")
