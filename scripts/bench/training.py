"""Training step (the task's own training step, backward, AdamW step): our UNet per upsample mode against a peer
network, the peer inside our task (the same loss, optimiser and batch).

A pairing names our network (train.py overrides on top of the command line's) and a peer built for
each composed config, with the same loss, optimiser and batch; ``PAIRINGS`` holds them, and adding
one is an entry there. Every candidate (ours and the peer's, in both layouts, plus the machine's
limit kernels) alternates within every round; ``--repeats`` runs the whole interleaved measurement
again, and the ratios are reported as median and min-max over the repeats:

- per image: images/s of ours over the peer's (the user's view);
- per FLOP: (images/s x training FLOPs per image) of ours over the peer's: the speed at equal work
  (``bilinear_conv`` does 34 % more work than MONAI's ``nontrainable`` block, by design).

FLOPs are torch.utils.flop_counter's count (convolutions and matmuls) of one image, forward + backward.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from bench import ceilings, machine
from bench.config import compose, optimizer_of, task_of, training_step
from bench.peers import INTERPOLATION as SMP_INTERPOLATION
from bench.peers import smp_unet
from bench.timing import interleaved, median, peak_memory_mb, spread, train_flops

LAYOUTS = ("contiguous", "channels_last")
# Our block class -> MONAI BasicUNet(upsample=...): transposed conv, interpolation (+ conv), sub-pixel conv.
MONAI_UPSAMPLE = {
    "TransposedConv": "deconv",
    "BilinearTransposedConv": "nontrainable",
    "NearestConv": "nontrainable",
    "BilinearConv": "nontrainable",
    "PixelShuffle": "pixelshuffle",
}


@dataclass(frozen=True)
class Peer:
    """The peer's counterpart of one of our configs: its own name for the block, and a builder."""

    label: str
    build: Callable[[], nn.Module]


@dataclass(frozen=True)
class Pairing:
    """Our network (``overrides`` of train.py) against a peer (``peer(cfg)``: None where it has no counterpart).

    ``key`` names the JSON fields (``<key>_contiguous``, ``ratio_ours_vs_<key>``, ...), ``requires``
    the module the peer needs (an optional extra: without it only ours is measured).
    """

    key: str
    name: str  # in the table's columns
    network: str  # what the peer is, in the table's header
    requires: str
    peer: Callable[[DictConfig], Peer | None]
    overrides: tuple[str, ...] = ()


def monai_unet(width: int, in_channels: int, num_classes: int, upsample: str) -> nn.Module:
    """MONAI's BasicUNet with our widths, BatchNorm + ReLU, no conv bias, and the given upsampling."""
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


def monai_peer(cfg: DictConfig) -> Peer | None:
    upsample = MONAI_UPSAMPLE.get(cfg.upsample._target_.rsplit(".", 1)[-1])
    if upsample is None or OmegaConf.select(cfg, "model.depth") != 4:  # BasicUNet has four levels
        return None
    width, channels, classes = cfg.model.base_channels, cfg.data.in_channels, cfg.data.num_classes
    return Peer(upsample, lambda: monai_unet(width, channels, classes, upsample))


def smp_peer(cfg: DictConfig) -> Peer | None:
    interpolation = SMP_INTERPOLATION.get(cfg.upsample._target_.rsplit(".", 1)[-1])
    if interpolation is None or not cfg.model.encoder.startswith("resnet"):
        return None
    args = (cfg.model.encoder, cfg.data.in_channels, cfg.data.num_classes, list(cfg.model.decoder_channels))
    return Peer(interpolation, lambda: smp_unet(*args, interpolation))


# The pairings (our config overrides -> peer constructor): another is one entry and its peer function.
PAIRINGS = {
    "monai": Pairing("monai", "MONAI", "MONAI's BasicUNet", "monai", monai_peer),
    "smp": Pairing(
        "smp",
        "smp",
        "segmentation_models_pytorch's Unet",
        "segmentation_models_pytorch",
        smp_peer,
        ("model=encoder_unet",),
    ),
}


# --------------------------------------------------------------------------------------------------
# setting up the candidates


@dataclass
class Setup:
    """The candidates of one pairing: ``(mode, side_layout)`` -> a training step; training FLOPs per image by
    (mode, side)."""

    pairing: Pairing
    cfg: DictConfig
    batch: Any
    layout: str  # ours as configured (model.channels_last)
    bf16: bool
    peer_available: bool
    candidates: dict[tuple[str, str], Callable[[], None]] = field(default_factory=dict)
    flops: dict[tuple[str, str], float] = field(default_factory=dict)
    peer_labels: dict[str, str | None] = field(default_factory=dict)

    @property
    def batch_size(self) -> int:
        return self.batch[0].shape[0]


def candidate(task, setup: Setup, device: str, channels_last: bool = False) -> Callable[[], None]:
    """One training step of ``task`` on the setup's batch per call (``channels_last``: the network and the batch
    converted, for a peer; ours converts its input itself, as configured)."""
    image, mask = (t.to(device) for t in setup.batch)
    if channels_last:
        task.net.to(memory_format=torch.channels_last)
        image = image.contiguous(memory_format=torch.channels_last)
    return functools.partial(training_step(task, optimizer_of(task, device), device, setup.bf16), image, mask)


def add_mode(setup: Setup, args, overrides: list[str], mode: str) -> None:
    """Our UNet in the configured layout (and the other one with variants), and the peer as it ships
    (contiguous; also channels_last with variants) inside our task: the same loss, optimiser and batch."""
    image = setup.batch[0]
    for layout in LAYOUTS if args.variants else (setup.layout,):
        task = task_of(compose([*overrides, f"model.channels_last={layout == 'channels_last'}"]))
        if layout == setup.layout:
            setup.flops[(mode, "ours")] = train_flops(task.net, image)
        setup.candidates[(mode, f"ours_{layout}")] = candidate(task, setup, args.device)
    cfg = compose(overrides)
    peer = setup.pairing.peer(cfg) if setup.peer_available else None
    setup.peer_labels[mode] = peer and peer.label
    if peer is None:
        return
    for layout in LAYOUTS if args.variants else ("contiguous",):
        task = task_of(cfg)
        task.net = peer.build()
        if layout == "contiguous":
            setup.flops[(mode, setup.pairing.key)] = train_flops(task.net, image)
        setup.candidates[(mode, f"{setup.pairing.key}_{layout}")] = candidate(
            task, setup, args.device, layout == "channels_last"
        )


def prepare(args, base_overrides: list[str], pairing: Pairing) -> Setup:
    from hydra.utils import instantiate

    overrides = [*base_overrides, *pairing.overrides]
    cfg = compose(overrides)
    data = instantiate(cfg.data)
    data.setup()
    setup = Setup(
        pairing,
        cfg,
        next(iter(data.train_dataloader())),
        "channels_last" if cfg.model.get("channels_last") else "contiguous",
        args.device == "cuda" and args.bf16,
        importlib.util.find_spec(pairing.requires) is not None,
    )
    for mode in args.modes:
        add_mode(setup, args, [*overrides, f"upsample={mode}"], mode)
    return setup


# --------------------------------------------------------------------------------------------------
# measuring and summarising


def measure(setup: Setup, kernels: dict[str, machine.Kernel], args) -> list[dict[Any, float]]:
    """Seconds per call of every candidate and limit kernel, one dict per repeat (each a full interleaved run)."""
    candidates: dict[Any, Callable[[], Any]] = dict(setup.candidates)
    candidates |= {("machine", name): kernel.run for name, kernel in kernels.items()}
    return [interleaved(candidates, args.steps, args.warmup, args.device) for _ in range(args.repeats)]


def rate(repeats: list[dict], key, n: int, memory: dict) -> dict[str, float] | None:
    if key not in repeats[0]:
        return None
    return {
        "images_per_s": median([n / r[key] for r in repeats]),
        "step_ms": 1e3 * median([r[key] for r in repeats]),
        "peak_memory_mb": memory[key],
    }


def ratio_spread(repeats: list[dict], a, b, scale: float = 1.0) -> dict[str, Any] | None:
    """Images/s of ``a`` over ``b`` (times ``scale``) per repeat: median, min, max, values."""
    if a not in repeats[0] or b not in repeats[0]:
        return None
    return spread([scale * r[b] / r[a] for r in repeats])


def achieved(repeats: list[dict], key, n: int, flops: float | None, limits: list[dict[str, float]]):
    """(training FLOP/s, fraction of the machine's conv FLOP/s), medians over the repeats."""
    if key not in repeats[0] or flops is None:
        return None, None
    rates = [n * flops / r[key] for r in repeats]
    return median(rates), median([x / machine.conv_limit(lim) for x, lim in zip(rates, limits, strict=True)])


def mode_row(setup: Setup, mode: str, repeats: list[dict], memory: dict, limits: list[dict]) -> dict[str, Any]:
    key, layout, n = setup.pairing.key, setup.layout, setup.batch_size
    ours_flops, peer_flops = setup.flops[(mode, "ours")], setup.flops.get((mode, key))
    ours, peer = (mode, f"ours_{layout}"), (mode, f"{key}_contiguous")
    row: dict[str, Any] = {
        f"{key}_upsample": setup.peer_labels[mode] if peer in repeats[0] else None,
        "ours_layout": layout,
        "train_gflops_per_image": ours_flops / 1e9,
        f"{key}_train_gflops_per_image": peer_flops / 1e9 if peer_flops else None,
    }
    for variant in LAYOUTS:
        row[f"ours_{variant}"] = rate(repeats, (mode, f"ours_{variant}"), n, memory)
        row[f"{key}_{variant}"] = rate(repeats, (mode, f"{key}_{variant}"), n, memory)
    # ours as configured (model.channels_last) against the peer as it ships (contiguous) ...
    row["ours"], row[key] = row[f"ours_{layout}"], row[f"{key}_contiguous"]
    per_image = ratio_spread(repeats, ours, peer)
    per_flop = ratio_spread(repeats, ours, peer, ours_flops / peer_flops) if peer_flops else None
    row[f"ratio_ours_vs_{key}"], row[f"ratio_ours_vs_{key}_spread"] = per_image and per_image["median"], per_image
    row[f"ratio_ours_vs_{key}_per_flop"], row[f"ratio_ours_vs_{key}_per_flop_spread"] = (
        per_flop and per_flop["median"],
        per_flop,
    )
    # ... and layout for layout
    for variant in LAYOUTS:
        same = ratio_spread(repeats, (mode, f"ours_{variant}"), (mode, f"{key}_{variant}"))
        row[f"ratio_ours_vs_{key}_{variant}"] = same and same["median"]
    cl = ratio_spread(repeats, (mode, "ours_channels_last"), (mode, "ours_contiguous"))
    row["ratio_channels_last_vs_contiguous"] = cl and cl["median"]
    flop_rate, row["machine_conv_fraction"] = achieved(repeats, ours, n, ours_flops, limits)
    row["train_gflop_per_s"] = flop_rate / 1e9
    peer_rate, row[f"{key}_machine_conv_fraction"] = achieved(repeats, peer, n, peer_flops, limits)
    row[f"{key}_train_gflop_per_s"] = peer_rate and peer_rate / 1e9
    return row


def bench_training(args, base_overrides: list[str]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(rows by mode, settings, the machine's limit) for the pairing ``args.pairing``."""
    setup = prepare(args, base_overrides, PAIRINGS[args.pairing])
    cfg = setup.cfg
    # the machine's conv reference: the classic UNet's widest levels (an encoder UNet: the default UNet's)
    depth, width = (
        OmegaConf.select(cfg, "model.depth", default=4),
        OmegaConf.select(cfg, "model.base_channels", default=16),
    )
    kernels = machine.limit_kernels(
        depth,
        width,
        cfg.data.crop_size,
        setup.batch_size,
        args.device,
        setup.layout == "channels_last",
        setup.bf16,
        args.gemm_size,
    )
    memory = {key: peak_memory_mb(fn, args.device) for key, fn in setup.candidates.items()}
    repeats = measure(setup, kernels, args)
    limits = [machine.flops_per_s(kernels, r) for r in repeats]
    rows = {mode: mode_row(setup, mode, repeats, memory, limits) for mode in args.modes}
    device_ceilings = ceilings.measure(args.device, *ceiling_sizes(args))
    for mode, row in rows.items():
        row["roofline"] = step_roofline(setup, mode, row, device_ceilings, args.device)
    settings = {
        "image_size": cfg.data.crop_size,
        "batch_size": setup.batch_size,
        "base_channels": width,
        "depth": depth,
        "network": cfg.model._target_.rsplit(".", 1)[-1] + (f" {cfg.model.encoder}" if "encoder" in cfg.model else ""),
        "pairing": setup.pairing.key,
        "peer": setup.pairing.name,
        "peer_network": setup.pairing.network,
        "peer_available": setup.peer_available,
        "bf16": setup.bf16,
        "repeats": args.repeats,
    }
    return rows, settings, machine.summarise(kernels, limits) | {"ceilings": device_ceilings}


def ceiling_sizes(args) -> tuple[int, float]:
    """(matrix side, copy MiB) of the ceilings: by default 8192 and 1 GiB on CUDA (they reach the dense rate
    and the bandwidth there), --gemm-size and 64 MiB on a CPU."""
    cuda = args.device == "cuda"
    size = args.matmul_size or (8192 if cuda else args.gemm_size)
    return size, args.copy_mb or (1024.0 if cuda else 64.0)


def step_roofline(setup: Setup, mode: str, row: dict[str, Any], device_ceilings: dict, device: str) -> dict:
    """Our network's training step (configured layout) under the device's ceilings (``ceilings.roofline``)."""
    profiled = ceilings.step_profile(setup.candidates[(mode, f"ours_{setup.layout}")], device)
    precision = "bfloat16" if setup.bf16 else "tf32" if device == "cuda" else "float32"
    return ceilings.roofline(
        setup.flops[(mode, "ours")] * setup.batch_size,
        profiled["bytes_read"],
        profiled["kernels"] or profiled["ops"],
        row["ours"]["step_ms"] / 1e3,
        device_ceilings,
        precision,
    ) | {"ops": profiled["ops"], "kernels": profiled["kernels"]}
