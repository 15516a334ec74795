"""The machine: what it is (CPU, threads, versions) and its own limit, measured beside the training steps.

The limit is two kernels, timed as candidates of the training part's interleaved rounds so that
they see the same load as the networks:

- fp32 GEMM: ``torch.mm`` of two ``size x size`` matrices, 2 size^3 FLOPs;
- 3x3 convolution, forward + backward (gradients of input and weight, as in a training step): a
  ``Conv2d(C, C, 3, padding=1, bias=False)`` at the UNet's two widest levels (C = base_channels *
  2^d at crop_size / 2^d for d = depth and depth - 1), the training batch, the network's layout and
  precision. The machine's conv FLOP/s is the faster level's; a training step's achieved fraction
  is its FLOP/s over that.

Each kernel call repeats the kernel until it lasts about 20 ms, so a call is long enough to time.
"""

from __future__ import annotations

import contextlib
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from torch import nn

from bench.timing import count_flops, spread, synchronize
from unet_upsampling.provenance import cpu_name

CALL_SECONDS = 0.02  # a kernel call repeats its kernel up to about this long
MAX_REPEATS = 64


def machine(device: str) -> dict[str, Any]:
    info = {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "lightning": L.__version__,
        "python": platform.python_version(),
        "device": device,
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    with contextlib.suppress(ImportError):
        import monai

        info["monai"] = monai.__version__
    return info


@dataclass
class Kernel:
    """One call of ``run`` does ``flops`` FLOPs; ``shape`` describes it in the report."""

    run: Callable[[], None]
    flops: float
    shape: dict[str, Any] = field(default_factory=dict)


def repeated(once: Callable[[], None], flops: float, device: str, shape: dict[str, Any]) -> Kernel:
    """``once`` repeated so that a call lasts about CALL_SECONDS (timed after two warm-up calls)."""
    for _ in range(2):
        once()
    synchronize(device)
    start = time.perf_counter()
    once()
    synchronize(device)
    repeats = max(1, min(MAX_REPEATS, math.ceil(CALL_SECONDS / max(time.perf_counter() - start, 1e-6))))

    def run():
        for _ in range(repeats):
            once()

    return Kernel(run, repeats * flops, shape | {"repeats_per_call": repeats})


def matmul(size: int, device: str, dtype: torch.dtype = torch.float32) -> Callable[[], Any]:
    """``torch.mm`` of two random ``size x size`` matrices into one output: 2 size^3 FLOPs a call."""
    a, b = (torch.randn(size, size, device=device, dtype=dtype) for _ in range(2))
    out = torch.empty(size, size, device=device, dtype=dtype)
    return lambda: torch.mm(a, b, out=out)


def conv_kernel(batch: int, channels: int, side: int, device: str, channels_last: bool, bf16: bool) -> Kernel:
    """Forward + backward of one 3x3 conv at a UNet level: what the training step's convolutions do."""
    conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False).to(device)
    x = torch.randn(batch, channels, side, side, device=device, requires_grad=True)
    if channels_last:
        conv = conv.to(memory_format=torch.channels_last)
        x = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()

    def once():
        conv.weight.grad = x.grad = None
        with torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
            y = conv(x)
        y.backward(torch.ones_like(y))

    shape = {"batch": batch, "channels": channels, "side": side, "channels_last": channels_last, "bf16": bf16}
    return repeated(once, count_flops(once), device, shape | {"pass": "forward+backward"})


def limit_kernels(
    depth: int, width: int, crop: int, batch: int, device: str, channels_last: bool, bf16: bool, gemm_size: int
) -> dict[str, Kernel]:
    """The GEMM and the conv of the two widest UNet levels, by name (``gemm``, ``conv_level{d}``)."""
    gemm = repeated(matmul(gemm_size, device), 2.0 * gemm_size**3, device, {"size": gemm_size, "dtype": "float32"})
    kernels = {"gemm": gemm}
    for d in sorted({depth, max(depth - 1, 0)}, reverse=True):
        side = max(1, crop // 2**d)
        kernels[f"conv_level{d}"] = conv_kernel(batch, width * 2**d, side, device, channels_last, bf16)
    return kernels


def flops_per_s(kernels: dict[str, Kernel], seconds: dict[Any, float]) -> dict[str, float]:
    """One repeat's FLOP/s per kernel from its interleaved seconds (keyed ``("machine", name)``)."""
    return {name: k.flops / seconds[("machine", name)] for name, k in kernels.items()}


def summarise(kernels: dict[str, Kernel], repeats: list[dict[str, float]]) -> dict[str, Any]:
    """The limit over the repeats: per kernel the median FLOP/s and spread, the conv limit (the faster level)."""
    per_kernel = {
        name: {**k.shape, "flops_per_call": k.flops, "flops_per_s": spread([r[name] for r in repeats])}
        for name, k in kernels.items()
    }
    convs = [name for name in kernels if name.startswith("conv")]
    best = max(convs, key=lambda name: per_kernel[name]["flops_per_s"]["median"])
    return {
        "gemm_flops_per_s": per_kernel["gemm"]["flops_per_s"]["median"],
        "conv_flops_per_s": per_kernel[best]["flops_per_s"]["median"],
        "conv_level": best,
        "conv_pass": "forward+backward",
        "kernels": per_kernel,
    }


def conv_limit(repeat: dict[str, float]) -> float:
    """One repeat's machine conv FLOP/s: its faster conv level."""
    return max(v for name, v in repeat.items() if name.startswith("conv"))
