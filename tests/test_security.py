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
from unet_upsampling.results import write_metrics

from conftest import ROOT, TINY, offline_timm, run_app, tampered


class Payload:
    """What an attacker pickles: unpickling it creates ``marker``."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


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

    from unet_upsampling.trust import stored_classes

    configs = ROOT / "src" / "unet_upsampling" / "configs"
    with initialize_config_module("unet_upsampling.configs", version_base="1.3"):
        for group, key in (("model", "model"), ("upsample", "model.upsample"), ("task", "task")):
            for path in (configs / group).glob("*.yaml"):
                assert compose(f"{group}/{path.stem}")[group]["_target_"] in stored_classes()[key], path


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


# --- A checkpoint's state is what train.py writes


def altered(checkpoint: pathlib.Path, tmp_path: pathlib.Path, edit) -> pathlib.Path:
    """A copy of ``checkpoint`` with ``edit(contents)`` applied (nesting deeper than Python's recursion limit
    allows to be written)."""
    contents = torch.load(checkpoint, weights_only=True)
    edit(contents)
    path = tmp_path / "altered.ckpt"
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20_000)
    try:
        torch.save(contents, path)
    finally:
        sys.setrecursionlimit(limit)
    return path


def nested(depth: int) -> list:
    outer = inner = []
    for _ in range(depth):
        inner.append([])
        inner = inner[0]
    return outer


def best_state(contents: dict) -> dict:
    return states(contents)["best"]


URL = "s3://bucket/x"
ALTERATIONS = {
    "a NUL byte in a path": (
        lambda c: best_state(c).update(best_model_path=best_state(c)["best_model_path"] + "\0"),
        r"\['best_model_path'\] holds '.*\\x00', where train\.py writes strings without NUL bytes",
    ),
    "nesting 5000 deep": (
        lambda c: c[CONFIG_KEY]["model"].update(extra=nested(5000)),
        r"unet_upsampling_config\['model'\]\['extra'\](\[0\])+ holds a list of 1 entries, where train\.py writes at "
        r"most 32 levels of nesting",
    ),
    "a best-k score of shape [2]": (
        lambda c: best_state(c)["best_k_models"].update({p: torch.ones(2) for p in best_state(c)["best_k_models"]}),
        r"\['best_k_models'\]\['.*'\] holds a float32 tensor of shape \[2\], where train\.py writes a score",
    ),
    "an unknown ArtifactProbe array": (
        lambda c: c["callbacks"]["ArtifactProbe"]["arrays"].update(evil=torch.zeros(3)),
        r"callbacks\['ArtifactProbe'\]\['arrays'\]\['evil'\] holds a float32 tensor of shape \[3\], where train\.py "
        r"writes arrays named init_flat, init_spectrum, final_flat, final_spectrum",
    ),
    "an ArtifactProbe array of another shape": (
        lambda c: c["callbacks"]["ArtifactProbe"]["arrays"].update(init_flat=torch.zeros(2, 64, 4096)),
        r"\['arrays'\]\['init_flat'\] holds a float32 tensor of shape \[2, 64, 4096\], where train\.py writes a "
        r"float32 tensor of shape \[2, 64, 64\] \(model\.num_classes=2\)",
    ),
    "a zero-stride ArtifactProbe array of 8e12 elements": (
        lambda c: c["callbacks"]["ArtifactProbe"]["arrays"].update(init_spectrum=torch.zeros(1).expand(8 * 10**12)),
        r"\['init_spectrum'\] holds a float32 tensor of shape \[8000000000000\], where train\.py writes dense "
        r"tensors whose storage holds every element",
    ),
    "fit_validations a string": (
        lambda c: c["callbacks"]["ArtifactProbe"].update(fit_validations="3"),
        r"\['fit_validations'\] holds '3', where train\.py writes a count of validations",
    ),
    "an init metric that is no number": (
        lambda c: c["callbacks"]["RunRecord"]["init_metrics"].update({"init/dice": "0.9"}),
        r"\['init/dice'\] holds '0\.9', where train\.py writes a number",
    ),
    "train_epoch 1e6": (
        lambda c: c["SegmentationDataModule"].update(train_epoch=10**6),
        r"SegmentationDataModule\['train_epoch'\] holds 1000000, where train\.py writes the checkpoint's epoch \(0\)",
    ),
    "a NaN loss sum (in the entry of checkpoints before the mean was a metric state)": (
        lambda c: c.update(unet_upsampling_loss_mean={"sum": torch.tensor(float("nan")), "steps": torch.tensor(3)}),
        r"unet_upsampling_loss_mean\['sum'\] holds a float32 tensor of shape \[\], where train\.py writes a finite "
        r"loss sum",
    ),
    "global_step -5": (
        lambda c: c.update(global_step=-5),
        r"global_step holds -5, where train\.py writes a count",
    ),
    "a URL in a set": (
        lambda c: c["loops"]["fit_loop"].update(extra={URL}),
        r"loops\['fit_loop'\]\['extra'\] holds a set of 1 entries, where train\.py writes plain data",
    ),
    "a URL in bytes": (
        lambda c: c["callbacks"]["RunRecord"].update(extra=URL.encode()),
        r"callbacks\['RunRecord'\]\['extra'\] holds b's3://bucket/x', where train\.py writes plain data",
    ),
    "a weight that is no tensor": (
        lambda c: c["state_dict"].update({"net.head.bias": 0.5}),
        r"state_dict\['net\.head\.bias'\] holds 0\.5, where train\.py writes a tensor",
    ),
    "a callback state that is no dict": (
        lambda c: c["callbacks"].update(RunRecord=5),
        r"callbacks\['RunRecord'\] holds 5, where train\.py writes a dict",
    ),
    "a stored _partial_ that is no boolean": (
        lambda c: c[CONFIG_KEY]["model"]["upsample"].update(_partial_="no"),
        r"model\.upsample\._partial_='no' is refused: Hydra takes true or false there",
    ),
}


@pytest.mark.parametrize("alteration", ALTERATIONS)
def test_a_checkpoint_holding_what_train_py_never_writes_is_refused_naming_the_key(alteration, checkpoint, tmp_path):
    edit, message = ALTERATIONS[alteration]
    path = altered(checkpoint, tmp_path, edit)
    with pytest.raises(CheckpointError, match=rf"^{re.escape(str(path))}: .*{message}"):
        read_checkpoint(path)


RESUME_ALTERATIONS = {
    "global_step -5": ALTERATIONS["global_step -5"],
    "a zero-stride ArtifactProbe array of 8e12 elements": ALTERATIONS[
        "a zero-stride ArtifactProbe array of 8e12 elements"
    ],
    "a weight of another shape": (
        lambda c: c["state_dict"].update({"net.head.weight": torch.zeros(3, 4, 1, 1)}),
        r"state_dict\['net\.head\.weight'\] holds a float32 tensor of shape \[3, 4, 1, 1\], where train\.py writes a "
        r"tensor of shape \[2, 4, 1, 1\] there",
    ),
}


@pytest.mark.parametrize("alteration", RESUME_ALTERATIONS)
def test_resuming_from_such_a_checkpoint_is_refused_before_anything_is_restored(
    alteration, trained, tmp_path, monkeypatch, capsys
):
    edit, message = RESUME_ALTERATIONS[alteration]
    run = moved_run(trained, tmp_path, lambda contents, checkpoints: edit(contents))
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert resume(run, monkeypatch) == 1
    err = capsys.readouterr().err
    assert re.search(message, err) and "Traceback" not in err
    assert all(before[name] == (run / name).read_bytes() for name in ("metrics.json", "artifacts.npz"))


def test_a_rebuilt_network_is_never_compiled(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.nn.Module, "compile", lambda *a, **k: pytest.fail("a rebuilt network was compiled"))
    task, _ = load_checkpoint(tampered(checkpoint, tmp_path, lambda config: config["model"].update(compile=True)))
    assert not task.training


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
    destination = tmp_path / "checkpoints" / "last.ckpt"
    beside = []  # the destination's directory while the checkpoint is written
    save = torch.save
    monkeypatch.setattr(
        torch,
        "save",
        lambda obj, file: (beside.append([p.name for p in destination.parent.iterdir()]), save(obj, file)),
    )
    CheckpointTrust([destination.parent]).save_checkpoint({"weights": torch.ones(3)}, str(destination))
    assert beside == [[f"last.ckpt.tmp-{os.getpid()}"]]
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


def plant_links(destination: pathlib.Path, victim: pathlib.Path) -> None:
    """Symbolic links to ``victim`` where a write of ``destination`` could follow one: the destination itself and
    the temporary files of this process and the next pids."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    destination.symlink_to(victim)
    for pid in range(os.getpid(), os.getpid() + 3):
        destination.with_name(f"{destination.name}.tmp-{pid}").symlink_to(victim)


def write_csv_row(path: pathlib.Path) -> None:
    from unet_upsampling.loggers import CSVLogger

    CSVLogger(save_dir=path.parents[1], name=path.parent.name, version="").log_metrics({"val/dice": 0.5}, step=1)


def write_figure(path: pathlib.Path) -> None:
    from matplotlib.figure import Figure

    from unet_upsampling.figures import save

    save(Figure(), path)


WRITERS = {
    "checkpoints/last.ckpt": lambda path: CheckpointTrust([path.parent]).save_checkpoint({"step": torch.ones(1)}, path),
    "metrics.json": lambda path: write_metrics(path, {"val/dice": 0.5}),
    "csv/metrics.csv": write_csv_row,
    "flat_field.png": write_figure,
}


@pytest.mark.parametrize("name", WRITERS)
def test_no_write_follows_a_planted_symbolic_link(name, tmp_path):
    """Links planted at a file's name and at its temporary names (``<file>.tmp-<pid>`` for this and the next
    pids): the file is written in their place, the file they point to is untouched."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    destination = tmp_path / "run" / name
    plant_links(destination, victim)
    WRITERS[name](destination)
    assert victim.read_text() == "keep"
    assert destination.is_file() and not destination.is_symlink() and destination.stat().st_size > 0


@pytest.mark.slow
def test_a_run_writes_none_of_its_files_through_links_planted_in_its_directory(tmp_path, monkeypatch):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    run_dir = tmp_path / "run"
    names = ["metrics.json", "artifacts.npz", "flat_field.png", "predictions.png", "predictions.npz"]
    names += ["csv/metrics.csv", "checkpoints/last.ckpt"]
    for name in names:
        plant_links(run_dir / name, victim)
    args = [*TINY, "trainer.max_epochs=1", "test=false", f"hydra.run.dir={run_dir}"]
    assert run_app("train.py", *args, cwd=tmp_path, monkeypatch=monkeypatch) == 0
    assert victim.read_text() == "keep"
    assert all((run_dir / name).is_file() and not (run_dir / name).is_symlink() for name in names)


# --- The run lock


def plant_lock(lock: pathlib.Path, kind: str, victim: pathlib.Path) -> None:
    if kind == "symlink":
        lock.symlink_to(victim)
    elif kind == "hard link":
        os.link(victim, lock)
    elif kind == "directory":
        lock.mkdir()
    else:
        os.mkfifo(lock)


@pytest.mark.parametrize(
    "kind, what",
    [
        ("symlink", "a symbolic link"),
        ("hard link", "another name of a file"),
        ("directory", "a directory"),
        ("fifo", "not a regular file"),
    ],
)
def test_a_planted_train_lock_is_refused_and_nothing_is_written_through_it(kind, what, tmp_path, monkeypatch, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    plant_lock(run_dir / "train.lock", kind, victim)
    code = run_app("train.py", *TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path, monkeypatch=monkeypatch)
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"{run_dir / 'train.lock'} cannot be this run directory's lock ({what}): " in err
    assert f"Remove {run_dir / 'train.lock'}" in err
    assert victim.read_text() == "keep" and os.path.lexists(run_dir / "train.lock")  # refused, left as found
    assert sorted(p.name for p in run_dir.iterdir()) == ["train.lock"]  # nothing else written


# --- The dependency floor


def test_pyproject_floors_are_the_ones_checked_at_import():
    from unet_upsampling.versions import FLOORS

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floors = dict(re.match(r"([\w-]+)>=([\d.]+)", d).groups() for d in dependencies if ">=" in d)
    for name, (floor, _) in FLOORS.items():
        assert floors[name] == ".".join(map(str, floor)), name


@pytest.mark.parametrize(
    "name, installed",
    [
        ("torch", "2.5.1+cu124"),
        ("torchvision", "0.20.1"),
        ("lightning", "2.5.6"),
        ("torch", "2.6.0a0+git1d7a4a9"),  # built from source before the 2.6.0 release
        ("torch", "2.6.0.dev20241112+cpu"),  # a nightly
        ("lightning", "2.6.0rc1"),
    ],
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


def test_a_release_at_or_above_the_floor_passes_local_build_tags_included():
    from unet_upsampling.versions import below

    assert not any(below(found, (2, 6)) for found in ["2.6.0", "2.6.0+cu124", "2.6.1", "2.14.1+cpu", "2.7.0rc1"])
    assert below("2.6.0rc1", (2, 6)) and below("2.5.99", (2, 6))


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
