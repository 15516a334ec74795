"""Study throughput: N train.py runs side by side, as the study packs them (the joblib launcher), for a fixed
number of steps; how many study runs of ``--study-steps`` steps that makes per hour of the device.

Each N is one ``train.py -m`` sweep over seeds 0..N-1 of the first mode with ``hydra/launcher=joblib
hydra.launcher.n_jobs=N`` and the ``SplitThreads`` callback (unet_upsampling/packing.py): the product's own
packing, start-up, validations and checkpoints included. Its wall time W for S steps per run and the
steady step of the runs side by side (``steady_step``: the second half of a run's steps, its validations
and epoch ends included; the median over the runs) give a run of T steps as W + (T - S) x step, so
runs per hour = N x 3600 / (W + (T - S) x step).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.lightning_loop import subprocess_env
from bench.timing import median


def steady_step(batch_ends: list[float]) -> float:
    """Seconds per step over the second half of a run's batch ends (validations and epoch ends included)."""
    half = len(batch_ends) // 2
    if len(batch_ends) - 1 - half < 1:
        raise ValueError(f"{len(batch_ends)} steps: at least 3 are needed for a steady rate (--throughput-steps)")
    return (batch_ends[-1] - batch_ends[half]) / (len(batch_ends) - 1 - half)


def packed_command(args, overrides: list[str], runs: int, sweep_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "unet_upsampling.train",
        "-m",
        *overrides,
        f"upsample={args.modes[0]}",
        f"seed={','.join(str(s) for s in range(runs))}",
        "hydra.sweeper.params=null",  # the seeds alone: an experiment's own grid (its rates) would multiply the runs
        f"trainer.max_steps={args.throughput_steps}",
        "trainer.max_epochs=-1",
        "test=false",
        *(["trainer=gpu"] if args.device == "cuda" else ["trainer.accelerator=cpu"]),
        "hydra/launcher=joblib",
        f"hydra.launcher.n_jobs={runs}",
        "++hydra.callbacks.split_threads._target_=unet_upsampling.packing.SplitThreads",
        f"++hydra.callbacks.split_threads.n_jobs={runs}",
        f"hydra.sweep.dir={sweep_dir}",
        "+callbacks.step_timer._target_=bench.timing.StepTimer",
        "+callbacks.step_timer.path=${paths.output_dir}/step_timer.json",
        "+callbacks.step_timer.count_syncs=false",
    ]


def packed_run(args, overrides: list[str], runs: int, workdir: Path) -> dict[str, Any]:
    """One sweep of ``runs`` runs side by side: wall time, steady step, start-up, the projection to a study run."""
    sweep_dir = workdir / f"packed_{runs}"
    command = packed_command(args, overrides, runs, sweep_dir)
    start = time.perf_counter()
    result = subprocess.run(command, check=False, capture_output=True, text=True, env=subprocess_env(), cwd=workdir)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    timings = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/step_timer.json"))]
    if len(timings) != runs:
        raise RuntimeError(f"{sweep_dir}: {len(timings)} of {runs} runs wrote their timings")
    step = median([steady_step(t["batch_end_s"]) for t in timings])
    batch = timings[0]["batch_size"]
    study_run_s = wall + (args.study_steps - args.throughput_steps) * step
    return {
        "runs": runs,
        "steps": args.throughput_steps,
        "batch_size": batch,
        "wall_s": wall,
        "step_ms": 1e3 * step,
        "startup_s": median([t["startup_s"] for t in timings if t["startup_s"] is not None] or [float("nan")]),
        "images_per_s_together": runs * batch / step,
        "study_steps": args.study_steps,
        "study_run_wall_s": study_run_s,
        "study_runs_per_hour": runs * 3600 / study_run_s,
    }


def bench_throughput(args, base_overrides: list[str], workdir: Path) -> dict[str, Any]:
    """``packed_run`` for every N of ``--throughput``, one after the other."""
    return {str(n): packed_run(args, base_overrides, n, workdir) for n in args.throughput}
