"""How a network runs, the one home of it for every network (``UNet``, ``EncoderUNet``, the benchmark's smp peer):
weights and activations in channels-last memory, and compilation with torch.compile."""

from __future__ import annotations

import torch
from torch import nn

from unet_upsampling.errors import ConfigError


def compile_in_place(net: nn.Module, mode: str | None) -> None:
    """``nn.Module.compile`` with torch.compile's ``mode`` (None: its default); compiled on the first call.

    "reduce-overhead" replays each step's kernels as CUDA graphs (one launch instead of hundreds, for
    launch-bound steps on a GPU); on a CPU every mode compiles with inductor, without graphs.
    """
    import torch._inductor  # torch.compile's documented way to list its modes

    modes = torch._inductor.list_mode_options()
    if mode is not None and mode not in modes:
        raise ConfigError(f"model.compile_mode={mode!r}: choose null or one of {', '.join(modes)}")
    net.compile(mode=mode)


def set_execution(net: nn.Module, channels_last: bool, compile: bool, compile_mode: str | None) -> None:
    """The end of a network's ``__init__``: with ``channels_last`` its weights move to NHWC now and
    :func:`in_layout` converts its input in ``forward`` (the fast layout for tensor cores); with ``compile`` it is
    compiled in place, which leaves state_dict keys, and so checkpoints, alone (:func:`compile_in_place`)."""
    net.channels_last = channels_last
    if channels_last:
        net.to(memory_format=torch.channels_last)
    if compile:
        compile_in_place(net, compile_mode)


def in_layout(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` in the memory layout :func:`set_execution` gave ``net``."""
    return x.contiguous(memory_format=torch.channels_last) if net.channels_last else x
