"""``python scripts/benchmark.py`` / ``unet-benchmark``: time per run, measured side by side.

Four parts, every candidate of a part interleaved round by round in one process so that a shared or
throttled CPU slows them alike; each number is the median over the timed rounds after a warm-up:

1. training step (forward, loss, backward, AdamW step) of the project's UNet for each upsample mode,
   also in channels_last, with the peak memory a step adds (RSS on CPU, ``max_memory_allocated``
   on GPU) and the model FLOPs per image;
2. the same for MONAI's ``BasicUNet`` with the same widths, BatchNorm + ReLU, and the matching
   upsampling (optional ``bench`` extra);
3. a plain PyTorch loop over the same model and data against real ``train.py`` runs (a timing
   callback inside them; start-up reported apart), per step and per epoch, and the host syncs a
   step makes;
4. the data pipeline alone (synthetic and folder sources, 0/1/2 workers) and inference on the
   ``predict.py`` path.

Prints a table, writes JSON (``--output``) with the ratios ours / MONAI, train.py / plain loop and
pipeline / model consumption.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import torch

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
_FIRST = ["deconv", "nearest_conv", "bilinear_conv", "pixelshuffle"]  # the modes MONAI has a counterpart for
MODES = _FIRST + sorted(p.stem for p in (CONFIG_DIR / "upsample").glob("*.yaml") if p.stem not in _FIRST)
# Our block class -> MONAI BasicUNet(upsample=...): transposed conv, interpolation (+ conv), sub-pixel conv.
MONAI_UPSAMPLE = {
    "TransposedConv": "deconv",
    "BilinearTransposedConv": "nontrainable",
    "NearestConv": "nontrainable",
    "BilinearConv": "nontrainable",
    "PixelShuffle": "pixelshuffle",
}
# Dense bf16 tensor-core peaks (TFLOP/s) for the fraction-of-peak figure; --peak-tflops for others.
GPU_PEAK_TFLOPS = {
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10": 125.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
    "A6000": 155.0,
}
SYNC_METHODS = ("item", "tolist", "cpu", "numpy")


# --------------------------------------------------------------------------------------------------
# helpers


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def machine(device: str) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "python": platform.python_version(),
        "device": device,
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
    }
    with contextlib.suppress(ImportError):
        import monai

        info["monai"] = monai.__version__
    return info


def compose(overrides: list[str]):
    """The train.py config for ``overrides`` (no Hydra run directory is created)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module("unet_upsampling.configs", version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def resolved(cfg, key: str) -> dict[str, Any]:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg[key], resolve=True)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def trim_heap() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def peak_memory_mb(fn: Callable[[], None], device: str) -> float:
    """Memory one call of ``fn`` adds at its peak: CUDA allocator peak, or RSS sampled every ms on CPU."""
    trim_heap()
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    if not Path("/proc/self/statm").exists():
        return float("nan")
    base, peak, done = rss_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes())
            time.sleep(0.001)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    fn()
    done.set()
    thread.join()
    return (max(peak[0], rss_bytes()) - base) / 2**20


def interleaved(
    candidates: dict[str, Callable[[], Any]], rounds: int, warmup: int, device: str, per_call: int = 1
) -> dict[str, float]:
    """Median seconds per call of each candidate; candidates alternate within every round."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate: no candidate always goes first
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(per_call):
                candidates[name]()
            if device == "cuda":
                torch.cuda.synchronize()
            times[name].append((time.perf_counter() - start) / per_call)
    return {name: median(t) for name, t in times.items()}


# --------------------------------------------------------------------------------------------------
# 1 + 2: training step, ours against MONAI


def monai_unet(width: int, in_channels: int, num_classes: int, upsample: str) -> torch.nn.Module:
    from monai.networks.nets import BasicUNet

    return BasicUNet(
        spatial_dims=2,
        in_channels=in_channels,
        out_channels=num_classes,
        features=(width, 2 * width, 4 * width, 8 * width, 16 * width, width),
        act=("relu", {"inplace": True}),
        norm=("batch", {}),
        bias=False,
        upsample=upsample,
    )


def train_step_fn(
    net: torch.nn.Module,
    batch,
    loss_fn: Callable,
    optimizer_factory: Callable,
    device: str,
    channels_last: bool = False,
    bf16: bool = False,
) -> Callable[[], None]:
    net = net.to(device).train()
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    image, mask = (t.to(device) for t in batch)
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    optimizer = optimizer_factory([p for p in net.parameters() if p.requires_grad])

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            loss = loss_fn(net(image), mask)
        loss.backward()
        optimizer.step()

    return step


def model_flops(net: torch.nn.Module, image: torch.Tensor) -> tuple[float, float]:
    """(forward, forward + backward) FLOPs per image, counted by torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    net = net.train()
    x = image[:1].clone()
    with FlopCounterMode(display=False) as forward:
        out = net(x)
    with FlopCounterMode(display=False) as backward:
        out.float().sum().backward()
    net.zero_grad(set_to_none=True)
    return float(forward.get_total_flops()), float(forward.get_total_flops() + backward.get_total_flops())


def gpu_peak_flops(args) -> float | None:
    if args.peak_tflops:
        return args.peak_tflops * 1e12
    if args.device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    for key, tflops in GPU_PEAK_TFLOPS.items():
        if key in name:
            return tflops * 1e12
    return None


def bench_training(args, base_overrides: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    from hydra.utils import instantiate

    from unet_upsampling.checkpoint import build_module

    try:
        import monai  # noqa: F401

        have_monai = True
    except ImportError:
        have_monai = False
    cfg = compose(base_overrides)
    data = instantiate(cfg.data)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    module_cfg = resolved(cfg, "module")
    depth, width = cfg.model.depth, cfg.model.base_channels
    bf16 = args.device == "cuda" and args.bf16
    peak = gpu_peak_flops(args)
    results, candidates, flops, monai_modes = {}, {}, {}, {}
    layout = "channels_last" if cfg.model.get("channels_last") else "contiguous"
    for mode in args.modes:
        mcfg = compose([*base_overrides, f"upsample={mode}"])
        monai_modes[mode] = MONAI_UPSAMPLE.get(mcfg.upsample._target_.rsplit(".", 1)[-1])
        for ours_layout in ("contiguous", "channels_last") if args.variants else (layout,):
            lcfg = compose(
                [*base_overrides, f"upsample={mode}", f"model.channels_last={ours_layout == 'channels_last'}"]
            )
            module = build_module({"model": resolved(lcfg, "model"), "module": module_cfg})
            loss_fn = lambda logits, mask, m=module: m.loss_fn(logits.float(), mask, m.ignore_index)  # noqa: E731
            if ours_layout == layout:
                flops[mode] = model_flops(module.net, batch[0])
            candidates[(mode, f"ours_{ours_layout}")] = train_step_fn(
                module.net,
                batch,
                loss_fn,
                module.optimizer_factory,
                args.device,
                channels_last=ours_layout == "channels_last",
                bf16=bf16,
            )
        if have_monai and depth == 4 and monai_modes[mode]:
            for monai_layout in ("contiguous", "channels_last") if args.variants else ("contiguous",):
                net = monai_unet(width, cfg.data.in_channels, cfg.data.num_classes, monai_modes[mode])
                if monai_layout == "contiguous":
                    flops[(mode, "monai")] = model_flops(net, batch[0])
                candidates[(mode, f"monai_{monai_layout}")] = train_step_fn(
                    net,
                    batch,
                    loss_fn,
                    module.optimizer_factory,
                    args.device,
                    channels_last=monai_layout == "channels_last",
                    bf16=bf16,
                )
    memory = {key: peak_memory_mb(fn, args.device) for key, fn in candidates.items()}
    seconds = interleaved(candidates, args.steps, args.warmup, args.device)
    n = batch[0].shape[0]

    def rate(mode, variant):
        key = (mode, variant)
        return (
            None
            if key not in seconds
            else {"images_per_s": n / seconds[key], "step_ms": 1e3 * seconds[key], "peak_memory_mb": memory[key]}
        )

    def ratio(a, b):
        return a["images_per_s"] / b["images_per_s"] if a and b else None

    for mode in args.modes:
        row: dict[str, Any] = {
            "monai_upsample": monai_modes[mode] if (mode, "monai_contiguous") in seconds else None,
            "ours_layout": layout,
            "forward_gflops_per_image": flops[mode][0] / 1e9,
            "train_gflops_per_image": flops[mode][1] / 1e9,
            "monai_train_gflops_per_image": flops[(mode, "monai")][1] / 1e9 if (mode, "monai") in flops else None,
        }
        for variant in ("contiguous", "channels_last"):
            row[f"ours_{variant}"], row[f"monai_{variant}"] = (
                rate(mode, f"ours_{variant}"),
                rate(mode, f"monai_{variant}"),
            )
        # ours as configured (model.channels_last) against MONAI as it ships (contiguous) ...
        row["ours"], row["monai"] = row[f"ours_{layout}"], row["monai_contiguous"]
        row["ratio_ours_vs_monai"] = ratio(row["ours"], row["monai"])
        # ... and layout for layout
        row["ratio_ours_vs_monai_contiguous"] = ratio(row["ours_contiguous"], row["monai_contiguous"])
        row["ratio_ours_vs_monai_channels_last"] = ratio(row["ours_channels_last"], row["monai_channels_last"])
        row["ratio_channels_last_vs_contiguous"] = ratio(row["ours_channels_last"], row["ours_contiguous"])
        row["gpu_peak_fraction"] = (flops[mode][1] * row["ours"]["images_per_s"] / peak) if peak else None
        results[mode] = row
    settings = {
        "image_size": cfg.data.crop_size,
        "batch_size": n,
        "base_channels": width,
        "depth": depth,
        "monai_available": have_monai,
        "bf16": bf16,
    }
    return results, settings


# --------------------------------------------------------------------------------------------------
# 3: plain PyTorch loop against real train.py runs


def _sync_counter() -> tuple[Counter, Callable[[], None]]:
    """Counts calls of Tensor.item/tolist/cpu/numpy by calling file; returns (counter, undo).

    The optimiser's step counters are CPU tensors on every device (their ``.item()`` is no device
    sync), so calls from torch/optim are left out.
    """
    counts: Counter = Counter()
    originals = {name: getattr(torch.Tensor, name) for name in SYNC_METHODS}

    def wrap(name, original):
        def counted(self, *a, **k):
            caller = sys._getframe(1).f_code.co_filename
            if f"torch{os.sep}optim" not in caller:
                counts[f"{name} {caller.rsplit('site-packages' + os.sep, 1)[-1]}"] += 1
            return original(self, *a, **k)

        return counted

    for name, original in originals.items():
        setattr(torch.Tensor, name, wrap(name, original))

    def undo():
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)

    return counts, undo


class StepTimer(L.Callback):
    """Timing callback for train.py runs: step intervals, train part of epochs, host syncs per step.

    Step k's interval runs from the end of batch k-1 to the end of batch k (data loading, forward,
    backward, optimiser, hooks, logging), like the plain loop's; an epoch's train part runs from its
    start to its last batch end. Start-up (imports, data generation, model build) is the time from
    ``T0`` (env ``UNET_BENCH_T0``, the launcher's clock) to the first batch. Writes JSON to ``path``.
    """

    def __init__(self, path: str, count_syncs: bool = True):
        self.path, self.count_syncs = Path(path), count_syncs
        self.steps: list[float] = []
        self.epochs: list[float] = []
        self.epoch_totals: list[float] = []
        self.syncs: list[int] = []
        self.sync_sites: Counter = Counter()
        self.first_batch: float | None = None
        self._epoch_start = self._last_end = None
        self._counts: Counter | None = None
        self._undo: Callable[[], None] | None = None

    def on_fit_start(self, trainer, pl_module):
        if self.count_syncs:
            self._counts, self._undo = _sync_counter()

    def on_train_epoch_start(self, trainer, pl_module):
        self._epoch_start, self._last_end = time.perf_counter(), None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first_batch is None:
            self.first_batch = time.time()
        if self._counts is not None:
            self._counts.clear()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.perf_counter()
        if self._last_end is not None:
            self.steps.append(now - self._last_end)
        self._last_end = now
        if self._counts is not None:
            # everything since this batch started: forward, backward, optimiser, logging, callbacks
            self.syncs.append(sum(self._counts.values()))
            self.sync_sites.update(self._counts)

    def on_train_epoch_end(self, trainer, pl_module):
        if self._last_end is not None:
            self.epochs.append(self._last_end - self._epoch_start)
        self.epoch_totals.append(time.perf_counter() - self._epoch_start)

    def on_fit_end(self, trainer, pl_module):
        if self._undo is not None:
            self._undo()
        t0 = float(os.environ.get("UNET_BENCH_T0", "nan"))
        self.path.write_text(
            json.dumps(
                {
                    "step_s": self.steps,
                    "epoch_s": self.epochs,
                    "epoch_total_s": self.epoch_totals,
                    "syncs_per_step": self.syncs,
                    "sync_sites": dict(self.sync_sites),
                    "startup_s": (self.first_batch - t0) if self.first_batch else None,
                    "log_every_n_steps": trainer.log_every_n_steps,
                }
            )
        )


def plain_loop(args, overrides: list[str], epochs: int) -> dict[str, list[float]]:
    """The train.py model, data, loss, optimiser and schedule in a bare PyTorch loop."""
    from hydra.utils import instantiate

    from unet_upsampling.checkpoint import build_module

    cfg = compose(overrides)
    L.seed_everything(cfg.seed, workers=True)
    data = instantiate(cfg.data)
    data.setup()
    module = build_module({"model": resolved(cfg, "model"), "module": resolved(cfg, "module")})
    net = module.net.to(args.device).train()
    loader = data.train_dataloader()
    optimizer = module.optimizer_factory([p for p in net.parameters() if p.requires_grad])
    scheduler = module.scheduler_factory(optimizer, T_max=epochs * len(loader)) if module.scheduler_factory else None
    bf16 = args.device == "cuda" and args.bf16
    steps, epoch_times = [], []
    for _ in range(epochs):
        start = last = time.perf_counter()
        for image, mask in loader:
            image, mask = image.to(args.device, non_blocking=True), mask.to(args.device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(args.device, dtype=torch.bfloat16, enabled=bf16):
                loss = module.loss_fn(net(image).float(), mask, module.ignore_index)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if args.device == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            steps.append(now - last)
            last = now
        steps.pop(-len(loader))  # the first interval of an epoch holds the loader's start-up, as in StepTimer
        epoch_times.append(last - start)
    return {"step_s": steps, "epoch_s": epoch_times, "batch_size": data.batch_size}


def train_py_run(args, overrides: list[str], epochs: int, workdir: Path, index: int) -> dict[str, Any]:
    out = workdir / f"train_py_{index}.json"
    command = [
        sys.executable,
        "-m",
        "unet_upsampling.train",
        *overrides,
        f"trainer.max_epochs={epochs}",
        "test=false",
        f"hydra.run.dir={workdir / f'run_{index}'}",
        *(["trainer=gpu"] if args.device == "cuda" else ["trainer.accelerator=cpu"]),
        "+callbacks.step_timer._target_=unet_upsampling.benchmark.StepTimer",
        f"+callbacks.step_timer.path={out}",
    ]
    if args.device == "cuda" and not args.bf16:
        command.append("trainer.precision=32-true")
    env = {**os.environ, "UNET_BENCH_T0": repr(time.time())}
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=workdir)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    timing = json.loads(out.read_text())
    timing["wall_s"] = wall
    return timing


def bench_lightning(args, base_overrides: list[str], workdir: Path) -> dict[str, Any]:
    mode = args.modes[0]
    overrides = [*base_overrides, f"upsample={mode}"]
    plain: dict[str, list] = {"step_s": [], "epoch_s": []}
    real: dict[str, list] = {
        "step_s": [],
        "epoch_s": [],
        "epoch_total_s": [],
        "syncs_per_step": [],
        "startup_s": [],
        "wall_s": [],
    }
    sites: Counter = Counter()
    batch_size = None
    for r in range(args.train_rounds):  # alternate: plain, train.py, plain, train.py, ...
        p = plain_loop(args, overrides, args.train_epochs)
        batch_size = p["batch_size"]
        for key in plain:
            plain[key] += p[key][1:] if key == "epoch_s" else p[key]  # first epoch: warm-up
        t = train_py_run(args, overrides, args.train_epochs, workdir, r)
        for key in real:
            value = t[key]
            real[key] += (value[1:] if key == "epoch_s" else value) if isinstance(value, list) else [value]
        sites.update(t["sync_sites"])
        log_every = t["log_every_n_steps"]
    plain_row = {"step_ms": 1e3 * median(plain["step_s"]), "epoch_s": median(plain["epoch_s"] or [float("nan")])}
    plain_row["images_per_s"] = batch_size / (plain_row["step_ms"] / 1e3)
    real_row = {
        "step_ms": 1e3 * median(real["step_s"]),
        "epoch_s": median(real["epoch_s"] or [float("nan")]),
        "epoch_with_val_and_checkpoints_s": median(real["epoch_total_s"]),
        "startup_s": median([s for s in real["startup_s"] if s is not None] or [float("nan")]),
        "wall_s": median(real["wall_s"]),
        "host_syncs_per_step_median": median(real["syncs_per_step"]),
        "host_syncs_per_step_max": max(real["syncs_per_step"]),
        "host_sync_sites": dict(sites),
        "log_every_n_steps": log_every,
    }
    real_row["images_per_s"] = batch_size / (real_row["step_ms"] / 1e3)
    return {
        "mode": mode,
        "epochs_per_run": args.train_epochs,
        "runs": args.train_rounds,
        "plain": plain_row,
        "train_py": real_row,
        "ratio_train_py_vs_plain_step": real_row["images_per_s"] / plain_row["images_per_s"],
        "ratio_train_py_vs_plain_epoch": plain_row["epoch_s"] / real_row["epoch_s"],
    }


# --------------------------------------------------------------------------------------------------
# 4: data pipeline alone, inference


def endless(loader):
    while True:
        yield from loader


def write_folder(root: Path, count: int, size: int, num_classes: int) -> None:
    from PIL import Image

    from unet_upsampling.data.synthetic import render

    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image, mask = render(0, i, size, num_classes)
        Image.fromarray(image[..., 0]).save(root / "images" / f"{i:04d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:04d}.png")


def bench_pipeline(args, base_overrides: list[str], workdir: Path, model_images_per_s: float) -> dict[str, Any]:
    from hydra.utils import instantiate

    from unet_upsampling.data.synthetic import render

    cfg = compose(base_overrides)
    size, classes = cfg.data.splits.size, cfg.data.num_classes
    count = 0
    start = time.perf_counter()
    while count < 8 or time.perf_counter() - start < 0.5:
        render(1, count, size, classes)
        count += 1
    generation = count / (time.perf_counter() - start)
    folder = workdir / "folder"
    write_folder(folder, cfg.data.splits.train + cfg.data.splits.val, size, classes)
    sources = {"synthetic": [], "folder": ["data=folder", f"data.root={folder}"]}
    keep = [o for o in base_overrides if not o.startswith("data.splits")]
    iterators, loaders = {}, []
    for source, extra in sources.items():
        for workers in args.workers:
            dcfg = compose(
                [
                    *(keep if source == "folder" else base_overrides),
                    *extra,
                    f"data.num_workers={workers}",
                    f"data.crop_size={cfg.data.crop_size}",
                    f"data.batch_size={cfg.data.batch_size}",
                ]
            )
            data = instantiate(dcfg.data)
            loader = data.train_dataloader()
            loaders.append(loader)
            iterators[(source, workers)] = (endless(loader), workers)
    batches = max(4, args.pipeline_batches)

    def block(it, workers):
        def run():
            for _ in range(2 * workers):  # what the workers prefetched while another candidate ran
                next(it)
            start = time.perf_counter()
            for _ in range(batches):
                next(it)
            return time.perf_counter() - start

        return run

    times: dict[Any, list[float]] = {key: [] for key in iterators}
    for key, (it, workers) in iterators.items():  # warm-up: worker start-up
        block(it, workers)()
    keys = list(iterators)
    for r in range(args.pipeline_rounds):
        for key in keys[r % len(keys) :] + keys[: r % len(keys)]:
            times[key].append(block(*iterators[key])())
    del iterators, loaders
    batch = cfg.data.batch_size
    rate = {key: batch * batches / median(t) for key, t in times.items()}
    default_workers = int(cfg.data.num_workers)
    out = {
        "generation_images_per_s": generation,
        "image_size": size,
        "crop_size": cfg.data.crop_size,
        "default_workers": default_workers,
        "model_images_per_s": model_images_per_s,
    }
    for source in sources:
        out[source] = {str(w): rate[(source, w)] for w in args.workers}
        default = rate.get((source, default_workers))
        out[f"ratio_{source}_vs_model"] = default / model_images_per_s if default else None
    out["ratio_pipeline_vs_model"] = out["ratio_synthetic_vs_model"]
    return out


def bench_inference(args, base_overrides: list[str]) -> dict[str, Any]:
    """The predict.py path: normalise, forward one image, argmax, back to numpy; 512x512 by default."""
    from hydra.utils import instantiate

    from unet_upsampling.checkpoint import build_module
    from unet_upsampling.data.synthetic import render
    from unet_upsampling.models.unet import fuse_batchnorm

    cfg = compose([*base_overrides, f"upsample={args.modes[0]}"])
    transform = instantiate(cfg.data.eval_transform)
    images = [render(2, i, args.infer_size, cfg.data.num_classes)[0] for i in range(2)]

    def net(channels_last: bool) -> torch.nn.Module:
        L.seed_everything(0, verbose=False)
        model = resolved(cfg, "model") | {"channels_last": channels_last}
        return build_module({"model": model, "module": resolved(cfg, "module")}).net.eval().to(args.device)

    nets = {"contiguous": net(False), "channels_last": net(True)}
    nets["fused_bn"] = fuse_batchnorm(nets["contiguous"])
    nets["channels_last_fused_bn"] = fuse_batchnorm(nets["channels_last"])
    with torch.no_grad():
        reference = nets["contiguous"](transform(image=images[0])["image"].float()[None].to(args.device))
        for name, net in nets.items():
            out = net(transform(image=images[0])["image"].float()[None].to(args.device))
            if not torch.allclose(out, reference, atol=1e-3, rtol=1e-3):
                raise AssertionError(f"inference variant {name} changes the output")

    def predict_fn(net):  # the UNet converts its input to its own layout
        counter = [0]

        @torch.no_grad()
        def run():
            image = transform(image=images[counter[0] % len(images)])["image"].float()[None].to(args.device)
            counter[0] += 1
            net(image).argmax(1)[0].cpu().numpy()

        return run

    seconds = interleaved({name: predict_fn(net) for name, net in nets.items()}, args.infer_rounds, 1, args.device)
    rates = {name: 1 / s for name, s in seconds.items()}
    return {
        "image_size": args.infer_size,
        "mode": args.modes[0],
        "images_per_s": rates,
        "ratio_fused_bn_vs_contiguous": rates["fused_bn"] / rates["contiguous"],
        "ratio_channels_last_vs_contiguous": rates["channels_last"] / rates["contiguous"],
        "ratio_channels_last_fused_bn_vs_channels_last": rates["channels_last_fused_bn"] / rates["channels_last"],
    }


# --------------------------------------------------------------------------------------------------
# report


def fmt(value, spec=".1f", none="-"):
    return none if value is None else format(value, spec)


def table(report: dict[str, Any]) -> str:
    m, s = report["machine"], report["settings"]
    lines = [
        f"machine: {m['cpu']}, {m['cpu_count']} CPUs, torch {m['torch']} ({m['torch_threads']} threads), "
        f"device {m['device']}{' ' + m['gpu'] if m['gpu'] else ''}, MONAI {m.get('monai', 'absent')}",
        f"settings: {s['image_size']}x{s['image_size']} crops, batch {s['batch_size']}, base_channels "
        f"{s['base_channels']}, depth {s['depth']}; medians of {s['steps']} interleaved rounds after "
        f"{s['warmup']} warm-up",
        "",
        f"ours = the configured layout ({report['training'][next(iter(report['training']))]['ours_layout']}, "
        "model.channels_last), MONAI = BasicUNet as it ships (contiguous); same-layout ratios beside",
        "",
        "| mode | ours img/s | MONAI img/s (upsample) | ours / MONAI | same layout: contiguous, channels_last "
        "| ours channels_last / contiguous | peak MB ours / MONAI | train GFLOP/img ours / MONAI |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for mode, r in report["training"].items():
        monai = r["monai"]
        lines.append(
            f"| {mode} | {fmt(r['ours']['images_per_s'])} | "
            f"{fmt(monai and monai['images_per_s'])} ({r['monai_upsample'] or '-'}) | "
            f"{fmt(r['ratio_ours_vs_monai'], '.2f')} | {fmt(r['ratio_ours_vs_monai_contiguous'], '.2f')}, "
            f"{fmt(r['ratio_ours_vs_monai_channels_last'], '.2f')} | {fmt(r['ratio_channels_last_vs_contiguous'], '.2f')} | "
            f"{fmt(r['ours']['peak_memory_mb'], '.0f')} / {fmt(monai and monai['peak_memory_mb'], '.0f')} | "
            f"{fmt(r['train_gflops_per_image'], '.2f')} / {fmt(r['monai_train_gflops_per_image'], '.2f')} |"
            + (f" GPU peak fraction {r['gpu_peak_fraction']:.1%}" if r["gpu_peak_fraction"] else "")
        )
    lt = report.get("lightning")
    if lt:
        p, t = lt["plain"], lt["train_py"]
        lines += [
            "",
            f"train.py vs plain PyTorch loop (upsample={lt['mode']}, {lt['runs']} runs of "
            f"{lt['epochs_per_run']} epochs each, alternating):",
            "| | step ms | img/s | train epoch s | epoch incl. val + checkpoints s | start-up s "
            "| host syncs/step (median, max) |",
            "|---|---|---|---|---|---|---|",
            f"| plain loop | {p['step_ms']:.0f} | {p['images_per_s']:.1f} | {p['epoch_s']:.2f} | - | - | - |",
            f"| train.py | {t['step_ms']:.0f} | {t['images_per_s']:.1f} | {t['epoch_s']:.2f} | "
            f"{t['epoch_with_val_and_checkpoints_s']:.2f} | {t['startup_s']:.1f} | "
            f"{t['host_syncs_per_step_median']:.0f}, {t['host_syncs_per_step_max']} "
            f"(logging every {t['log_every_n_steps']} steps) |",
            f"ratio train.py / plain: {lt['ratio_train_py_vs_plain_step']:.2f} per step, "
            f"{lt['ratio_train_py_vs_plain_epoch']:.2f} per epoch",
        ]
    pl = report.get("pipeline")
    if pl:
        workers = list(pl["synthetic"])
        lines += [
            "",
            f"data pipeline alone (img/s, {pl['crop_size']} px crops of {pl['image_size']} px images; "
            f"default data.num_workers={pl['default_workers']}); synthetic generation "
            f"{pl['generation_images_per_s']:.0f} img/s (once, at setup)",
            "| source | " + " | ".join(f"{w} workers" for w in workers) + " | default / model consumption |",
            "|---|" + "---|" * (len(workers) + 1),
        ]
        for source in ("synthetic", "folder"):
            lines.append(
                f"| {source} | "
                + " | ".join(f"{pl[source][w]:.0f}" for w in workers)
                + f" | {fmt(pl[f'ratio_{source}_vs_model'], '.1f')} |"
            )
        lines.append(
            f"model consumption (training, upsample={report['lightning_mode']}): {pl['model_images_per_s']:.1f} img/s"
        )
    inf = report.get("inference")
    if inf:
        lines += [
            "",
            f"inference, predict.py path, {inf['image_size']}x{inf['image_size']}, one image at a time "
            f"(upsample={inf['mode']}): "
            + ", ".join(f"{k} {v:.2f} img/s" for k, v in inf["images_per_s"].items())
            + f"; channels_last / contiguous {inf['ratio_channels_last_vs_contiguous']:.2f}, fused BN / "
            f"unfused {inf['ratio_fused_bn_vs_contiguous']:.2f} (contiguous), "
            f"{inf['ratio_channels_last_fused_bn_vs_channels_last']:.2f} (channels_last)",
        ]
    tg = report["targets"]
    lines += [
        "",
        "targets: "
        + "; ".join(
            f"{k}: {fmt(v['value'], '.2f')} "
            f"({'==' if k == 'no_per_step_sync' else '>='} {v['threshold']}) "
            f"{'holds' if v['holds'] else 'MISSED' if v['holds'] is False else 'n/a'}"
            for k, v in tg.items()
        ),
    ]
    return "\n".join(lines)


def targets(report: dict[str, Any]) -> dict[str, Any]:
    def target(value, threshold):
        return {"value": value, "threshold": threshold, "holds": None if value is None else value >= threshold}

    ratios = [r["ratio_ours_vs_monai"] for r in report["training"].values() if r["ratio_ours_vs_monai"] is not None]
    lt, pl = report.get("lightning"), report.get("pipeline")
    syncs = lt and lt["train_py"]["host_syncs_per_step_median"]
    return {
        "ours_vs_monai_min": target(min(ratios) if ratios else None, 1.0),
        "train_py_vs_plain": target(lt and lt["ratio_train_py_vs_plain_step"], 0.9),
        "pipeline_vs_model": target(pl and pl["ratio_pipeline_vs_model"], 3.0),
        "no_per_step_sync": {"value": syncs, "threshold": 0, "holds": None if syncs is None else syncs == 0},
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        default=MODES,
        choices=MODES,
        help="upsample modes; the first one is used for the train.py, pipeline and inference parts",
    )
    parser.add_argument("--size", type=int, default=None, help="training crop size (default: data.crop_size)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: data.batch_size")
    parser.add_argument("--width", type=int, default=None, help="model.base_channels (default: the config's)")
    parser.add_argument("--depth", type=int, default=None, help="model.depth (MONAI's BasicUNet needs 4)")
    parser.add_argument("--steps", type=int, default=15, help="timed rounds of training steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per candidate")
    parser.add_argument(
        "--no-variants", dest="variants", action="store_false", help="skip the channels_last variant of our UNet"
    )
    parser.add_argument("--train-epochs", type=int, default=3, help="epochs per train.py / plain-loop run")
    parser.add_argument("--train-rounds", type=int, default=2, help="alternating train.py / plain-loop runs")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--pipeline-batches", type=int, default=16, help="batches per timed pipeline block")
    parser.add_argument("--pipeline-rounds", type=int, default=5)
    parser.add_argument("--infer-size", type=int, default=512)
    parser.add_argument("--infer-rounds", type=int, default=8)
    parser.add_argument(
        "--skip",
        nargs="*",
        default=[],
        choices=["train_py", "pipeline", "inference"],
        help="parts to leave out (their JSON fields are null)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads here and OMP_NUM_THREADS of the train.py runs (default: torch's)",
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--no-bf16", dest="bf16", action="store_false", help="on cuda: fp32 instead of bf16 autocast")
    parser.add_argument("--peak-tflops", type=float, default=None, help="device peak for the GPU fraction")
    parser.add_argument("--output", default="benchmark.json")
    parser.add_argument(
        "overrides", nargs="*", help="train.py overrides applied to every part, e.g. data.splits.size=256"
    )
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device")
        torch.backends.cudnn.benchmark = True
    if args.threads:
        torch.set_num_threads(args.threads)
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
    base = list(args.overrides)
    for flag, key in (
        (args.size, "data.crop_size"),
        (args.batch_size, "data.batch_size"),
        (args.width, "model.base_channels"),
        (args.depth, "model.depth"),
    ):
        if flag is not None:
            base.append(f"{key}={flag}")
    report: dict[str, Any] = {
        "machine": machine(args.device),
        "command": " ".join(sys.argv),
        "lightning_mode": args.modes[0],
    }
    clock = {"start": time.perf_counter()}
    report["training"], settings = bench_training(args, base)
    clock["training"] = time.perf_counter()
    report["settings"] = {
        **settings,
        "steps": args.steps,
        "warmup": args.warmup,
        "modes": args.modes,
        "overrides": base,
    }
    with tempfile.TemporaryDirectory(prefix="unet-bench-") as tmp:
        workdir = Path(tmp)
        report["lightning"] = None if "train_py" in args.skip else bench_lightning(args, base, workdir)
        clock["train_py"] = time.perf_counter()
        model_rate = report["training"][args.modes[0]]["ours"]["images_per_s"]
        report["pipeline"] = None if "pipeline" in args.skip else bench_pipeline(args, base, workdir, model_rate)
        clock["pipeline"] = time.perf_counter()
    report["inference"] = None if "inference" in args.skip else bench_inference(args, base)
    clock["inference"] = time.perf_counter()
    names = list(clock)
    report["part_seconds"] = {b: clock[b] - clock[a] for a, b in zip(names, names[1:])}
    report["targets"] = targets(report)
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    report = run(args)
    print(table(report))
    Path(args.output).write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.output}")
    return report


if __name__ == "__main__":
    main()
