"""Loading a checkpoint runs no code: neither through pickle nor through the config stored inside it."""

from __future__ import annotations

import pathlib

import pytest
import torch

from unet_upsampling.checkpoint import CONFIG_KEY, load_checkpoint, read_checkpoint
from unet_upsampling.errors import CheckpointError

from conftest import TINY, run_app


class Payload:
    """What an attacker pickles: unpickling it creates ``marker``."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> pathlib.Path:
    run_dir = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert (
            run_app(
                "train.py",
                *TINY,
                "trainer.max_epochs=1",
                "test=false",
                f"hydra.run.dir={run_dir}",
                cwd=run_dir,
                monkeypatch=monkeypatch,
            )
            == 0
        )
    return run_dir / "checkpoints" / "last.ckpt"


def tampered(checkpoint: pathlib.Path, tmp_path: pathlib.Path, edit) -> pathlib.Path:
    contents = torch.load(checkpoint, weights_only=True)
    edit(contents[CONFIG_KEY])
    path = tmp_path / "tampered.ckpt"
    torch.save(contents, path)
    return path


def test_project_checkpoints_load_as_plain_data(checkpoint):
    task, config = load_checkpoint(checkpoint)
    assert config["upsample"]["_target_"].startswith("unet_upsampling.") and not task.training


@pytest.mark.parametrize("entry", ["eval.py", "predict.py"])
def test_a_pickled_payload_is_refused_before_it_runs(entry, checkpoint, tmp_path, monkeypatch, capsys):
    marker = tmp_path / "pwned"
    contents = torch.load(checkpoint, weights_only=True)
    contents["payload"] = Payload(marker)
    evil = tmp_path / "evil.ckpt"
    torch.save(contents, evil)
    (tmp_path / "in").mkdir()
    args = {"eval.py": [], "predict.py": [f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}"]}[entry]
    code = run_app(
        entry, f"ckpt_path={evil}", *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, monkeypatch=monkeypatch
    )
    err = capsys.readouterr().err
    assert code == 1 and f"{evil}: refused to load" in err and "Traceback" not in err
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def payload(target: str, marker: pathlib.Path) -> list:
    """Arguments that make ``target(*args)`` create ``marker``."""
    return {"builtins.open": [str(marker), "w"], "os.makedirs": [str(marker)]}.get(target, [f"touch {marker}"])


@pytest.mark.parametrize("target", ["builtins.open", "os.makedirs"])
def test_the_payloads_are_real_when_nothing_guards_them(target, tmp_path):
    from hydra.utils import instantiate

    instantiate({"_target_": target, "_args_": payload(target, tmp_path / "pwned")})
    assert (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "where, target",
    [
        ("model", "builtins.open"),
        ("model", "os.makedirs"),
        ("task", "os.system"),
        ("upsample", "os.system"),
        ("model", "unet_upsampling.train.os.system"),  # our prefix, someone else's function
        ("task", "unet_upsampling.jobs.Path"),  # our module, someone else's class
        ("upsample", "not_a_module.anywhere"),
    ],
)
def test_a_stored_config_naming_foreign_targets_is_refused(where, target, checkpoint, tmp_path):
    marker = tmp_path / "pwned"

    def edit(config):
        node = config["model"]["upsample"] if where == "upsample" else config[where]
        node["_target_"] = target
        node["_args_"] = payload(target, marker)
        node.pop("_partial_", None)

    evil = tampered(checkpoint, tmp_path, edit)
    key = {"model": "model._target_", "upsample": "model.upsample._target_", "task": "task._target_"}[where]
    with pytest.raises(CheckpointError, match=rf"{evil}: {key}={target!r} is not one of the classes"):
        load_checkpoint(evil)
    assert not marker.exists()


def test_a_foreign_target_deep_in_the_eval_pipeline_is_refused(checkpoint, tmp_path):
    from unet_upsampling.builders import rebuild_eval_transform

    def edit(config):
        config["data"]["eval_transform"].append({"_target_": "subprocess.call", "args": ["true"]})

    evil = tampered(checkpoint, tmp_path, edit)
    with pytest.raises(CheckpointError, match=r"data.eval_transform\[0\]._target_='subprocess.call'"):
        rebuild_eval_transform(read_checkpoint(evil)[CONFIG_KEY], str(evil))


def test_interpolations_in_a_stored_config_are_refused(checkpoint, tmp_path):
    evil = tampered(checkpoint, tmp_path, lambda config: config["model"].update(depth="${oc.env:HOME}"))
    with pytest.raises(CheckpointError, match=r"model.depth='\$\{oc.env:HOME\}' is an interpolation"):
        load_checkpoint(evil)


def test_a_file_that_is_no_checkpoint_of_ours_is_named(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match=rf"{path} was not written by this project's train.py"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match=rf"checkpoint {tmp_path / 'missing.ckpt'} does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")
