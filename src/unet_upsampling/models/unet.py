"""UNet (Ronneberger et al. 2015) whose decoder upsampling block is injected."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from unet_upsampling.models.execution import in_layout, set_execution
from unet_upsampling.models.upsample import Size, UpsampleFactory


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


class UNetDecoder(nn.Module):
    """From the deepest features up: at each stage the upsampling block meets the skip's size, then
    concatenation with the skip and a DoubleConv (from the block's ``out_channels`` plus the skip's).

    ``skip_channels`` and ``out_channels`` run from the deepest stage to the shallowest. A decoder
    with more stages than skips (an encoder whose first features are already downsampled) ends with
    stages that meet the sizes given to ``forward`` without concatenating anything.
    """

    def __init__(
        self, upsample: UpsampleFactory, in_channels: int, skip_channels: Sequence[int], out_channels: Sequence[int]
    ):
        super().__init__()
        if len(out_channels) < len(skip_channels):
            raise ValueError(f"{len(out_channels)} decoder stages for {len(skip_channels)} skip connections")
        widths = [in_channels, *out_channels]
        skips = [*skip_channels, *[0] * (len(out_channels) - len(skip_channels))]
        self.upsample = nn.ModuleList(upsample(widths[i], widths[i + 1]) for i in range(len(out_channels)))
        self.stages = nn.ModuleList(
            DoubleConv(up.out_channels + s, w) for up, w, s in zip(self.upsample, out_channels, skips, strict=True)
        )

    def forward(self, x: torch.Tensor, skips: Sequence[torch.Tensor], sizes: Sequence[Size] = ()) -> torch.Tensor:
        """``skips`` deepest first; ``sizes`` the output sizes of the stages after the last skip."""
        targets = [*skips, *sizes]
        for up, stage, target in zip(self.upsample, self.stages, targets, strict=True):
            if isinstance(target, torch.Tensor):
                x = torch.cat([target, up(x, target.shape[-2:])], dim=1)
            else:
                x = up(x, target)
            x = stage(x)
        return x


class UNet(nn.Module):
    """Encoder of ``depth`` max-pool + DoubleConv stages, width ``base_channels * 2**d`` at depth d.

    The decoder (``UNetDecoder``) gives every upsampling block its skip connection's size, so any
    input size works (each side at least ``2**depth``) and the output has the input's size.

    ``channels_last`` keeps weights and activations in NHWC, ``compile`` compiles the module in place with
    torch.compile's ``compile_mode`` (``models/execution.py``).
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
        compile_mode: str | None = None,
    ):
        super().__init__()
        widths = [base_channels * 2**d for d in range(depth + 1)]
        self.depth, self.in_channels, self.num_classes = depth, in_channels, num_classes
        self.stem = DoubleConv(in_channels, widths[0])
        self.pool = nn.MaxPool2d(2)
        self.encoder = nn.ModuleList(DoubleConv(widths[d], widths[d + 1]) for d in range(depth))
        self.decoder = UNetDecoder(upsample, widths[-1], widths[-2::-1], widths[-2::-1])
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        set_execution(self, channels_last, compile, compile_mode)

    @property
    def min_size(self) -> int:
        """The smallest image side the network accepts: 2**depth (one pixel at the deepest level)."""
        return 2**self.depth

    def receptive_field(self) -> int:
        """An upper bound on the receptive-field radius in pixels: 10 * 2^depth.

        Encoder: two 3x3 convs (2) and, per level d, a 2x2 pool and two 3x3 convs at stride 2^d:
        2 + sum_d (2^(d-1) + 2^(d+1)) = 5 * 2^D - 3. Decoder, per level, an upsampling of at most
        4 taps (2^d), a 3x3 conv (2^(d-1)) and two 3x3 convs (2^d): 5 * 2^D - 5. Larger upsampling
        kernels than these defaults need a wider margin.
        """
        return 10 * 2**self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(x.shape[-2:]) < self.min_size:
            raise ValueError(
                f"input {tuple(x.shape[-2:])} is smaller than 2**depth = {self.min_size}: "
                f"lower model.depth or use larger images/crops"
            )
        skips = [self.stem(in_layout(self, x))]
        for stage in self.encoder:
            skips.append(stage(self.pool(skips[-1])))
        return self.head(self.decoder(skips.pop(), skips[::-1]))
