"""train.py against a plain PyTorch loop: the same model, data, loss, optimiser and schedule, runs alternating.

The train.py runs are real subprocesses (``python -m unet_upsampling.train``) with the ``StepTimer``
callback added as a Hydra callback (``+callbacks.step_timer._target_=bench.timing.StepTimer``,
``scripts/`` on their ``PYTHONPATH``); they validate once per epoch (``validations=null``) and
skip the test split. The first epoch of each run is warm-up; start-up is reported apart.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import lightning as L
import torch

from bench.config import compose, optimizer_on, task_of
from bench.timing import median

SCRIPTS = Path(__file__).resolve().parents[1]  # holds bench/, for the train.py subprocesses
NAN = float("nan")


def plain_loop(args, overrides: list[str], epochs: int, max_steps: int | None = None) -> dict[str, Any]:
    """The train.py model, data, loss, optimiser and schedule in a bare PyTorch loop, for ``epochs`` epochs or
    ``max_steps`` steps, whichever ends first; each epoch's order is the sampler's for that epoch, as in train.py."""
    from hydra.utils import instantiate

    cfg = compose(overrides)
    L.seed_everything(cfg.seed, workers=True)
    data = instantiate(cfg.data)
    data.setup()
    task = task_of(cfg)
    net = task.net.to(args.device).train()
    loader = data.train_dataloader()
    total = min(epochs * len(loader), max_steps or epochs * len(loader))
    optimizer = optimizer_on(task, args.device)([p for p in net.parameters() if p.requires_grad])
    scheduler = task.scheduler_factory(optimizer, T_max=total) if task.scheduler_factory else None
    bf16 = args.device == "cuda" and args.bf16
    steps, epoch_times, ends = [], [], []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        start = last = time.perf_counter()
        first = len(steps)
        for image, mask in itertools.islice(loader, total - len(ends)):
            image, mask = image.to(args.device, non_blocking=True), mask.to(args.device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(args.device, dtype=torch.bfloat16, enabled=bf16):
                loss = task.loss_fn(net(image).float(), mask)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if args.device == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            steps.append(now - last)
            ends.append(now)
            last = now
        del steps[first : first + 1]  # the first interval of an epoch holds the loader's start-up, as in StepTimer
        epoch_times.append(last - start)
        if len(ends) == total:
            break
    return {
        "step_s": steps,
        "epoch_s": epoch_times,
        "batch_end_s": ends,
        "batch_size": data.batch_size,
        "steps_per_epoch": len(loader),
    }


def subprocess_env() -> dict[str, str]:
    """This process's environment with ``scripts/`` first on PYTHONPATH, the launcher's clock, and DATA_DIR made
    absolute (the runs start in their own directories, where a relative one names nothing)."""
    path = os.pathsep.join(p for p in (str(SCRIPTS), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path, "UNET_BENCH_T0": repr(time.time())}
    if env.get("DATA_DIR"):
        env["DATA_DIR"] = str(Path(env["DATA_DIR"]).resolve())
    return env


def train_py_command(args, overrides: list[str], workdir: Path, index: int, out: Path) -> list[str]:
    """``python -m unet_upsampling.train overrides...`` with the StepTimer, no test; the overrides set the run's
    length and validations."""
    command = [
        sys.executable,
        "-m",
        "unet_upsampling.train",
        *overrides,
        "test=false",
        f"hydra.run.dir={workdir / f'run_{index}'}",
        *(["trainer=gpu"] if args.device == "cuda" else ["trainer.accelerator=cpu"]),
        "+callbacks.step_timer._target_=bench.timing.StepTimer",
        f"+callbacks.step_timer.path={out}",
    ]
    if args.device == "cuda" and not args.bf16:
        command.append("trainer.precision=32-true")
    return command


def train_py_run(args, overrides: list[str], workdir: Path, index: int) -> dict[str, Any]:
    """One train.py subprocess (``train_py_command``): its StepTimer record and wall time."""
    out = workdir / f"train_py_{index}.json"
    command = train_py_command(args, overrides, workdir, index, out)
    start = time.perf_counter()
    result = subprocess.run(command, check=False, capture_output=True, text=True, env=subprocess_env(), cwd=workdir)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    timing = json.loads(out.read_text())
    timing["wall_s"] = wall
    return timing


def plain_row(plain: dict[str, list], batch_size: int) -> dict[str, float]:
    row = {"step_ms": 1e3 * median(plain["step_s"]), "epoch_s": median(plain["epoch_s"] or [NAN])}
    row["images_per_s"] = batch_size / (row["step_ms"] / 1e3)
    return row


def train_py_row(real: dict[str, list], sites: Counter, log_every: int, batch_size: int) -> dict[str, Any]:
    row = {
        "step_ms": 1e3 * median(real["step_s"]),
        "epoch_s": median(real["epoch_s"] or [NAN]),
        "epoch_with_val_and_checkpoints_s": median(real["epoch_total_s"]),
        "startup_s": median([s for s in real["startup_s"] if s is not None] or [NAN]),
        "wall_s": median(real["wall_s"]),
        "host_syncs_per_step_median": median(real["syncs_per_step"]),
        "host_syncs_per_step_max": max(real["syncs_per_step"]),
        "host_sync_sites": dict(sites),
        "log_every_n_steps": log_every,
    }
    row["images_per_s"] = batch_size / (row["step_ms"] / 1e3)
    return row


def bench_lightning(args, base_overrides: list[str], workdir: Path) -> dict[str, Any]:
    mode = args.modes[0]
    overrides = [*base_overrides, f"upsample={mode}"]
    plain: dict[str, list] = {"step_s": [], "epoch_s": []}
    real: dict[str, list] = {k: [] for k in ("step_s", "epoch_s", "epoch_total_s", "syncs_per_step", "startup_s")}
    real["wall_s"] = []
    sites: Counter = Counter()
    batch_size = log_every = 0
    for r in range(args.train_rounds):  # alternate: plain, train.py, plain, train.py, ...
        p = plain_loop(args, overrides, args.train_epochs)
        batch_size = p["batch_size"]
        for key in plain:
            plain[key] += p[key][1:] if key == "epoch_s" else p[key]  # first epoch: warm-up
        per_epoch = [f"trainer.max_epochs={args.train_epochs}", "validations=null"]
        t = train_py_run(args, [*overrides, *per_epoch], workdir, r)
        for key in real:
            value = t[key]
            real[key] += (value[1:] if key == "epoch_s" else value) if isinstance(value, list) else [value]
        sites.update(t["sync_sites"])
        log_every = t["log_every_n_steps"]
    p_row, t_row = plain_row(plain, batch_size), train_py_row(real, sites, log_every, batch_size)
    return {
        "mode": mode,
        "epochs_per_run": args.train_epochs,
        "runs": args.train_rounds,
        "plain": p_row,
        "train_py": t_row,
        "ratio_train_py_vs_plain_step": t_row["images_per_s"] / p_row["images_per_s"],
        "ratio_train_py_vs_plain_epoch": p_row["epoch_s"] / t_row["epoch_s"],
    }
