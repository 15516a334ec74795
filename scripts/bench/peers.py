"""segmentation_models_pytorch's Unet behind our network's interface, to train it with train.py for the peer
comparison (docs/study): ``PYTHONPATH=scripts python train.py model=encoder_unet model._target_=bench.peers.SmpUnet``.

It takes EncoderUNet's arguments; the decoder's upsampling is smp's own (resize, then its convolutions after
the concatenation): nearest for ``upsample=nearest_conv``, bilinear for ``upsample=bilinear_conv``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from unet_upsampling.models.encoder_unet import measured_reach
from unet_upsampling.models.execution import in_layout, set_execution

INTERPOLATION = {"NearestConv": "nearest", "BilinearConv": "bilinear"}


def smp_unet(
    encoder: str,
    in_channels: int,
    num_classes: int,
    decoder_channels: Sequence[int],
    interpolation: str,
    pretrained: bool = False,
) -> nn.Module:
    """segmentation_models_pytorch's Unet as it ships: ``encoder`` (random init or ImageNet weights), our decoder
    widths, its decoder resizing by ``interpolation``; also the training benchmark's peer (bench/training.py)."""
    import segmentation_models_pytorch as smp

    return smp.Unet(
        encoder_name=encoder,
        encoder_weights="imagenet" if pretrained else None,
        in_channels=in_channels,
        classes=num_classes,
        decoder_channels=tuple(decoder_channels),
        decoder_interpolation=interpolation,
    )


class SmpUnet(nn.Module):
    """smp.Unet(encoder, random init or ImageNet weights) with the attributes train.py and the probe use.

    It takes model=encoder_unet's keys; smp's head is a 3x3 convolution whatever ``head_kernel_size`` says.
    """

    stride = 32

    def __init__(
        self,
        upsample: functools.partial,
        encoder: str = "resnet34",
        in_channels: int = 3,
        num_classes: int = 2,
        pretrained: bool = False,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        input_normalize: Mapping | None = None,
        channels_last: bool = False,
        compile: bool = False,
        head_kernel_size: int = 1,
        compile_mode: str | None = None,
    ):
        super().__init__()
        block = upsample.func.__name__
        if block not in INTERPOLATION:
            raise ValueError(
                f"smp's Unet resizes in its decoder: use upsample=nearest_conv or bilinear_conv, not {block}"
            )
        self.encoder_name, self.in_channels, self.num_classes, self.depth = encoder, in_channels, num_classes, 5
        self.net = smp_unet(encoder, in_channels, num_classes, decoder_channels, INTERPOLATION[block], pretrained)
        self.encoder = self.net.encoder
        set_execution(self, channels_last, compile, compile_mode)

    @property
    def min_size(self) -> int:
        return self.stride

    def receptive_field(self) -> int:
        """Our EncoderUNet's margin for the same encoder: its decoder has one convolution more per stage."""
        return (measured_reach(self.encoder_name, self.in_channels) // self.stride + 2) * self.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pad_h, pad_w = -h % self.stride, -w % self.stride
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else x
        return self.net(in_layout(self, x))[..., :h, :w]
