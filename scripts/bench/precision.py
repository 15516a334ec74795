"""fp32 against bf16 autocast, per upsample mode: one training step of the task, the two interleaved.

``OMP_NUM_THREADS=1 python scripts/bench/precision.py [--modes deconv nearest_conv] [--rounds 5] [overrides]``

For each mode, the task train.py builds (``bench.config``: the same network, loss and AdamW) takes one step on
one training batch per call, in fp32 and under ``torch.autocast(dtype=torch.bfloat16)`` (what
``trainer.precision=bf16-mixed`` runs), round after round in a rotating order. Prints seconds per step, the
ratio fp32 / bf16 (above 1: bf16 is faster) and whether the CPU has bfloat16 arithmetic (AVX-512 BF16 or AMX):
without it, bf16 is emulated and slower.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: the bench package lives in scripts/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.config import MODES, compose, optimizer_of, task_of, training_step
from bench.timing import interleaved
from unet_upsampling.checks import cpu_has_bf16

STUDY = ["data=synthetic", "data.crop_size=64", "data.batch_size=8"]  # the study's batch; depth 4, width 16


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="precision.py",
        description="fp32 against bf16 autocast per upsample mode, one training step, interleaved.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--modes", nargs="+", default=MODES, choices=MODES, metavar="MODE", help="upsample modes")
    add("--rounds", type=int, default=5, help="timed rounds (each candidate once per round)")
    add("--warmup", type=int, default=1, help="untimed steps of each candidate first")
    add("--device", default="cpu", choices=["cpu", "cuda"])
    add("overrides", nargs="*", help=f"train.py overrides after {' '.join(STUDY)}")
    return parser.parse_args(argv)


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    """A row per mode: seconds per step in fp32 and in bf16, and their ratio."""
    from hydra.utils import instantiate

    rows = []
    for mode in args.modes:
        cfg = compose([*STUDY, f"upsample={mode}", *args.overrides])
        data = instantiate(cfg.data)
        data.setup()
        image, mask = (t.to(args.device) for t in next(iter(data.train_dataloader())))
        steps = {}
        for bf16 in (False, True):
            task = task_of(cfg)
            steps["bf16" if bf16 else "fp32"] = training_step(task, optimizer_of(task, args.device), args.device, bf16)
        calls = {name: functools.partial(step, image, mask) for name, step in steps.items()}
        seconds = interleaved(calls, args.rounds, args.warmup, args.device)
        rows.append({"mode": mode, **seconds, "fp32/bf16": seconds["fp32"] / seconds["bf16"]})
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| mode | fp32 s/step | bf16 s/step | fp32 / bf16 |", "|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['fp32']:.3f} | {r['bf16']:.3f} | {r['fp32/bf16']:.2f} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    rows = measure(args)
    print(f"CPU bfloat16 arithmetic: {cpu_has_bf16()}" if args.device == "cpu" else f"device: {args.device}")
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
