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


def joined(records: list[dict[str, Any]], key: str, skip: int = 0) -> list:
    """``key``'s values of every run after each run's first ``skip`` (the first epoch is warm-up)."""
    return [value for record in records for value in record[key][skip:]]


def step_row(records: list[dict[str, Any]], batch_size: int) -> dict[str, float]:
    """Median step (ms, and images/s from it) and training epoch (s, each run's first epoch left out)."""
    step_ms = 1e3 * median(joined(records, "step_s"))
    return {
        "step_ms": step_ms,
        "epoch_s": median(joined(records, "epoch_s", 1) or [NAN]),
        "images_per_s": batch_size / (step_ms / 1e3),
    }


def bench_lightning(args, base_overrides: list[str], workdir: Path) -> dict[str, Any]:
    mode = args.modes[0]
    overrides = [*base_overrides, f"upsample={mode}"]
    per_epoch = [f"trainer.max_epochs={args.train_epochs}", "validations=null"]
    plain, real = [], []
    for r in range(args.train_rounds):  # alternate: plain, train.py, plain, train.py, ...
        plain.append(plain_loop(args, overrides, args.train_epochs))
        real.append(train_py_run(args, [*overrides, *per_epoch], workdir, r))
    batch_size = plain[0]["batch_size"]
    syncs = joined(real, "syncs_per_step")
    p_row = step_row(plain, batch_size)
    t_row = step_row(real, batch_size) | {
        "epoch_with_val_and_checkpoints_s": median(joined(real, "epoch_total_s")),
        "startup_s": median([t["startup_s"] for t in real if t["startup_s"] is not None] or [NAN]),
        "wall_s": median([t["wall_s"] for t in real]),
        "host_syncs_per_step_median": median(syncs),
        "host_syncs_per_step_max": max(syncs),
        "host_sync_sites": dict(sum((Counter(t["sync_sites"]) for t in real), Counter())),
        "log_every_n_steps": real[-1]["log_every_n_steps"],
    }
    return {
        "mode": mode,
        "epochs_per_run": args.train_epochs,
        "runs": args.train_rounds,
        "plain": p_row,
        "train_py": t_row,
        "ratio_train_py_vs_plain_step": t_row["images_per_s"] / p_row["images_per_s"],
        "ratio_train_py_vs_plain_epoch": p_row["epoch_s"] / t_row["epoch_s"],
    }
