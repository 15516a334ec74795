"""Estimate what a sweep costs: GPU seconds from measured runs, and FLOPs per run / a stated throughput.

    python scripts/estimate_cost.py experiment=upsample_study_gpu data=isbi2012 --val-images 6
    python scripts/estimate_cost.py experiment=upsample_study_gpu --val-images 3669 --val-size 375x500 --tflops 100

GPU seconds: each run's steps times the GPU seconds per step of a measured packed sweep (``MEASURED``,
``--measured`` picks one; each row says where and when it was measured), that is the device time a run
takes when runs share the GPU as they did there. A study step of this UNet is bound by kernel launches
on an H200 (docs/performance.md), so a row measured at 64 px crops stands for larger crops too until
their own row is measured. On paper: training FLOPs per image for a forward and backward pass of each
mode's network at the crop size; evaluation FLOPs for a forward pass at ``--val-size``, for every
validation of the run (``validations`` during training, one before it, one of the best checkpoint after
it); data loading, the artifact probe and start-up are left out. The sweep's modes and seeds come from
its config, or from the command line where it names them; every other swept key (the
study's learning rates) multiplies the runs.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from unet_upsampling.builders import build_task
from unet_upsampling.jobs import job_context

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "unet_upsampling" / "configs"
# Measured sweeps: runs side by side on one GPU, steps each, the sweep's wall time. GPU seconds per run =
# wall / runs (the device's time each run took while they shared it). Add a row per new measurement.
MEASURED = {
    "h200_packed8_64px": {
        "source": "issue 25, H200, 2026-12-04, commit 4edfcda: 8 x vnc_em runs side by side, 1000 steps of 8 x 64 px "
        "crops each, OMP_NUM_THREADS=2 each",
        "runs": 8,
        "steps": 1000,
        "wall_s": 50.0,
    },
    "h200_packed3_64px": {
        "source": "issue 25, H200, 2026-12-04, commit 4edfcda: 3 x vnc_em runs side by side, 4000 steps of 8 x 64 px "
        "crops each (2.5 minutes each)",
        "runs": 3,
        "steps": 4000,
        "wall_s": 150.0,
    },
}


def flops(net: torch.nn.Module, size: tuple[int, int], backward: bool) -> float:
    x = torch.randn(1, net.in_channels, *size)
    with FlopCounterMode(display=False) as counter:
        out = net(x)
        if backward:
            out.square().mean().backward()
    return float(counter.get_total_flops())


def sweep_values(cfg, key: str, overrides: list[str]) -> list[str]:
    """The values a multirun takes for ``key``: the command line's (which replace the config's), else the config's."""
    given = [o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0] == key]
    params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None) or {}
    value = given[-1] if given else str(params.get(key) or "")  # keys may hold dots: task.optimizer.lr
    if value == "glob(*)" and key == "upsample":
        return sorted(p.stem for p in (CONFIGS / "upsample").glob("*.yaml"))
    chosen = cfg.hydra.runtime.choices.upsample if key == "upsample" else OmegaConf.select(cfg, key)
    return [v for v in value.split(",") if v] or [str(chosen)]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="train.py overrides, e.g. experiment=upsample_study_gpu")
    parser.add_argument("--val-images", type=int, required=True, help="images in the validation split")
    parser.add_argument("--val-size", default=None, help="HxW of a validation image (default: the crop size)")
    parser.add_argument("--tflops", type=float, default=100.0, help="sustained TFLOP/s the GPU reaches")
    parser.add_argument("--measured", default="h200_packed8_64px", choices=sorted(MEASURED), help="GPU s/step from")
    args = parser.parse_args(argv)
    print(measured_table())
    with initialize_config_module("unet_upsampling.configs", version_base="1.3"):
        base = compose("train", overrides=args.overrides, return_hydra_config=True)
    modes = sweep_values(base, "upsample", args.overrides)
    swept = {"seed", *(OmegaConf.select(base, "hydra.sweeper.params", default=None) or {})} - {"upsample"}
    values = {key: sweep_values(base, key, args.overrides) for key in sorted(swept)}
    repeats = math.prod(len(v) for v in values.values())
    per_run, gpu_s = {}, {}
    rate = gpu_seconds_per_step(MEASURED[args.measured])
    for mode in modes:
        with initialize_config_module("unet_upsampling.configs", version_base="1.3"):
            cfg = compose("train", overrides=[*args.overrides, f"upsample={mode}"], return_hydra_config=True)
        with job_context(cfg) as job:
            net = build_task(OmegaConf.to_container(job, resolve=True)).net
            crop = (job.data.crop_size, job.data.crop_size)
            val_size = tuple(int(v) for v in args.val_size.split("x")) if args.val_size else crop
            # the validations while training, the one before training, the best checkpoint's at the end (roughly: it
            # is left out where the best is the final weights)
            extra = int(job.get("validate_at_init", True)) + int(job.get("eval_weights", "best") == "best")
            steps, batch, validations = job.trainer.max_steps, job.data.batch_size, (job.validations or 0) + extra
        train = flops(net, crop, backward=True) * steps * batch
        evaluate = flops(net.eval(), val_size, backward=False) * validations * args.val_images
        per_run[mode], gpu_s[mode] = train + evaluate, steps * rate
        print(
            f"{mode}: {steps} steps, {gpu_s[mode]:.0f} GPU s per run ({args.measured}); on paper "
            f"{per_run[mode] / 1e15:.1f} PFLOP per run ({train / 1e15:.1f} training, {evaluate / 1e15:.1f} evaluation)"
        )
    total = sum(per_run.values()) * repeats
    hours = total / (args.tflops * 1e12) / 3600
    measured_hours = sum(gpu_s.values()) * repeats / 3600
    grid = "".join(f" x {len(v)} {key}" for key, v in values.items())
    print(
        f"{len(modes)} modes{grid} = {len(modes) * repeats} runs: {measured_hours:.2f} GPU hours packed as "
        f"{args.measured}; on paper {total / 1e18:.2f} EFLOP, {hours:.1f} GPU hours at {args.tflops:g} TFLOP/s "
        f"sustained"
    )
    return {
        "flop": total,
        "gpu_hours": hours,
        "runs": len(modes) * repeats,
        "per_run": per_run,
        "gpu_seconds_per_run": gpu_s,
        "measured_gpu_hours": measured_hours,
    }


def gpu_seconds_per_step(row: dict) -> float:
    """Device seconds per step of one run of a packed sweep: wall / runs / steps."""
    return row["wall_s"] / row["runs"] / row["steps"]


def measured_table() -> str:
    lines = ["| measured sweep | runs side by side | steps | wall s | GPU s per run | GPU s per 1000 steps | source |"]
    lines.append("|---|---|---|---|---|---|---|")
    for name, row in MEASURED.items():
        per_step = gpu_seconds_per_step(row)
        lines.append(
            f"| {name} | {row['runs']} | {row['steps']} | {row['wall_s']:g} | {per_step * row['steps']:.1f} "
            f"| {per_step * 1000:.1f} | {row['source']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
