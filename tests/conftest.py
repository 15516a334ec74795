"""Shared fixtures: Hydra composition, the entry points run in this process or (where the process boundary is
the point) in a subprocess, tiny data on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import open_dict, read_write
from PIL import Image

from unet_upsampling import entry
from unet_upsampling.builders import build_task
from unet_upsampling.checks import check_run

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "src" / "unet_upsampling" / "configs"
SHARED_DATA = ROOT.parent / "shared" / "data"
UPSAMPLE_MODES = sorted(p.stem for p in (CONFIGS / "upsample").glob("*.yaml"))
# Small enough for a 2-core CPU: a depth-2 UNet of width 4 on 48 px crops; an epoch is one pass over the 8 training
# images (2 steps). Keep data.min_batches_per_epoch last: some tests take TINY[1:] or TINY[4:].
TINY = [
    "model.depth=2",
    "model.base_channels=4",
    "data.crop_size=48",
    "data.batch_size=4",
    "data.source.train=8",
    "data.source.val=4",
    "data.source.test=4",
    "data.source.size=48",
    "data.min_batches_per_epoch=1",
]
ENTRY_POINTS = {"train.py": entry.train, "eval.py": entry.evaluate, "predict.py": entry.predict}

if os.environ.get("PYTEST_XDIST_WORKER"):
    # make test runs one worker per core (pytest-xdist): one torch thread each, in this process and in the
    # train.py subprocesses, instead of every worker's threads contending for every core.
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _same_start_state():
    """Every test starts from the same random state and thread settings, whichever tests ran before it in its
    worker: a run in this process (SplitThreads, the benchmark) may set torch's threads and OMP_NUM_THREADS, and
    two threads per worker on a 2-core machine made later tests up to 7x slower."""
    torch.manual_seed(0)
    np.random.seed(0)
    threads = torch.get_num_threads()
    env = {key: os.environ.get(key) for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    yield
    torch.set_num_threads(threads)
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def one_thread(monkeypatch):
    """One torch thread here and in the train.py runs a test starts (``_same_start_state`` restores the setting
    afterwards): on a shared 2-core CPU, tiny ops spend most of their time in thread barriers."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    torch.set_num_threads(1)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with slow tests first, each module's tests kept together (module fixtures are set up once):
    parallel workers then share out the short tests at the end instead of waiting on a long one started last."""
    slow = {item.module for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module not in slow)


def compose_config(name: str = "train", overrides: list[str] | None = None):
    """The config train.py/eval.py/predict.py would see (``${hydra:...}`` served, the hydra node dropped)."""
    with initialize_config_module("unet_upsampling.configs", version_base="1.3"):
        cfg = compose(name, overrides=overrides or [], return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # serves ${hydra:...}; the job config itself has no hydra node
    with read_write(cfg.hydra):
        cfg.hydra.runtime.output_dir = str(cfg.hydra.run.dir)
    HydraConfig.instance().set_config(cfg.copy())
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def run_app(script: str, *overrides: str, cwd: Path, monkeypatch) -> int:
    """Runs ``python <script> overrides...`` in this process (Hydra app, logging, run directory and all);
    returns the exit code. Output goes to pytest's capture (``capsys``)."""
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("LOG_DIR", str(cwd / "logs"))
    monkeypatch.setattr(sys, "argv", [script, *overrides])
    try:
        ENTRY_POINTS[script]()
        return 0
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    finally:
        GlobalHydra.instance().clear()


def run_entry(
    script: str, *overrides: str, cwd: Path, check: bool = True, timeout: int = 600, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Runs ``python <script> overrides...`` from the repository root as a user would."""
    result = subprocess.run(  # noqa: PLW1510 (the return code is checked below, with the output)
        [sys.executable, str(ROOT / script), *overrides],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "LOG_DIR": str(cwd / "logs"), **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"{script} {' '.join(overrides)} failed ({result.returncode}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


def tiny_run(tmp_path_factory) -> Path:
    """A fresh directory holding a finished one-epoch run of the TINY config (no test split scored)."""
    run_dir = tmp_path_factory.mktemp("trained")
    with pytest.MonkeyPatch.context() as monkeypatch:
        code = run_app(
            "train.py",
            *TINY,
            "trainer.max_epochs=1",
            "test=false",
            f"hydra.run.dir={run_dir}",
            cwd=run_dir,
            monkeypatch=monkeypatch,
        )
    assert code == 0
    return run_dir


def tampered(checkpoint: Path, tmp_path: Path, edit) -> Path:
    """A copy of ``checkpoint`` (``tmp_path/tampered.ckpt``) whose stored config ``edit(config)`` changed."""
    contents = torch.load(checkpoint, weights_only=True)
    edit(contents["unet_upsampling_config"])
    path = tmp_path / "tampered.ckpt"
    torch.save(contents, path)
    return path


@pytest.fixture(scope="session")
def trained(tmp_path_factory) -> Path:
    """A finished one-epoch run directory of the TINY config (``tiny_run``), one per test process: tests read it
    or copy it, never write into it."""
    return tiny_run(tmp_path_factory)


@pytest.fixture(scope="session")
def checkpoint(trained) -> Path:
    """That run's last.ckpt."""
    return trained / "checkpoints" / "last.ckpt"


def run_predict(checkpoint: Path, tmp_path: Path, monkeypatch, *overrides: str) -> int:
    """``python predict.py ckpt_path=<checkpoint> overrides...`` in this process, from ``tmp_path``."""
    return run_app("predict.py", f"ckpt_path={checkpoint}", *overrides, cwd=tmp_path, monkeypatch=monkeypatch)


def grey_image(path: Path, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A random 8-bit grey image of ``size`` (h, w) written to ``path`` (its suffix chooses the format)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, size, np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


def folder_datamodule(root: Path, *overrides: str):
    """The DataModule of ``data=folder`` on ``root`` (32 px crops in batches of 2), not set up."""
    data = ["data=folder", f"data.source.root={root}", "data.crop_size=32", "data.batch_size=2"]
    return instantiate(compose_config("train", [*data, "data.min_batches_per_epoch=1", *overrides]).data)


def check_composed(*overrides: str) -> None:
    """``checks.check_run`` on the data and network train.py would build from ``overrides``."""
    cfg = compose_config("train", list(overrides))
    check_run(instantiate(cfg.data), build_task(cfg).net)


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def reproducible(metrics: dict) -> dict:
    """metrics.json without what a rerun of the same config and seed may change: times, date, paths."""
    clock = {"train_time_s", "eval_time_s", "finished", "best_checkpoint"}
    return {k: v for k, v in metrics.items() if k not in clock and not k.startswith("time/")}


def write_pair(
    root: Path, stem: str, size: tuple[int, int], rgb: bool, mask_values: tuple[int, ...], seed: int
) -> None:
    """An image whose bright disc is the foreground, and its mask using ``mask_values`` (bg, fg)."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - rng.uniform(0.3, 0.7) * h) ** 2 + (xx - rng.uniform(0.3, 0.7) * w) ** 2 < (min(h, w) / 4) ** 2
    image = np.clip(60 + 120 * disc + rng.normal(0, 10, (h, w)), 0, 255).astype(np.uint8)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.stack([image] * 3, -1) if rgb else image).save(root / "images" / f"{stem}.png")
    Image.fromarray(np.where(disc, mask_values[1], mask_values[0]).astype(np.uint8)).save(
        root / "masks" / f"{stem}.png"
    )


@pytest.fixture
def folder_binary_255(tmp_path: Path) -> Path:
    """Six odd-sized greyscale pairs with 0/255 masks."""
    for i, size in enumerate([(61, 77), (53, 49), (70, 65), (49, 81), (57, 57), (64, 51)]):
        write_pair(tmp_path / "binary", f"img_{i}", size, rgb=False, mask_values=(0, 255), seed=i)
    return tmp_path / "binary"


def offline_timm(monkeypatch) -> list[str]:
    """From here on, timm.create_model fails the test if asked for pretrained weights, and so does any socket
    connection: a rebuilt model never downloads. Returns the names of the models created."""
    import socket

    import timm

    created, create = [], timm.create_model

    def create_model(name, pretrained=False, **kwargs):
        assert not pretrained and "pretrained_cfg_overlay" not in kwargs, f"{name}: asked timm for weights"
        created.append(name)
        return create(name, pretrained=pretrained, **kwargs)

    monkeypatch.setattr(timm, "create_model", create_model)
    monkeypatch.setattr(socket.socket, "connect", lambda *a: pytest.fail("a rebuilt model opened a connection"))
    return created
