"""Decoder upsampling blocks: one class per mode, chosen by the Hydra group ``upsample``.

Every block maps ``(N, in_channels, h, w)`` to ``(N, out_channels, H, W)`` where ``(H, W)`` is the
size of the skip connection it will be concatenated with (``H`` in ``{2h, 2h + 1}`` after a
floor max-pool). Adding a mode is one class here plus one YAML file in ``configs/upsample/``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import nn

from unet_upsampling.errors import ConfigError

Size = Sequence[int]


class UpsampleBlock(Protocol):
    """What a decoder asks of a block: ``(N, in, h, w)`` to ``(N, out_channels, *output_size)``."""

    out_channels: int

    def __call__(self, x: torch.Tensor, output_size: Size | None = None) -> torch.Tensor: ...


class UpsampleFactory(Protocol):
    """A configured mode (the ``upsample`` config is a ``_partial_``): builds one block per decoder level."""

    def __call__(self, in_channels: int, out_channels: int) -> UpsampleBlock: ...


def transposed_conv_size(i: int, kernel_size: int, stride: int, padding: int, output_padding: int = 0) -> int:
    """o = (i - 1) s - 2p + k + output_padding."""
    return (i - 1) * stride - 2 * padding + kernel_size + output_padding


def pad_to(x: torch.Tensor, size: Size) -> torch.Tensor:
    """Replicate the last rows/columns until ``x`` has spatial ``size``.

    Used only for the at most ``stride - 1`` trailing rows a floor max-pool dropped, which no input
    pixel of the block reaches.
    """
    dh, dw = size[0] - x.shape[-2], size[1] - x.shape[-1]
    if dh < 0 or dw < 0:
        raise ValueError(f"upsampled map {tuple(x.shape[-2:])} is larger than the skip connection {tuple(size)}")
    if dh == 0 and dw == 0:
        return x
    return F.pad(x, (0, dw, 0, dh), mode="replicate")


def transposed_conv_to(conv: nn.ConvTranspose2d, x: torch.Tensor, output_size: Size | None) -> torch.Tensor:
    """``conv(x)`` at the skip's size: output_padding from ``output_size`` where a kernel tap reaches.

    A size needing output_padding >= s (k=3, s=2, p=1 meeting an odd skip) has a last row beyond
    every tap: the map stops one row short and that row is replicated (``pad_to``).
    """
    if output_size is None:
        return conv(x)
    (k, _), (s, _), (p, _) = conv.kernel_size, conv.stride, conv.padding
    reachable = [
        min(o, transposed_conv_size(i, k, s, p) + s - 1) for i, o in zip(x.shape[-2:], output_size, strict=True)
    ]
    return pad_to(conv(x, output_size=reachable), output_size)


def bilinear_kernel(factor: int) -> torch.Tensor:
    """2-D bilinear interpolation kernel of size k = 2f - f % 2 (the FCN construction).

    w[a, b] = (1 - |a - c| / f) (1 - |b - c| / f), c = f - 1 for odd k, f - 1/2 for even k.
    With stride f and padding ceil((f - 1) / 2) a transposed convolution with this kernel equals
    ``F.interpolate(mode="bilinear", align_corners=False)`` away from the borders.
    """
    size = 2 * factor - factor % 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    taps = 1 - (torch.arange(size, dtype=torch.float64) - center).abs() / factor
    return torch.outer(taps, taps).float()


def same_size_conv(in_channels: int, out_channels: int, kernel_size: int) -> nn.Conv2d:
    """A convolution with padding k // 2, which keeps the spatial size only for odd k."""
    if kernel_size % 2 == 0:
        raise ConfigError(
            f"upsample.kernel_size={kernel_size}: this mode's convolution must keep the skip's size, "
            f"which needs an odd kernel size; use upsample.kernel_size={kernel_size + 1}"
        )
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)


def nearest_conv_taps(kernel_size: int, scale: int) -> torch.Tensor:
    """The 0/1 map P that turns nearest-neighbour upsampling by s, then a k x k conv w, into one transposed conv.

    Output pixel s m + a sees input pixel m + floor((a + t - r) / s) through tap t (k = 2r + 1), so a
    transposed convolution with stride s, padding r and kernel k + s - 1 takes tap t of phase a at
    index 2r - t + (a + t - r) mod s: its weight is K[i, o] = P w[o, i] P^T, P of shape (k + s - 1, k).
    Exact at the borders too: both sides see zeros beyond the image.
    """
    k, s, r = kernel_size, scale, kernel_size // 2
    taps = torch.zeros(k + s - 1, k)
    for a in range(s):
        for t in range(k):
            taps[2 * r - t + (a + t - r) % s, t] = 1
    return taps


def icnr_(weight: torch.Tensor, scale: int, init=nn.init.kaiming_normal_) -> torch.Tensor:
    """ICNR init (Aitken et al. 2017): the s^2 sub-kernels feeding one pixel-shuffle output are equal.

    The pixel shuffle then starts as nearest-neighbour upsampling of a convolution, free of
    checkerboard artifacts.
    """
    out_channels, *rest = weight.shape
    sub = torch.empty(out_channels // scale**2, *rest)
    init(sub)
    with torch.no_grad():
        weight.copy_(sub.repeat_interleave(scale**2, dim=0))
    return weight


class TransposedConv(nn.Module):
    """``nn.ConvTranspose2d`` with PyTorch's random init, learnable (the classic UNet uses k=2, s=2).

    ``forward`` meets the skip's size through ``transposed_conv_to``; ``output_padding`` applies
    only when no output size is given (inside a UNet the skip always decides it). Settings with
    k - 2p > s, whose output exceeds every skip size, are refused when the block is built.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 2,
        stride: int = 2,
        padding: int = 0,
        output_padding: int = 0,
    ):
        super().__init__()
        if kernel_size - 2 * padding > stride:
            raise ConfigError(
                f"upsample.kernel_size={kernel_size}, stride={stride}, padding={padding} cannot meet the skip "
                f"connection: o = (i-1)s - 2p + k + output_padding = {stride}i + {kernel_size - 2 * padding - stride} "
                f"+ output_padding exceeds the skip's size {stride}i or {stride}i+1 for every i; "
                f"raise upsample.padding to {(kernel_size - stride + 1) // 2} or lower upsample.kernel_size"
            )
        self.conv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride, padding, output_padding)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor, output_size: Size | None = None) -> torch.Tensor:
        return transposed_conv_to(self.conv, x, output_size)


class MatchedTransposedConv(nn.Module):
    """A 1x1 convolution to ``width`` channels, then ``TransposedConv`` (k=2, s=2): ``deconv`` with as many parameters
    as the resize modes.

    width = round(m^2 in out / (in + k^2 out)) makes in * width + k^2 * width * out, the weights of
    the pair, equal m^2 in out, those of the resize modes' m x m convolution (exactly when in = 2 out,
    as at every level of both networks: width = 3 out); the 1x1 convolution has no bias, so the biases
    match too. The pair is linear, so it computes what one k=2, s=2 transposed convolution with weight
    P^T D computes (the same function class, no overlap of taps; a bias before the transposed
    convolution would add a learnable period-2 pattern): only the parameter count and the
    initialisation differ from ``deconv``. The 1x1 convolution runs at the input's resolution, where it
    costs s^2 times less than at the output's.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 2,
        stride: int = 2,
        padding: int = 0,
        matched_kernel_size: int = 3,
    ):
        super().__init__()
        width = round(
            matched_kernel_size**2 * in_channels * out_channels / (in_channels + kernel_size**2 * out_channels)
        )
        self.project = nn.Conv2d(in_channels, max(1, width), 1, bias=False)
        self.upsample = TransposedConv(max(1, width), out_channels, kernel_size, stride, padding)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor, output_size: Size | None = None) -> torch.Tensor:
        return self.upsample(self.project(x), output_size)


class BilinearTransposedConv(nn.Module):
    """A convolution to ``out_channels``, then a transposed convolution with the bilinear kernel, per channel.

    The bilinear kernel maps channel i to channel i, so upsampling is a depthwise
    ``ConvTranspose2d`` (k = 2s - s % 2, stride s, groups = out_channels), frozen unless
    ``trainable``. The change of channel count is the ``kernel_size`` convolution before it, at the
    input's resolution: s^2 times fewer pixels than the resize modes' convolution after resizing
    (FCN's score layer and MONAI's ``nontrainable`` pre-conv are placed the same way). With
    ``kernel_size=1`` the pair is one ``ConvTranspose2d(in, out, k, s)`` with weight
    w[i, o] = c[o, i] * bilinear. Frozen weights have ``requires_grad=False`` and so never reach
    the optimiser.
    """

    def __init__(
        self, in_channels: int, out_channels: int, scale_factor: int = 2, trainable: bool = False, kernel_size: int = 3
    ):
        super().__init__()
        self.conv = same_size_conv(in_channels, out_channels, kernel_size)
        self.out_channels = out_channels
        k = 2 * scale_factor - scale_factor % 2
        self.upsample = nn.ConvTranspose2d(
            out_channels,
            out_channels,
            k,
            scale_factor,
            padding=math.ceil((scale_factor - 1) / 2),
            groups=out_channels,
            bias=False,
        )
        with torch.no_grad():
            self.upsample.weight.copy_(bilinear_kernel(scale_factor).expand_as(self.upsample.weight))
        self.upsample.weight.requires_grad_(trainable)

    def forward(self, x: torch.Tensor, output_size: Size | None = None) -> torch.Tensor:
        return transposed_conv_to(self.upsample, self.conv(x), output_size)


class ResizeConv(nn.Module):
    """Interpolation (``mode``) to the skip's size, then a ``kernel_size`` convolution (Odena et al. 2016).

    ``conv=False`` resizes only: the ``in_channels`` pass whole and the decoder's convolutions after the
    concatenation do the learning, as in segmentation_models_pytorch's ``Unet``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        mode: str,
        scale_factor: int = 2,
        kernel_size: int = 3,
        align_corners: bool | None = None,
        conv: bool = True,
    ):
        super().__init__()
        self.mode, self.scale_factor, self.align_corners = mode, scale_factor, align_corners
        self.conv = same_size_conv(in_channels, out_channels, kernel_size) if conv else None
        self.out_channels = out_channels if conv else in_channels

    def forward(self, x: torch.Tensor, output_size: Size | None = None) -> torch.Tensor:
        size = None if output_size is None else tuple(output_size)
        x = F.interpolate(
            x,
            size=size,
            scale_factor=None if size else self.scale_factor,
            mode=self.mode,
            align_corners=self.align_corners,
        )
        return x if self.conv is None else self.conv(x)


class NearestConv(ResizeConv):
    """Nearest-neighbour resize, then a convolution.

    When the skip is exactly s times the input, the pair runs as one transposed convolution with
    the same output (``nearest_conv_taps``), at (k + s - 1)^2 / (s k)^2 of the multiply-adds: 16/36
    for k=3, s=2. Other sizes (an odd skip) resize and convolve.
    """

    def __init__(
        self, in_channels: int, out_channels: int, scale_factor: int = 2, kernel_size: int = 3, conv: bool = True
    ):
        super().__init__(in_channels, out_channels, "nearest", scale_factor, kernel_size, conv=conv)
        self.register_buffer("taps", nearest_conv_taps(kernel_size, scale_factor), persistent=False)

    def forward(self, x: torch.Tensor, output_size: Size | None = None) -> torch.Tensor:
        s = self.scale_factor
        if self.conv is None or (output_size is not None and list(output_size) != [s * i for i in x.shape[-2:]]):
            return super().forward(x, output_size)
        weight = torch.einsum("ut,oitq,vq->iouv", self.taps, self.conv.weight, self.taps)
        return F.conv_transpose2d(x, weight, self.conv.bias, stride=s, padding=self.conv.padding[0])


class BilinearConv(ResizeConv):
    """Bilinear resize, then a convolution."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        scale_factor: int = 2,
        kernel_size: int = 3,
        align_corners: bool = False,
        conv: bool = True,
    ):
        super().__init__(in_channels, out_channels, "bilinear", scale_factor, kernel_size, align_corners, conv)


class BilinearAdditive(ResizeConv):
    """Bilinear resize, then each group of in / out consecutive channels summed: no parameters (Wojna et al. 2019).

    Output channel c is sum_{g < G} x[c G + g] with G = in_channels / out_channels (2 at every level of
    both networks); a constant map stays constant, so the block cannot imprint a pattern of its own.
    """

    def __init__(self, in_channels: int, out_channels: int, scale_factor: int = 2, align_corners: bool = False):
        if in_channels % out_channels:
            raise ConfigError(
                f"upsample=bilinear_additive sums groups of in/out channels, but {in_channels} input channels do not "
                f"split into {out_channels} groups: use a network whose decoder halves the width at every level "
                f"(model.decoder_channels), or another upsample mode"
            )
        super().__init__(in_channels, out_channels, "bilinear", scale_factor, align_corners=align_corners, conv=False)
        self.out_channels, self.groups = out_channels, in_channels // out_channels

    def forward(self, x: torch.Tensor, output_size: Size | None = None) -> torch.Tensor:
        return super().forward(x, output_size).unflatten(1, (self.out_channels, self.groups)).sum(2)


class PixelShuffle(nn.Module):
    """Convolution to out * s^2 channels, ``nn.PixelShuffle(s)``, ICNR init (Aitken et al. 2017).

    ``blur`` adds the zero-order-hold blur of Sugawara et al. (2018): replicate-pad one pixel at the
    top and left, then a 2x2 average, which removes what is left of the checkerboard.
    """

    def __init__(
        self, in_channels: int, out_channels: int, scale_factor: int = 2, kernel_size: int = 3, blur: bool = False
    ):
        super().__init__()
        self.conv = same_size_conv(in_channels, out_channels * scale_factor**2, kernel_size)
        self.out_channels = out_channels
        icnr_(self.conv.weight, scale_factor)
        nn.init.zeros_(self.conv.bias)
        self.shuffle = nn.PixelShuffle(scale_factor)
        self.blur = nn.Sequential(nn.ReplicationPad2d((1, 0, 1, 0)), nn.AvgPool2d(2, stride=1)) if blur else None

    def forward(self, x: torch.Tensor, output_size: Size | None = None) -> torch.Tensor:
        x = self.shuffle(self.conv(x))
        if self.blur is not None:
            x = self.blur(x)
        return x if output_size is None else pad_to(x, output_size)
