"""Estimate what a sweep costs on paper: FLOPs per run (torch's FLOP counter) x runs / a stated throughput.

    python scripts/estimate_cost.py experiment=upsample_study_gpu --val-images 3669 --val-size 375x500 --tflops 100

Training FLOPs per image are counted for a forward and backward pass of each mode's network at the
crop size; evaluation FLOPs for a forward pass at ``--val-size``, for every validation of the run
(``validations`` during training, one before it, one of the best checkpoint after it). Data loading,
the artifact probe and start-up are left out. The sweep's modes and seeds come from its config.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from unet_upsampling.builders import build_task
from unet_upsampling.jobs import job_context

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "unet_upsampling" / "configs"


def flops(net: torch.nn.Module, size: tuple[int, int], backward: bool) -> float:
    x = torch.randn(1, net.in_channels, *size)
    with FlopCounterMode(display=False) as counter:
        out = net(x)
        if backward:
            out.square().mean().backward()
    return float(counter.get_total_flops())


def sweep_values(cfg, key: str) -> list[str]:
    value = str(OmegaConf.select(cfg, f"hydra.sweeper.params.{key}", default="") or "")
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
    args = parser.parse_args(argv)
    with initialize_config_module("unet_upsampling.configs", version_base="1.3"):
        base = compose("train", overrides=args.overrides, return_hydra_config=True)
    modes, seeds = sweep_values(base, "upsample"), sweep_values(base, "seed")
    per_run = {}
    for mode in modes:
        with initialize_config_module("unet_upsampling.configs", version_base="1.3"):
            cfg = compose("train", overrides=[*args.overrides, f"upsample={mode}"], return_hydra_config=True)
        with job_context(cfg) as job:
            net = build_task(OmegaConf.to_container(job, resolve=True)).net
            crop = (job.data.crop_size, job.data.crop_size)
            val_size = tuple(int(v) for v in args.val_size.split("x")) if args.val_size else crop
            steps, batch, validations = job.trainer.max_steps, job.data.batch_size, (job.validations or 0) + 2
        train = flops(net, crop, backward=True) * steps * batch
        evaluate = flops(net.eval(), val_size, backward=False) * validations * args.val_images
        per_run[mode] = train + evaluate
        print(
            f"{mode}: {per_run[mode] / 1e15:.1f} PFLOP per run ({train / 1e15:.1f} training, "
            f"{evaluate / 1e15:.1f} evaluation)"
        )
    total = sum(per_run.values()) * len(seeds)
    hours = total / (args.tflops * 1e12) / 3600
    print(
        f"{len(modes)} modes x {len(seeds)} seeds = {len(modes) * len(seeds)} runs: {total / 1e18:.2f} EFLOP, "
        f"{hours:.1f} GPU hours at {args.tflops:g} TFLOP/s sustained"
    )
    return {"flop": total, "gpu_hours": hours}


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
