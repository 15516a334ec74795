"""UNet (Ronneberger et al. 2015) whose decoder upsampling block is injected."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

UpsampleFactory = Callable[[int, int], nn.Module]


class DoubleConv(nn.Sequential):
    """(3x3 conv, BatchNorm, ReLU) x 2."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """Encoder of ``depth`` max-pool + DoubleConv stages, width ``base_channels * 2**d`` at depth d.

    ``upsample(in_channels, out_channels)`` builds one decoder block; it is called with the skip
    connection's size, so any input size works (each side must be at least ``2**depth``) and the
    output has the input's height and width.

    ``channels_last`` keeps weights and activations in NHWC (the fast layout for tensor cores; the
    input is converted in ``forward``); ``compile`` compiles the module in place with
    ``nn.Module.compile`` on its first call, which leaves state_dict keys, and so checkpoints, alone.
    """

    def __init__(
        self,
        upsample: UpsampleFactory,
        in_channels: int = 1,
        num_classes: int = 2,
        depth: int = 4,
        base_channels: int = 32,
        channels_last: bool = False,
        compile: bool = False,
    ):
        super().__init__()
        widths = [base_channels * 2**d for d in range(depth + 1)]
        self.depth, self.in_channels, self.num_classes = depth, in_channels, num_classes
        self.stem = DoubleConv(in_channels, widths[0])
        self.pool = nn.MaxPool2d(2)
        self.encoder = nn.ModuleList(DoubleConv(widths[d], widths[d + 1]) for d in range(depth))
        self.upsample = nn.ModuleList(upsample(widths[d + 1], widths[d]) for d in reversed(range(depth)))
        self.decoder = nn.ModuleList(DoubleConv(2 * widths[d], widths[d]) for d in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)
        if compile:
            self.compile()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < 2**self.depth:
            raise ValueError(
                f"input {tuple(x.shape[-2:])} is smaller than 2**depth = {2**self.depth}: "
                f"lower model.depth or use larger images/crops"
            )
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        skips = []
        x = self.stem(x)
        for stage in self.encoder:
            skips.append(x)
            x = stage(self.pool(x))
        for up, stage, skip in zip(self.upsample, self.decoder, reversed(skips)):
            x = stage(torch.cat([skip, up(x, skip.shape[-2:])], dim=1))
        return self.head(x)


def fuse_batchnorm(net: nn.Module) -> nn.Module:
    """A copy of ``net`` for inference with every Conv2d -> BatchNorm2d pair of a DoubleConv folded into one conv.

    Uses the BatchNorm running statistics, so the copy is in eval mode and computes what ``net.eval()``
    computes (to float rounding).
    """
    fused = copy.deepcopy(net).eval()
    for block in fused.modules():
        if isinstance(block, DoubleConv):
            for i in (0, 3):
                block[i] = nn.utils.fusion.fuse_conv_bn_eval(block[i], block[i + 1])
                block[i + 1] = nn.Identity()
    return fused
