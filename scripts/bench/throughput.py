"""Study throughput: N train.py runs side by side, as a study packs them (the joblib launcher), for a fixed number
of steps; how many study runs of ``--study-steps`` steps that makes per hour, and on a CPU per core-hour.

Each N is one ``train.py -m`` sweep over seeds 0..N-1 of the first mode with ``hydra/launcher=joblib
hydra.launcher.n_jobs=N``: the product's own launcher, start-up, validations, probe, checkpoints and test, on the
data and experiment the overrides name (e.g. ``experiment=upsample_study data=isbi2012``). Its wall time W for S
steps per run and the steady training step of the runs side by side (``per_step`` over the second half of a
run's steps on the StepTimer's clock: epoch ends in, validations out; the median over the runs) give a run of T
steps as W + (T - S) x step: an experiment's ``validations`` is a count per run, so the short run holds the
validations, probe and test of the long one. Runs per hour = N x 3600 / (W + (T - S) x step).

On a GPU the runs share the device and ``SplitThreads`` splits the host's CPUs between them, as
``experiment=upsample_study_gpu`` does. On a CPU each run gets ``--threads`` torch threads (else
OMP_NUM_THREADS, else 1), as the CPU study runs them (scripts/study_block.sh), and the runs per hour are
divided by the cores the runs use (the sum of their torch threads, as each run reports them): study runs per
core-hour.

``--checkout DIR`` (another commit's checkout, e.g. from ``git worktree add /tmp/old <commit>``): its sweeps run
DIR's package and configs (so its own experiment config) with the same overrides and this checkout's timer,
alternating with this checkout's round by round (``--throughput-rounds``: new first in even rounds, old first
in odd ones); each side's median over the rounds, and the ratio new / old.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bench import runs
from bench.timing import median, per_step


def threads_per_run(device: str) -> int | None:
    """On a CPU, the torch threads each run gets: OMP_NUM_THREADS (``--threads`` sets it), else 1; on a GPU
    None (``SplitThreads`` splits the host's CPUs)."""
    return None if device == "cuda" else int(os.environ.get("OMP_NUM_THREADS") or 1)


def sweep_overrides(args, overrides: list[str], runs_at_once: int, sweep_dir: Path) -> list[str]:
    """The train.py sweep of ``runs_at_once`` seeds side by side for ``--throughput-steps`` steps each."""
    split_threads = [
        "++hydra.callbacks.split_threads._target_=unet_upsampling.packing.SplitThreads",
        f"++hydra.callbacks.split_threads.n_jobs={runs_at_once}",
    ]
    return [
        *overrides,
        f"upsample={args.modes[0]}",
        f"seed={','.join(str(s) for s in range(runs_at_once))}",
        "hydra.sweeper.params=null",  # the seeds alone: an experiment's own grid (its rates) would multiply the runs
        f"trainer.max_steps={args.throughput_steps}",
        "trainer.max_epochs=-1",
        "hydra/launcher=joblib",
        f"hydra.launcher.n_jobs={runs_at_once}",
        f"hydra.sweep.dir={sweep_dir}",
        *(split_threads if args.device == "cuda" else []),
    ]


def study_rates(
    wall: float, step: float, runs_at_once: int, cores: int | None, steps: int, study_steps: int
) -> dict[str, Any]:
    """A study run's projected wall time, W + (T - S) x step, and the study runs per hour and per core-hour
    (None without a core count: on a GPU) that ``runs_at_once`` of them side by side make."""
    study_run = wall + (study_steps - steps) * step
    per_hour = runs_at_once * 3600 / study_run
    return {
        "study_run_wall_s": study_run,
        "study_runs_per_hour": per_hour,
        "cores": cores,
        "study_runs_per_core_hour": per_hour / cores if cores else None,
    }


def packed_run(args, overrides: list[str], runs_at_once: int, checkout: Path, sweep_dir: Path) -> dict[str, Any]:
    """One sweep of ``runs_at_once`` runs side by side from ``checkout``: wall time, steady step, start-up, threads,
    and the projection to a study run."""
    threads = threads_per_run(args.device)
    command = runs.command(
        args,
        sweep_overrides(args, overrides, runs_at_once, sweep_dir),
        "${paths.output_dir}/step_timer.json",
        sweep=True,
        checkout=checkout,
    )
    sweep_dir.parent.mkdir(parents=True, exist_ok=True)
    wall = runs.run(command, sweep_dir.parent, runs.environment(checkout, threads))
    timings = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/step_timer.json"))]
    if len(timings) != runs_at_once:
        raise RuntimeError(f"{sweep_dir}: {len(timings)} of {runs_at_once} runs wrote their timings")
    packages = {t["package"] for t in timings}
    if packages != {str(checkout / "src" / "unet_upsampling")}:
        raise RuntimeError(f"{sweep_dir}: the runs imported {sorted(packages)}, not {checkout}'s src/")
    step = median([per_step(t["batch_end_s"], len(t["batch_end_s"]) // 2) for t in timings])
    batch = timings[0]["batch_size"]
    cores = sum(t["torch_threads"] for t in timings) if threads else None
    return {
        "runs": runs_at_once,
        "steps": args.throughput_steps,
        "batch_size": batch,
        "wall_s": wall,
        "step_ms": 1e3 * step,
        "startup_s": median([t["startup_s"] for t in timings if t["startup_s"] is not None] or [float("nan")]),
        "torch_threads": [t["torch_threads"] for t in timings],
        "images_per_s_together": runs_at_once * batch / step,
        "study_steps": args.study_steps,
        **study_rates(wall, step, runs_at_once, cores, args.throughput_steps, args.study_steps),
    }


def bench_throughput(args, base_overrides: list[str], workdir: Path) -> dict[str, Any]:
    """``packed_run`` for every N of ``--throughput``, ``--throughput-rounds`` times, alternating this checkout
    (``new``) with ``--checkout`` (``old``) round by round; each side's median of the measure, and new / old."""
    checkouts = {"new": runs.ROOT} | ({"old": Path(args.checkout).resolve()} if args.checkout else {})
    measure = "study_runs_per_hour" if args.device == "cuda" else "study_runs_per_core_hour"
    sweeps: dict[str, dict[str, list]] = {str(n): {side: [] for side in checkouts} for n in args.throughput}
    for r in range(args.throughput_rounds):
        order = list(checkouts) if r % 2 == 0 else list(reversed(checkouts))
        for n in args.throughput:
            for side in order:
                sweep_dir = workdir / f"round{r}" / f"{side}_packed_{n}"
                sweeps[str(n)][side].append(packed_run(args, base_overrides, n, checkouts[side], sweep_dir))
    medians = {
        n: {side: median([s[measure] for s in rows]) for side, rows in by_side.items()} for n, by_side in sweeps.items()
    }
    return {
        "measure": measure,
        "checkouts": {side: str(path) for side, path in checkouts.items()},
        "sweeps": sweeps,
        "median": medians,
        "ratio_new_vs_old": {n: m["new"] / m["old"] for n, m in medians.items()} if args.checkout else None,
    }
