"""train.py against a plain PyTorch loop: the same model, data, training step, optimiser and schedule, runs
alternating.

The train.py runs are real subprocesses (bench/runs.py) with the ``StepTimer`` callback; they validate once per
epoch (``validations=null``) and skip the test split. The first epoch of each run is warm-up; start-up is
reported apart.
"""

from __future__ import annotations

import itertools
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import lightning as L
import torch

from bench import runs
from bench.config import compose, optimizer_of, task_of, training_step
from bench.timing import median

NAN = float("nan")


def plain_loop(args, overrides: list[str], epochs: int, max_steps: int | None = None) -> dict[str, Any]:
    """The train.py task (its own training step), data, optimiser and schedule in a bare PyTorch loop, for
    ``epochs`` epochs or ``max_steps`` steps, whichever ends first; each epoch's order is the sampler's for that
    epoch, as in train.py."""
    from hydra.utils import instantiate

    cfg = compose(overrides)
    L.seed_everything(cfg.seed, workers=True)
    data = instantiate(cfg.data)
    data.setup()
    task = task_of(cfg)
    loader = data.train_dataloader()
    total = min(epochs * len(loader), max_steps or epochs * len(loader))
    optimizer = optimizer_of(task, args.device)
    scheduler = task.scheduler_factory(optimizer, T_max=total) if task.scheduler_factory else None
    step = training_step(task, optimizer, args.device, args.device == "cuda" and args.bf16)
    steps, epoch_times, ends = [], [], []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        start = last = time.perf_counter()
        first = len(steps)
        for image, mask in itertools.islice(loader, total - len(ends)):
            step(image.to(args.device, non_blocking=True), mask.to(args.device, non_blocking=True))
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


def train_py_run(args, overrides: list[str], workdir: Path, index) -> dict[str, Any]:
    """One train.py run without the test split: its StepTimer record and wall time."""
    out = workdir / f"train_py_{index}.json"
    run_dir = f"hydra.run.dir={workdir / f'run_{index}'}"
    wall = runs.run(runs.command(args, [*overrides, "test=false", run_dir], str(out)), workdir, runs.environment())
    return json.loads(out.read_text()) | {"wall_s": wall}


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
