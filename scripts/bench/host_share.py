"""The host's share of a training step: train.py against the plain loop where compute vanishes.

``OMP_NUM_THREADS=1 python scripts/bench/host_share.py [--images 16 512] [--steps 256] [--repeats 5] [overrides]``

A depth-2 UNet of width 4 on 16 px crops in batches of 8 (``TINY_NET``) makes a step almost all host work
(Python, dispatch, hooks, logging, the data pipeline), so train.py's time per step over the plain loop's
(``bench.lightning_loop.plain_loop``: the same model, data, loss, optimiser and schedule) is what train.py
adds per step. For each training-set size (``data.source.train``), every repeat runs both, one after the other
(the order alternating between repeats), for ``--steps`` steps. Per step is the time from the end of step
``--warmup-steps`` to the end of the last step over the steps between: epoch ends, loader restarts and
logging steps are in, start-up is out, and so are validations (train.py validates once, after its last step:
``validations=1``). Prints the median over the repeats of each and of the per-repeat ratios, each repeat's value
in brackets.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: the bench package lives in scripts/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lightning_loop import plain_loop, train_py_run
from bench.timing import median, per_step

TINY_NET = [
    "model.depth=2",
    "model.base_channels=4",
    "data.crop_size=16",
    "data.batch_size=8",
    "data.source.size=32",
    "data.source.val=8",
    "data.source.test=0",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="host_share.py",
        description="train.py against the plain loop at a network so small that a step is almost all host work.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add("--images", type=int, nargs="+", default=[16, 512], help="training-set sizes (data.source.train)")
    add("--steps", type=int, default=256, help="optimiser steps per run")
    add("--warmup-steps", type=int, default=16, help="steps left out at the start of each run")
    add("--repeats", type=int, default=5, help="runs of each per training-set size")
    add("--mode", default="deconv", help="the upsample mode")
    add("--device", default="cpu", choices=["cpu", "cuda"])
    add("--no-bf16", dest="bf16", action="store_false", help="on cuda: fp32 instead of bf16 autocast")
    add("overrides", nargs="*", help="train.py overrides after the tiny network's, e.g. data.batch_size=16")
    args = parser.parse_args(argv)
    if args.steps - args.warmup_steps < 2:
        parser.error("--steps must be at least --warmup-steps + 2")
    return args


def measure(args: argparse.Namespace, images: int, workdir: Path) -> dict[str, Any]:
    """``--repeats`` plain-loop and train.py runs on ``images`` training images: ms per step and ratios."""
    overrides = [*TINY_NET, f"data.source.train={images}", f"upsample={args.mode}", *args.overrides]
    schedule = [f"trainer.max_steps={args.steps}", "trainer.max_epochs=-1", "validations=1"]
    plain, real, epoch = [], [], 0
    for r in range(args.repeats):
        for side in ("plain", "train_py") if r % 2 == 0 else ("train_py", "plain"):
            if side == "plain":
                loop = plain_loop(args, overrides, epochs=args.steps, max_steps=args.steps)
                plain.append(per_step(loop["batch_end_s"], args.warmup_steps))
                epoch = loop["steps_per_epoch"]
            else:
                ends = train_py_run(args, [*overrides, *schedule], workdir, f"{images}_{r}")["batch_end_s"]
                real.append(per_step(ends, args.warmup_steps))
    ratios = [t / p for t, p in zip(real, plain, strict=True)]
    return {
        "images": images,
        "steps_per_epoch": epoch,
        "plain_ms": [1e3 * s for s in plain],
        "train_py_ms": [1e3 * s for s in real],
        "ratios": ratios,
        "plain_ms_median": 1e3 * median(plain),
        "train_py_ms_median": 1e3 * median(real),
        "ratio_median": median(ratios),
    }


def table(rows: list[dict[str, Any]], steps: int) -> str:
    def cell(value: float, values: list[float], spec: str) -> str:
        return f"{value:{spec}} [{', '.join(format(v, spec) for v in values)}]"

    lines = [
        "| training images (steps per epoch) | plain loop ms/step | train.py ms/step | train.py / plain |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['images']} ({row['steps_per_epoch']}) | {cell(row['plain_ms_median'], row['plain_ms'], '.1f')} "
            f"| {cell(row['train_py_ms_median'], row['train_py_ms'], '.1f')} "
            f"| {cell(row['ratio_median'], row['ratios'], '.2f')} |"
        )
    return "\n".join([f"medians over the repeats [each repeat], {steps} steps per run:", *lines])


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="unet-host-share-") as tmp:
        for images in args.images:
            rows.append(measure(args, images, Path(tmp)))
    print(table(rows, args.steps))
    return rows


if __name__ == "__main__":
    main()
