"""The device's own ceilings and where a training step sits under them (a roofline).

Three limits, each measured on the device the benchmark runs on, in the same run:

- matrix rate: ``torch.mm`` of two ``size x size`` matrices (2 size^3 FLOPs) in bf16 and fp32, and on CUDA
  fp32 with TF32 tensor cores (``torch.set_float32_matmul_precision("high")``); on a GPU 8192 reaches
  the dense rate;
- memory bandwidth: a device-to-device copy of ``copy_mb`` MiB (read once, written once: 2 x bytes);
- launch floor: the time per launch of a tiny kernel (``x.add_(1)`` on one element) issued back to back,
  which on a GPU is the host's cost of issuing a kernel and on a CPU the dispatcher's cost per operator.

A step's position (``roofline``): FLOPs from torch's FLOP counter, bytes from the tensors its operators
read (torch.profiler's recorded shapes and dtypes: each produced tensor counted when it is read, so
writes are not counted twice), launches from the operators (on CUDA the kernels) it runs. Each limit
gives the time the step would take if that limit alone bound it; the largest names the bound.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from bench.machine import matmul, repeated
from bench.timing import interleaved, synchronize

# torch.profiler's dtype names -> bytes per element (unknown names count as 4).
DTYPE_BYTES = {
    "float": 4,
    "double": 8,
    "c10::BFloat16": 2,
    "c10::Half": 2,
    "long int": 8,
    "int": 4,
    "short int": 2,
    "signed char": 1,
    "unsigned char": 1,
    "bool": 1,
}
BOUNDS = ("launch", "memory", "compute")


@contextlib.contextmanager
def matmul_precision(precision: str) -> Iterator[None]:
    """``torch.set_float32_matmul_precision`` for the duration ("high": TF32 tensor cores on CUDA)."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def timed_rate(once: Callable[[], Any], work: float, device: str, calls: int) -> float:
    """Work per second of ``once`` (``work`` units per call): median over ``calls`` timed calls of about 20 ms."""
    kernel = repeated(once, work, device, {})
    return kernel.flops / interleaved({"kernel": kernel.run}, calls, 0, device)["kernel"]


def matmul_rates(size: int, device: str, calls: int = 5) -> dict[str, float]:
    """FLOP/s of a dense ``size``^3 matrix product: bf16, fp32 and (CUDA) fp32 on TF32 tensor cores."""
    precisions = {"bfloat16": (torch.bfloat16, "highest"), "float32": (torch.float32, "highest")}
    if device == "cuda":
        precisions["tf32"] = (torch.float32, "high")
    rates = {}
    for name, (dtype, precision) in precisions.items():
        with matmul_precision(precision):
            rates[name] = timed_rate(matmul(size, device, dtype), 2.0 * size**3, device, calls)
    return rates


def copy_bandwidth(megabytes: float, device: str, calls: int = 5) -> float:
    """Bytes/s of a device-to-device copy of ``megabytes`` MiB (each byte read and written: 2 x the size)."""
    n = max(1, int(megabytes * 2**20) // 4)
    src, dst = torch.ones(n, device=device), torch.empty(n, device=device)
    return timed_rate(lambda: dst.copy_(src), 2.0 * 4 * n, device, calls)


def launch_seconds(device: str, launches: int = 2000, calls: int = 5) -> float:
    """Seconds per launch of a one-element kernel issued back to back (the floor under any kernel)."""
    x = torch.zeros(1, device=device)

    def burst():
        for _ in range(launches):
            x.add_(1)

    return 1.0 / timed_rate(burst, launches, device, calls)


def measure(device: str, matmul_size: int, copy_mb: float) -> dict[str, Any]:
    """The device's ceilings: matrix FLOP/s by precision, copy bytes/s, seconds per launch, and their shapes."""
    return {
        "device": device,
        "matmul_size": matmul_size,
        "matmul_flops_per_s": matmul_rates(matmul_size, device),
        "copy_mb": copy_mb,
        "copy_bytes_per_s": copy_bandwidth(copy_mb, device),
        "launch_s": launch_seconds(device),
    }


def _tensor_bytes(shapes: list, dtypes: list) -> int:
    return sum(
        math.prod(shape) * DTYPE_BYTES.get(dtype, 4)
        for shape, dtype in zip(shapes, dtypes, strict=False)
        if shape and dtype in DTYPE_BYTES
    )


def step_profile(step: Callable[[], None], device: str) -> dict[str, int | None]:
    """One call of ``step`` under torch.profiler: operators that run kernels (ATen ops with no ATen op inside),
    the bytes of the tensors they read, and on CUDA the kernels launched."""
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with profile(activities=activities, record_shapes=True) as prof:
        step()
        synchronize(device)
    events = prof.events()
    leaves = [
        e
        for e in events
        if e.name.startswith("aten::") and not any(c.name.startswith("aten::") for c in e.cpu_children)
    ]
    kernels = sum(1 for e in events if e.device_type == torch.autograd.DeviceType.CUDA) if device == "cuda" else None
    return {
        "ops": len(leaves),
        "kernels": kernels,
        "bytes_read": sum(_tensor_bytes(e.input_shapes, e.input_dtypes) for e in leaves),
    }


def roofline(
    flops: float, bytes_moved: float, launches: int, seconds: float, ceilings: dict[str, Any], precision: str
) -> dict[str, Any]:
    """Where a step of ``seconds`` sits: the time each limit alone allows, the bound (the largest), the achieved
    FLOP/s and bytes/s against the ceilings, arithmetic intensity (FLOPs / byte) against the ridge point
    (matrix rate / bandwidth: below it memory binds before arithmetic)."""
    peak, bandwidth = ceilings["matmul_flops_per_s"][precision], ceilings["copy_bytes_per_s"]
    floor_s = {
        "compute": flops / peak,
        "memory": bytes_moved / bandwidth,
        "launch": launches * ceilings["launch_s"],
    }
    bound = max(BOUNDS, key=floor_s.get)
    return {
        "precision": precision,
        "flops": flops,
        "bytes": bytes_moved,
        "launches": launches,
        "step_s": seconds,
        "intensity_flops_per_byte": flops / bytes_moved if bytes_moved else math.inf,
        "ridge_flops_per_byte": peak / bandwidth,
        "achieved_flops_per_s": flops / seconds,
        "achieved_bytes_per_s": bytes_moved / seconds,
        "compute_fraction": flops / seconds / peak,
        "memory_fraction": bytes_moved / seconds / bandwidth,
        "floor_s": floor_s,
        "bound": bound,
        "bound_fraction": floor_s[bound] / seconds,  # how much of the step the binding limit explains
    }
