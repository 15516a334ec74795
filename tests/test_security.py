"""Loading a checkpoint runs no code (neither through pickle nor through the config stored inside it), and nothing
read from one reaches the filesystem outside its run or the network; checkpoints are written atomically."""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import sys

import fsspec
import pytest
import tomllib
import torch

from unet_upsampling.checkpoint import (
    CONFIG_KEY,
    CheckpointTrust,
    confine_states,
    inside,
    load_checkpoint,
    read_checkpoint,
)
from unet_upsampling.errors import CheckpointError

from conftest import ROOT, TINY, offline_timm, run_app


class Payload:
    """What an attacker pickles: unpickling it creates ``marker``."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


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
        ("task", "unet_upsampling.resume.Path"),  # our module, someone else's class
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
    from unet_upsampling.trust import rebuild_eval_transform

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


# --- Stored configs name only a network, an upsample block and the task


@pytest.mark.parametrize(
    "where, target",
    [
        ("model", "unet_upsampling.loggers.CSVLogger"),  # the case: our class, with an ftp:// save_dir
        ("model", "lightning.pytorch.loggers.CSVLogger"),
        ("upsample", "unet_upsampling.models.UNet"),  # admitted as a network, not as a block
        ("task", "unet_upsampling.models.upsample.TransposedConv"),
    ],
)
def test_a_stored_class_that_is_no_network_block_or_task_is_refused(where, target, checkpoint, tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr("unet_upsampling.loggers.CSVLogger.__init__", lambda *args, **kwargs: built.append(args))

    def edit(config):
        node = config["model"]["upsample"] if where == "upsample" else config[where]
        node.update(_target_=target, save_dir="ftp://127.0.0.1:9/")

    evil = tampered(checkpoint, tmp_path, edit)
    key = {"model": "model._target_", "upsample": "model.upsample._target_", "task": "task._target_"}[where]
    with pytest.raises(CheckpointError, match=rf"{evil}: {re.escape(key)}={target!r} is not one of the classes"):
        load_checkpoint(evil)
    assert not built


@pytest.mark.parametrize("target", [["builtins.open"], {"_target_": "builtins.open"}, 3])
def test_a_stored_target_that_is_no_string_is_refused(target, checkpoint, tmp_path):
    evil = tampered(checkpoint, tmp_path, lambda config: config["model"]["upsample"].update(_target_=target))
    with pytest.raises(CheckpointError, match=rf"{evil}: model.upsample._target_=.* is not one of the classes"):
        load_checkpoint(evil)


def test_a_stored_target_is_refused_before_its_module_is_imported(checkpoint, tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    (tmp_path / "planted.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\nclass Net: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    evil = tampered(checkpoint, tmp_path, lambda config: config["model"].update(_target_="planted.Net"))
    with pytest.raises(CheckpointError, match=r"model._target_='planted.Net' is not one of the classes"):
        load_checkpoint(evil)
    assert not marker.exists() and "planted" not in sys.modules


@pytest.mark.parametrize("where", ["model", "model.upsample", "task"])
def test_positional_arguments_in_a_stored_config_are_refused_naming_the_key(where, checkpoint, tmp_path):
    def edit(config):
        node = {"model": config["model"], "model.upsample": config["model"]["upsample"], "task": config["task"]}[where]
        node["_args_"] = [True]

    evil = tampered(checkpoint, tmp_path, edit)
    with pytest.raises(CheckpointError, match=rf"{evil}: {re.escape(where)}._args_ is refused"):
        load_checkpoint(evil)


def test_a_rebuilt_encoder_unet_never_downloads(monkeypatch):
    """``pretrained`` is dropped from a stored model, and cannot come back as a positional argument."""
    from unet_upsampling.trust import rebuild_task

    created = offline_timm(monkeypatch)
    upsample = {"_target_": "unet_upsampling.models.upsample.TransposedConv", "_partial_": True}
    model = {"_target_": "unet_upsampling.models.EncoderUNet", "encoder": "resnet18", "num_classes": 2}
    task = {"_target_": "unet_upsampling.task.SegmentationTask", "num_classes": 2}
    assert rebuild_task({"model": {**model, "upsample": upsample, "pretrained": True}, "task": task}, "x.ckpt")
    assert created == ["resnet18"]
    with pytest.raises(CheckpointError, match=r"x.ckpt: model._args_ is refused"):
        rebuild_task({"model": {**model, "upsample": upsample, "_args_": [upsample, "resnet18", 3, 2, True]}}, "x.ckpt")


def test_every_shipped_network_upsample_mode_and_task_is_admitted():
    """The allowlist follows the project: what train.py stores for each network, mode and task can be rebuilt."""
    from hydra import compose, initialize_config_module

    from unet_upsampling.trust import STORED_CLASSES

    configs = ROOT / "src" / "unet_upsampling" / "configs"
    with initialize_config_module("unet_upsampling.configs", version_base="1.3"):
        for group, key in (("model", "model"), ("upsample", "model.upsample"), ("task", "task")):
            for path in (configs / group).glob("*.yaml"):
                assert compose(f"{group}/{path.stem}")[group]["_target_"] in STORED_CLASSES[key], path


def test_an_eval_transform_that_reads_files_is_refused(checkpoint, tmp_path):
    from unet_upsampling.trust import rebuild_eval_transform

    def edit(config):
        config["data"]["eval_transform"] = [
            {"_target_": "albumentations.PadIfNeeded", "min_height": 8, "min_width": 8},
            {"_target_": "albumentations.HistogramMatching", "reference_images": ["/etc/passwd"]},
        ]

    config = read_checkpoint(tampered(checkpoint, tmp_path, edit))[CONFIG_KEY]
    with pytest.raises(CheckpointError, match=r"data.eval_transform\[1\]._target_='albumentations.HistogramMatching'"):
        rebuild_eval_transform(config, "x.ckpt")
    config["data"]["eval_transform"].pop()
    assert rebuild_eval_transform(config, "x.ckpt")


# --- Paths and URLs in callback states stay inside the run


def test_inside_admits_only_checkpoint_files_directly_in_the_directory(tmp_path):
    checkpoints = tmp_path / "run" / "checkpoints"
    (checkpoints / "dir.ckpt").mkdir(parents=True)
    (checkpoints / "link.ckpt").symlink_to(tmp_path)
    (checkpoints / "epoch_001.ckpt").write_bytes(b"x")
    (checkpoints / "notes.txt").write_bytes(b"x")
    (tmp_path / "victim.ckpt").write_bytes(b"x")
    directories = (checkpoints.resolve(),)
    assert inside(f"{checkpoints}/epoch_001.ckpt", directories)
    assert inside(f"{checkpoints}/../checkpoints/epoch_001.ckpt", directories)
    for value in [
        f"{checkpoints}/../../victim",
        f"{checkpoints}/../../victim.ckpt",
        f"{checkpoints}/link.ckpt",
        f"{checkpoints}/dir.ckpt",
        f"{checkpoints}/sub/x.ckpt",
        f"{checkpoints}/notes.txt",
        f"{checkpoints}/missing.ckpt",
        "checkpoints/last.ckpt",  # relative: resolved against whatever the working directory is
        "ftp://127.0.0.1:9/x.ckpt",
        f"file://{checkpoints}/last.ckpt",
        f"{checkpoints}/x.ckpt::memory://y",
        7,
        None,
    ]:
        assert not inside(value, directories), value
    assert inside(str(checkpoints), directories, itself=True)
    assert not inside(str(tmp_path), directories, itself=True)


def states(contents: dict) -> dict[str, dict]:
    """The ModelCheckpoint states of a checkpoint of ours by role: ``best`` (val/dice) and ``last``."""
    return {
        "best" if state["monitor"] else "last": state
        for name, state in contents["callbacks"].items()
        if name.startswith("ModelCheckpoint")
    }


@pytest.mark.parametrize(
    "key, value",
    [
        ("best_model_path", "{checkpoints}/../../victim"),
        ("kth_best_model_path", "ftp://127.0.0.1:9/x.ckpt"),
        ("best_k_models", {"memory://x.ckpt": 0.5}),
        ("best_k_models", ["{checkpoints}/epoch_000.ckpt"]),
        ("best_model_path", 3),
    ],
)
def test_a_path_of_the_top_k_record_outside_the_run_drops_the_record(key, value, trained, checkpoint, caplog):
    from lightning.pytorch.callbacks import ModelCheckpoint

    checkpoints = trained / "checkpoints"
    contents = torch.load(checkpoint, weights_only=True)
    best = states(contents)["best"]
    best[key] = value.format(checkpoints=checkpoints) if isinstance(value, str) else value
    name = next(name for name, state in contents["callbacks"].items() if state is best)
    assert confine_states(contents, (checkpoints.resolve(),), "x.ckpt") == [f"{name}.{key}"]
    assert best["best_model_path"] == "" and best["best_model_score"] is None
    assert not {"best_k_models", "kth_best_model_path", "kth_value"} & best.keys()
    assert "x.ckpt: dropped" in caplog.text and repr(key) in caplog.text
    restored = ModelCheckpoint(dirpath=checkpoints, monitor="val/dice", mode="max")
    restored.load_state_dict(best)  # Lightning takes the confined state as it is
    assert restored.best_model_path == "" and restored.best_k_models == {}
    assert states(contents)["last"]["best_model_path"] == str(checkpoints.resolve() / "last.ckpt")


def test_a_run_directory_of_its_own_keeps_every_path(trained, checkpoint):
    contents = torch.load(checkpoint, weights_only=True)
    before = repr(contents["callbacks"])
    assert confine_states(contents, ((trained / "checkpoints").resolve(),), "x.ckpt") == []
    assert repr(contents["callbacks"]) == before


URL = "s3://bucket/x"


@pytest.mark.parametrize(
    "where, place",
    [
        (
            "loops['fit_loop']['state_dict']['source']",
            lambda c: c["loops"]["fit_loop"]["state_dict"].update(source=URL),
        ),
        ("SegmentationDataModule['root']", lambda c: c.update(SegmentationDataModule={"root": URL})),
        (
            f"callbacks['RunRecord']['init_metrics'][{URL!r}] (a key)",
            lambda c: c["callbacks"]["RunRecord"]["init_metrics"].update({URL: 1.0}),
        ),
    ],
    ids=["loop state", "datamodule state", "callback state key"],
)
def test_a_url_anywhere_else_in_the_file_refuses_it(where, place, trained, checkpoint):
    contents = torch.load(checkpoint, weights_only=True)
    contents[CONFIG_KEY]["logger"] = {"mlflow": {"tracking_uri": "http://mlflow:5000"}}  # the run's own config: data
    directories = ((trained / "checkpoints").resolve(),)
    assert confine_states(contents, directories, "x.ckpt") == []
    place(contents)
    with pytest.raises(CheckpointError, match=re.escape(f"x.ckpt: {where} holds {URL!r}, a URL")):
        confine_states(contents, directories, "x.ckpt")


def test_checkpoint_trust_removes_only_checkpoint_files_of_the_run(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "epoch_000.ckpt").write_bytes(b"x")
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep")
    trust = CheckpointTrust([checkpoints])
    for path in [f"{checkpoints}/../victim", str(victim), "ftp://127.0.0.1:9/x.ckpt", f"{checkpoints}/missing.ckpt"]:
        trust.remove_checkpoint(path)
    assert (victim / "precious.txt").exists()
    trust.remove_checkpoint(str(checkpoints / "epoch_000.ckpt"))
    assert not (checkpoints / "epoch_000.ckpt").exists()


def test_checkpoint_trust_loads_as_data_only_whatever_lightning_asks(checkpoint, tmp_path):
    marker = tmp_path / "pwned"
    contents = torch.load(checkpoint, weights_only=True)
    contents["payload"] = Payload(marker)
    evil = tmp_path / "evil.ckpt"
    torch.save(contents, evil)
    with pytest.raises(CheckpointError, match="refused to load"):
        CheckpointTrust([tmp_path]).load_checkpoint(str(evil), weights_only=False)
    assert not marker.exists()


# --- Atomic writes


def test_a_checkpoint_is_written_beside_its_destination_whatever_tmpdir_is(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("TMPDIR", str(elsewhere))
    monkeypatch.setattr("tempfile.tempdir", str(elsewhere))
    written = []
    save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, file: (written.append(file.name), save(obj, file)))
    destination = tmp_path / "checkpoints" / "last.ckpt"
    CheckpointTrust([destination.parent]).save_checkpoint({"weights": torch.ones(3)}, str(destination))
    assert written == [f"{destination}.tmp-{os.getpid()}"]
    assert torch.equal(torch.load(destination, weights_only=True)["weights"], torch.ones(3))
    assert list(elsewhere.iterdir()) == [] and [p.name for p in destination.parent.iterdir()] == ["last.ckpt"]


def test_a_write_that_fails_midway_leaves_the_old_checkpoint_whole(tmp_path, monkeypatch):
    destination = tmp_path / "last.ckpt"
    trust = CheckpointTrust([tmp_path])
    trust.save_checkpoint({"step": 1}, str(destination))
    old = destination.read_bytes()

    def dies_midway(obj, file):
        file.write(old[: len(old) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(OSError, match="No space left"):
        trust.save_checkpoint({"step": 2}, str(destination))
    assert destination.read_bytes() == old and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


# --- The dependency floor


def test_pyproject_floors_are_the_ones_checked_at_import():
    from unet_upsampling.versions import FLOORS

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = dict(re.match(r"([\w-]+)>=([\d.]+)", d).groups() for d in dependencies if ">=" in d)
    for name, (floor, _) in FLOORS.items():
        assert floors[name] == ".".join(map(str, floor)), name


@pytest.mark.parametrize(
    "name, installed", [("torch", "2.5.1+cu124"), ("torchvision", "0.20.1"), ("lightning", "2.5.6")]
)
def test_importing_the_package_with_a_version_below_the_floor_names_both(name, installed, monkeypatch):
    import importlib
    from importlib.metadata import version

    import unet_upsampling

    monkeypatch.setattr("unet_upsampling.versions.version", lambda n: installed if n == name else version(n))
    with pytest.raises(ImportError, match=rf"needs {name}>=\d+\.\d+ .*but {name} {re.escape(installed)} is installed"):
        importlib.reload(unet_upsampling)
    monkeypatch.undo()
    importlib.reload(unet_upsampling)


# --- Resuming from a tampered checkpoint (train.py ckpt_path=last) touches nothing outside its run


def moved_run(trained: pathlib.Path, tmp_path: pathlib.Path, edit) -> pathlib.Path:
    """A copy of the ``trained`` run at ``tmp_path/run``, the paths in its last.ckpt moved with it, then
    ``edit(contents, checkpoints)``: a run that resumes as it is, but for the edit."""
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    last = run / "checkpoints" / "last.ckpt"
    contents = torch.load(last, weights_only=True)
    old, new = str(trained.resolve()), str(run.resolve())
    for state in states(contents).values():
        for key in ("best_model_path", "kth_best_model_path", "last_model_path", "dirpath"):
            state[key] = state[key].replace(old, new)
        state["best_k_models"] = {path.replace(old, new): score for path, score in state["best_k_models"].items()}
    edit(contents, run / "checkpoints")
    torch.save(contents, last)
    return run


def resume(run: pathlib.Path, monkeypatch) -> int:
    return run_app(
        "train.py",
        *TINY,
        "trainer.max_epochs=2",
        "test=false",
        "ckpt_path=last",
        f"hydra.run.dir={run}",
        cwd=run.parent,
        monkeypatch=monkeypatch,
    )


def as_previous_last(contents: dict, target: str) -> None:
    """The last.ckpt callback (no monitor, top 1) removes its previous ``best_model_path`` at its next save."""
    states(contents)["last"]["best_model_path"] = target


def as_kth_best(contents: dict, target: str) -> None:
    """The val/dice callback removes its k-th best when a better score comes (any, against -1)."""
    low = torch.tensor(-1.0)
    states(contents)["best"].update(
        best_model_path=target,
        kth_best_model_path=target,
        best_k_models={target: low},
        best_model_score=low,
        kth_value=low,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "place, via", [(as_previous_last, "dotdot"), (as_kth_best, "dotdot"), (as_previous_last, "symlink")]
)
def test_a_resumed_checkpoint_removes_nothing_outside_its_run(place, via, trained, tmp_path, monkeypatch):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep")

    def edit(contents, checkpoints):
        if via == "symlink":
            (checkpoints / "link.ckpt").symlink_to(victim, target_is_directory=True)
        place(contents, f"{checkpoints}/link.ckpt" if via == "symlink" else f"{checkpoints}/../../victim")

    run = moved_run(trained, tmp_path, edit)
    assert resume(run, monkeypatch) == 0
    assert (victim / "precious.txt").read_text() == "keep"
    log = (run / "train.log").read_text()
    assert (
        "last.ckpt: dropped ModelCheckpoint" in log
        and f"checkpoint directory ({(run / 'checkpoints').resolve()})" in log
    )
    trained_step = read_checkpoint(trained / "checkpoints" / "last.ckpt")["global_step"]
    assert read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] > trained_step  # it trained on


@pytest.fixture
def other_filesystems():
    """fsspec's ftp and memory filesystems replaced by ones that record being opened (and then fail)."""
    opened = []
    originals = {protocol: fsspec.get_filesystem_class(protocol) for protocol in ("ftp", "memory")}

    class Recording(fsspec.AbstractFileSystem):
        def __init__(self, *args, **kwargs):
            opened.append(self.protocol)
            raise ConnectionRefusedError(f"{self.protocol}: opened by the test run")

    for protocol in originals:
        fsspec.register_implementation(protocol, type(protocol, (Recording,), {"protocol": protocol}), clobber=True)
    yield opened
    for protocol, original in originals.items():
        fsspec.register_implementation(protocol, original, clobber=True)


@pytest.mark.slow
@pytest.mark.parametrize(
    "place, url", [(as_previous_last, "ftp://127.0.0.1:9/x.ckpt"), (as_kth_best, "memory://x.ckpt")]
)
def test_a_url_in_a_resumed_checkpoint_reaches_no_other_filesystem(
    place, url, other_filesystems, trained, tmp_path, monkeypatch
):
    run = moved_run(trained, tmp_path, lambda contents, checkpoints: place(contents, url))
    assert resume(run, monkeypatch) == 0
    assert other_filesystems == []
    assert "dropped ModelCheckpoint" in (run / "train.log").read_text()


@pytest.mark.slow
def test_resuming_from_a_checkpoint_whose_stored_config_names_a_foreign_class_is_refused(
    trained, tmp_path, monkeypatch, capsys
):
    def edit(contents, checkpoints):
        contents[CONFIG_KEY]["model"].update(
            _target_="unet_upsampling.loggers.CSVLogger", save_dir="ftp://127.0.0.1:9/"
        )

    run = moved_run(trained, tmp_path, edit)
    before = (run / "metrics.json").read_bytes()
    assert resume(run, monkeypatch) == 1
    err = capsys.readouterr().err
    assert (
        "model._target_='unet_upsampling.loggers.CSVLogger' is not one of the classes" in err and "Traceback" not in err
    )
    assert (run / "metrics.json").read_bytes() == before


@pytest.mark.parametrize("entry", ["eval.py", "predict.py"])
@pytest.mark.parametrize(
    "edit, refusal",
    [
        (
            lambda config: config["model"].update(
                _target_="unet_upsampling.loggers.CSVLogger", save_dir="ftp://127.0.0.1:9/"
            ),
            "model._target_='unet_upsampling.loggers.CSVLogger' is not one of the classes",
        ),
        (
            lambda config: config["model"].update(
                _target_="unet_upsampling.models.EncoderUNet", _args_=[None, "resnet18", 1, 2, True]
            ),
            "model._args_ is refused",
        ),
    ],
    ids=["csv_logger", "positional_pretrained"],
)
def test_eval_and_predict_refuse_a_tampered_stored_config_and_reach_nothing(
    entry, edit, refusal, other_filesystems, checkpoint, tmp_path, monkeypatch, capsys
):
    offline_timm(monkeypatch)
    evil = tampered(checkpoint, tmp_path, edit)
    (tmp_path / "in").mkdir()
    args = {"eval.py": [], "predict.py": [f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}"]}[entry]
    code = run_app(
        entry, f"ckpt_path={evil}", *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, monkeypatch=monkeypatch
    )
    err = capsys.readouterr().err
    assert code == 1 and f"{evil}: {refusal}" in err and "Traceback" not in err
    assert other_filesystems == [] and not (tmp_path / "out").exists()
