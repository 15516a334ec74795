"""``python scripts/benchmark.py``: the command line, and the parts run one after the other (each part's
candidates interleaved round by round, so that a shared or throttled CPU slows them alike): the training step
against a peer network with the machine's limit and the device's ceilings, train.py against a plain loop, the
study throughput (``--throughput``, against another checkout with ``--checkout``), the data pipeline and
inference. ``--skip`` leaves parts out: ``--skip training train_py pipeline inference --throughput ...`` is the
throughput alone. Prints tables and writes JSON (``--output``) with the targets the ratios are held to.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench import report as reporting
from bench.config import MODES
from bench.inference import bench_inference
from bench.lightning_loop import bench_lightning
from bench.machine import machine
from bench.pipeline import bench_pipeline
from bench.throughput import bench_throughput
from bench.training import PAIRINGS, bench_training


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmark.py",
        description="Time per run, measured side by side (see scripts/bench/ and docs/performance.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add = parser.add_argument
    add(
        "--modes",
        nargs="+",
        default=MODES,
        choices=MODES,
        help="upsample modes; the first one is used for the train.py, pipeline and inference parts",
    )
    add("--size", type=int, default=None, help="training crop size (default: data.crop_size)")
    add("--batch-size", type=int, default=None, help="default: data.batch_size")
    add("--width", type=int, default=None, help="model.base_channels (default: the config's)")
    add("--depth", type=int, default=None, help="model.depth (MONAI's BasicUNet needs 4)")
    add("--steps", type=int, default=15, help="timed rounds of training steps")
    add("--warmup", type=int, default=3, help="untimed steps per candidate")
    add("--repeats", type=int, default=3, help="full interleaved training measurements; ratios as median [min-max]")
    add("--pairing", default="monai", choices=sorted(PAIRINGS), help="the peer network of the training part")
    add("--gemm-size", type=int, default=1024, help="side of the fp32 GEMM of the machine limit")
    add(
        "--matmul-size",
        type=int,
        default=None,
        help="side of the ceilings' matrices (default: 8192 on cuda, --gemm-size)",
    )
    add("--copy-mb", type=float, default=None, help="MiB of the bandwidth ceiling's copy (default: 1024 on cuda, 64)")
    add("--no-variants", dest="variants", action="store_false", help="skip the other layout of both networks")
    add("--train-epochs", type=int, default=3, help="epochs per train.py / plain-loop run")
    add("--train-rounds", type=int, default=2, help="alternating train.py / plain-loop runs")
    add(
        "--throughput",
        type=int,
        nargs="*",
        default=[],
        help="study throughput: train.py runs side by side (joblib launcher), one sweep per N (none: skipped)",
    )
    add("--throughput-steps", type=int, default=200, help="steps per run of the throughput sweeps")
    add("--study-steps", type=int, default=4000, help="the study run the throughput is projected to")
    add("--throughput-rounds", type=int, default=1, help="sweeps per N (and per checkout), alternating checkouts")
    add(
        "--checkout",
        default=None,
        help="another commit's checkout (git worktree add DIR COMMIT): its throughput sweeps alternate with these",
    )
    add("--workers", type=int, nargs="+", default=[0, 1, 2])
    add("--pipeline-batches", type=int, default=16, help="batches per timed pipeline block")
    add("--pipeline-rounds", type=int, default=5)
    add("--infer-size", type=int, default=512)
    add("--infer-rounds", type=int, default=8)
    add(
        "--skip",
        nargs="*",
        default=[],
        choices=["training", "train_py", "pipeline", "inference"],
        help="parts to leave out (their JSON fields are null)",
    )
    add(
        "--threads",
        type=int,
        default=None,
        help="torch threads here and OMP_NUM_THREADS of the train.py runs (default: torch's; the throughput's runs "
        "on a CPU: OMP_NUM_THREADS, else 1)",
    )
    add("--device", default="cpu", choices=["cpu", "cuda"])
    add("--no-bf16", dest="bf16", action="store_false", help="on cuda: fp32 instead of bf16 autocast")
    add("--output", default="benchmark.json")
    add("overrides", nargs="*", help="train.py overrides applied to every part, e.g. data.source.size=256")
    args = parser.parse_args(argv)
    args.command = shlex.join(["python", "scripts/benchmark.py", *(sys.argv[1:] if argv is None else argv)])
    if args.repeats < 1 or args.throughput_rounds < 1:
        parser.error("--repeats and --throughput-rounds must be at least 1")
    if args.checkout and not (Path(args.checkout) / "src" / "unet_upsampling").is_dir():
        parser.error(f"--checkout {args.checkout}: no src/unet_upsampling there")
    return args


def base_overrides(args: argparse.Namespace) -> list[str]:
    base = list(args.overrides)
    for flag, key in (
        (args.size, "data.crop_size"),
        (args.batch_size, "data.batch_size"),
        (args.width, "model.base_channels"),
        (args.depth, "model.depth"),
    ):
        if flag is not None:
            base.append(f"{key}={flag}")
    return base


def prepare_device(args: argparse.Namespace) -> None:
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device")
        torch.backends.cudnn.benchmark = True
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)


def run(args: argparse.Namespace) -> dict[str, Any]:
    prepare_device(args)
    base = base_overrides(args)
    report: dict[str, Any] = {
        "machine": machine(args.device),
        "command": args.command,
        "lightning_mode": args.modes[0],
        "settings": {"steps": args.steps, "warmup": args.warmup, "modes": args.modes, "overrides": base},
        "training": None,
        "machine_limit": None,
    }
    clock = {"start": time.perf_counter()}
    if "training" not in args.skip:
        report["training"], settings, report["machine_limit"] = bench_training(args, base)
        report["settings"] |= settings
    clock["training"] = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="unet-bench-") as tmp:
        workdir = Path(tmp)
        report["lightning"] = None if "train_py" in args.skip else bench_lightning(args, base, workdir)
        clock["train_py"] = time.perf_counter()
        report["throughput"] = bench_throughput(args, base, workdir) if args.throughput else None
        clock["throughput"] = time.perf_counter()
        model_rate = report["training"] and report["training"][args.modes[0]]["ours"]["images_per_s"]
        report["pipeline"] = None if "pipeline" in args.skip else bench_pipeline(args, base, workdir, model_rate)
        clock["pipeline"] = time.perf_counter()
    report["inference"] = None if "inference" in args.skip else bench_inference(args, base)
    clock["inference"] = time.perf_counter()
    names = list(clock)
    report["part_seconds"] = {b: clock[b] - clock[a] for a, b in itertools.pairwise(names)}
    report["targets"] = reporting.targets(report)
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    report = run(args)
    print(reporting.table(report))
    reporting.write_json(report, args.output)
    print(f"\nwrote {args.output}")
    return report
