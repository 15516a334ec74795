"""Measuring: interleaved rounds and their medians, time per step, peak memory, FLOPs, host syncs, ``StepTimer``.

``StepTimer`` is the callback the train.py runs load (``+callbacks.step_timer._target_=bench.timing.StepTimer``
with ``scripts/`` on ``PYTHONPATH``), so this module imports nothing from the rest of ``bench``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import lightning as L
import torch

import unet_upsampling

# A tensor's value read on the host: a device sync on a GPU. bool() counts too: ``if tensor.any():`` syncs as
# ``.item()`` does (torchmetrics' aggregation metrics check every update for NaN that way).
SYNC_METHODS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def per_step(batch_ends: list[float], skip: int) -> float:
    """Seconds per step after the first ``skip`` + 1 steps: from the end of step ``skip`` (counting from 0) to the
    end of the last, over the steps between."""
    if len(batch_ends) - 1 - skip < 1:
        raise ValueError(f"{len(batch_ends)} steps: at least {skip + 2} are needed")
    return (batch_ends[-1] - batch_ends[skip]) / (len(batch_ends) - 1 - skip)


def spread(values: list[float]) -> dict[str, Any]:
    """Median, min, max and the values themselves (one per repeat)."""
    return {"median": median(values), "min": min(values), "max": max(values), "values": list(values)}


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def interleaved(
    candidates: dict[Hashable, Callable[[], Any]], rounds: int, warmup: int, device: str
) -> dict[Hashable, float]:
    """Median seconds per call of each candidate; candidates alternate within every round."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times: dict[Hashable, list[float]] = {name: [] for name in candidates}
    names = list(candidates)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:  # rotate: no candidate always goes first
            synchronize(device)
            start = time.perf_counter()
            candidates[name]()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: median(t) for name, t in times.items()}


# --------------------------------------------------------------------------------------------------
# memory


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


# --------------------------------------------------------------------------------------------------
# FLOPs


def count_flops(fn: Callable[[], Any]) -> float:
    """FLOPs of one call of ``fn`` as torch.utils.flop_counter counts them (matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def train_flops(net: torch.nn.Module, image: torch.Tensor) -> float:
    """Forward + backward FLOPs per image of ``net`` in training mode."""
    net = net.train()
    flops = count_flops(lambda: net(image[:1].clone()).float().sum().backward())
    net.zero_grad(set_to_none=True)
    return flops


# --------------------------------------------------------------------------------------------------
# host syncs and the train.py callback


def sync_counter() -> tuple[Counter, Callable[[], None]]:
    """Counts calls of ``SYNC_METHODS`` (Tensor.item, bool(tensor), ...) by calling file; returns (counter, undo).

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
    start to its last batch end. Validations are left out: a validation's time (from its start to the next
    batch's or epoch's start: the validation, the checkpoints written then) stops the training clock, and the
    step interval holding one is dropped. ``batch_end_s`` is every batch's end on that clock (epoch ends and
    loader restarts in, validations out); ``epoch_total_s`` keeps everything. Start-up (imports, data
    generation, model build, the validation before training) is the time from ``T0`` (env ``UNET_BENCH_T0``,
    the launcher's clock) to the first batch. Writes JSON to ``path``, with the run's torch threads and the
    directory of the ``unet_upsampling`` package it imported.
    """

    def __init__(self, path: str, count_syncs: bool = True):
        self.path, self.count_syncs = Path(path), count_syncs
        self.steps: list[float] = []
        self.batch_ends: list[float] = []
        self.epochs: list[float] = []
        self.epoch_totals: list[float] = []
        self.syncs: list[int] = []
        self.sync_sites: Counter = Counter()
        self.first_batch: float | None = None
        self._epoch_start: float | None = None
        self._last_end: float | None = None
        self._val_start: float | None = None
        self._validating = 0.0  # seconds of validation so far
        self._validating_at_epoch_start = self._validating_at_last_end = 0.0
        self._counts: Counter | None = None
        self._undo: Callable[[], None] | None = None

    def _end_validation(self) -> bool:
        """Stops counting an open validation's time; whether one was open."""
        if self._val_start is None:
            return False
        self._validating += time.perf_counter() - self._val_start
        self._val_start = None
        return True

    def on_fit_start(self, trainer, pl_module):
        if self.count_syncs:
            self._counts, self._undo = sync_counter()

    def on_train_epoch_start(self, trainer, pl_module):
        self._end_validation()
        self._epoch_start, self._last_end = time.perf_counter(), None
        self._validating_at_epoch_start = self._validating

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first_batch is None:
            self.first_batch = time.time()
        if self._end_validation():  # back from a validation inside the epoch: its interval is left out
            self._last_end = None
        if self._counts is not None:
            self._counts.clear()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        now = time.perf_counter()
        self.batch_ends.append(now - self._validating)
        if self._last_end is not None:
            self.steps.append(now - self._last_end)
        self._last_end, self._validating_at_last_end = now, self._validating
        if self._counts is not None:
            # everything since this batch started: forward, backward, optimiser, logging, callbacks
            self.syncs.append(sum(self._counts.values()))
            self.sync_sites.update(self._counts)

    def on_validation_start(self, trainer, pl_module):
        if self._epoch_start is not None:  # not the validation before fitting
            self._val_start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        if self._last_end is not None:
            validating = self._validating_at_last_end - self._validating_at_epoch_start
            self.epochs.append(self._last_end - self._epoch_start - validating)
        self.epoch_totals.append(time.perf_counter() - self._epoch_start)

    def on_fit_end(self, trainer, pl_module):
        if self._undo is not None:
            self._undo()
        t0 = float(os.environ.get("UNET_BENCH_T0", "nan"))
        record = {
            "step_s": self.steps,
            "batch_end_s": self.batch_ends,
            "epoch_s": self.epochs,
            "epoch_total_s": self.epoch_totals,
            "syncs_per_step": self.syncs,
            "sync_sites": dict(self.sync_sites),
            "startup_s": (self.first_batch - t0) if self.first_batch else None,
            "log_every_n_steps": trainer.log_every_n_steps,
            "batch_size": getattr(trainer.datamodule, "batch_size", None),
            "torch_threads": torch.get_num_threads(),
            "package": str(Path(unet_upsampling.__file__).parent),
        }
        self.path.write_text(json.dumps(record))
