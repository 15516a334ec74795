"""A UNet whose encoder is a torchvision classification network (ResNet, ConvNeXt), with this project's decoder.

The encoder yields features at strides 2, 4, 8, 16, 32 (ConvNeXt: 4 .. 32); the shared
``UNetDecoder`` upsamples from the deepest with the configured block, meets each skip's size,
concatenates and convolves, and its last stages (those without a skip) reach the input's size.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from unet_upsampling.errors import ConfigError
from unet_upsampling.models.unet import UNetDecoder, compile_in_place
from unet_upsampling.models.upsample import UpsampleFactory

ENCODERS = ("resnet18", "resnet34", "resnet50", "convnext_tiny")


def encoder_stages(name: str, backbone: nn.Module) -> list[nn.Sequential]:
    """The backbone cut into stages whose outputs have strides 2, 4, 8, 16, 32 (ConvNeXt: 4, 8, 16, 32)."""
    if name.startswith("resnet"):
        b = backbone
        return [
            nn.Sequential(b.conv1, b.bn1, b.relu),
            nn.Sequential(b.maxpool, b.layer1),
            b.layer2,
            b.layer3,
            b.layer4,
        ]
    features = backbone.features  # convnext: stem (stride 4), then (downsample, blocks) x 3
    return [nn.Sequential(features[0], features[1])] + [nn.Sequential(features[i], features[i + 1]) for i in (2, 4, 6)]


def first_conv(stages: Sequence[nn.Module]) -> nn.Conv2d:
    return next(m for m in stages[0].modules() if isinstance(m, nn.Conv2d))


def adapt_input_channels(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """The RGB convolution for ``in_channels`` inputs: grey takes the sum of the RGB kernels (a grey image then
    gives what the RGB network gives for it repeated three times); other counts repeat the RGB kernels
    cyclically, scaled by 3 / in_channels so the response to a constant keeps its size."""
    if in_channels == conv.in_channels:
        return conv
    weight = conv.weight.detach()
    if in_channels == 1:
        adapted = weight.sum(dim=1, keepdim=True)
    else:
        adapted = weight[:, [i % weight.shape[1] for i in range(in_channels)]] * (weight.shape[1] / in_channels)
    new = nn.Conv2d(
        in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None
    )
    with torch.no_grad():
        new.weight.copy_(adapted)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def replace_first_conv(stages: nn.ModuleList, in_channels: int) -> None:
    for module in stages[0].modules():
        for name, child in module.named_children():
            if isinstance(child, nn.Conv2d):
                setattr(module, name, adapt_input_channels(child, in_channels))
                return


class EncoderUNet(nn.Module):
    """``encoder`` (torchvision: resnet18, resnet34, resnet50, convnext_tiny) + ``UNetDecoder`` + a
    ``head_kernel_size`` convolution to the classes.

    ``pretrained`` loads torchvision's ImageNet weights through its weights API, adapts the first
    convolution to ``in_channels`` and re-normalises the input inside ``forward``: the data pipeline
    normalised pixels with ``input_normalize`` (mean, std); the weights expect their own mean and
    std (grey: the means of the RGB ones), so the network applies the affine map between the two.
    Without ``pretrained`` the encoder starts from random weights and the input is used as given.

    Any input size works: the input is padded (reflect) to a multiple of 32 and the logits cropped back.
    """

    stride = 32

    def __init__(
        self,
        upsample: UpsampleFactory,
        encoder: str = "resnet34",
        in_channels: int = 3,
        num_classes: int = 2,
        pretrained: bool = False,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        input_normalize: Mapping[str, float | Sequence[float]] | None = None,
        channels_last: bool = False,
        compile: bool = False,
        head_kernel_size: int = 1,
        compile_mode: str | None = None,
    ):
        super().__init__()
        if encoder not in ENCODERS:
            raise ConfigError(f"model.encoder={encoder!r}: choose one of {', '.join(ENCODERS)}")
        if len(decoder_channels) != 5:
            raise ConfigError(f"model.decoder_channels needs 5 widths (strides 16 .. 1), got {list(decoder_channels)}")
        if head_kernel_size < 1 or head_kernel_size % 2 == 0:
            raise ConfigError(
                f"model.head_kernel_size={head_kernel_size}: use an odd size (1 or 3), which keeps the size"
            )
        self.encoder_name, self.in_channels, self.num_classes = encoder, in_channels, num_classes
        self.depth = 5
        backbone = torchvision.models.get_model(encoder, weights=None)
        scale, shift = torch.ones(in_channels), torch.zeros(in_channels)
        if pretrained:
            weights = torchvision.models.get_model_weights(encoder).DEFAULT
            backbone.load_state_dict(weights.get_state_dict(progress=True))
            scale, shift = renormalisation(weights, in_channels, input_normalize or {"mean": 0.5, "std": 0.25})
        self.register_buffer("input_scale", scale.view(1, -1, 1, 1))
        self.register_buffer("input_shift", shift.view(1, -1, 1, 1))
        self.encoder = nn.ModuleList(encoder_stages(encoder, backbone))
        replace_first_conv(self.encoder, in_channels)
        channels = self.feature_channels()
        self.decoder = UNetDecoder(upsample, channels[-1], channels[-2::-1], decoder_channels)
        self.head = nn.Conv2d(decoder_channels[-1], num_classes, head_kernel_size, padding=head_kernel_size // 2)
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=torch.channels_last)
        if compile:
            compile_in_place(self, compile_mode)

    @torch.no_grad()
    def feature_channels(self) -> list[int]:
        x = torch.zeros(1, self.in_channels, self.stride, self.stride)
        channels = []
        was_training = self.encoder.training
        self.encoder.eval()
        for stage in self.encoder:
            x = stage(x)
            channels.append(x.shape[1])
        self.encoder.train(was_training)
        return channels

    @property
    def min_size(self) -> int:
        return self.stride

    def receptive_field(self) -> int:
        """The receptive-field radius in pixels, measured once per architecture (``measured_reach``), rounded
        up to a multiple of 32 plus 32: a probe margin of whole strides, beyond every path."""
        reach = measured_reach(self.encoder_name, self.in_channels)
        return (reach // self.stride + 2) * self.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if min(h, w) < self.min_size:
            raise ValueError(f"input {(h, w)} is smaller than {self.min_size} px: use larger images/crops")
        pad_h, pad_w = -h % self.stride, -w % self.stride
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else x
        x = x * self.input_scale + self.input_shift
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        features = []
        for stage in self.encoder:
            x = stage(x)
            features.append(x)
        skips = features[-2::-1]
        trailing = [((h + pad_h) // 2**i, (w + pad_w) // 2**i) for i in range(4 - len(skips), -1, -1)]
        out = self.head(self.decoder(features[-1], skips, trailing))
        return out[..., :h, :w]


def renormalisation(weights, in_channels: int, data: Mapping) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with scale * x + shift = (x * std_d + mean_d - mean_w) / std_w per channel."""
    transforms = weights.transforms()
    mean_w, std_w = torch.tensor(transforms.mean), torch.tensor(transforms.std)
    if in_channels != 3:
        mean_w, std_w = mean_w.mean().expand(in_channels), std_w.mean().expand(in_channels)
    mean_d = torch.as_tensor(data["mean"], dtype=torch.float32).expand(in_channels)
    std_d = torch.as_tensor(data["std"], dtype=torch.float32).expand(in_channels)
    return std_d / std_w, (mean_d - mean_w) / std_w


@functools.cache
def measured_reach(encoder: str, in_channels: int) -> int:
    """How far (px) from an output pixel an input pixel can still change it, for this architecture.

    Measured on a linearised copy (activations replaced by identity, max-pooling by average pooling,
    so that every structural path carries gradient) with random weights, in eval mode: the gradient
    of the centre output with respect to the input is non-zero exactly within the reach. The canvas
    doubles until the reach stays inside it.
    """
    from unet_upsampling.models.upsample import NearestConv

    net = EncoderUNet(functools.partial(NearestConv), encoder, in_channels).eval()
    linear = copy.deepcopy(net)
    for module in linear.modules():
        for name, child in module.named_children():
            if isinstance(child, nn.ReLU | nn.GELU | nn.SiLU):
                setattr(module, name, nn.Identity())
            elif isinstance(child, nn.MaxPool2d):
                setattr(module, name, nn.AvgPool2d(child.kernel_size, child.stride, child.padding))
    canvas = 768  # beyond a ResNet-18's reach in one pass; doubled while too small
    with torch.enable_grad():  # the probe asks from inside no_grad
        return _reach(linear, in_channels, canvas)


def _reach(linear: nn.Module, in_channels: int, canvas: int) -> int:
    while True:
        x = torch.zeros(1, in_channels, canvas, canvas, requires_grad=True)
        linear(x)[0, :, canvas // 2, canvas // 2].sum().backward()
        rows, cols = torch.nonzero(x.grad[0].abs().sum(0) > 0, as_tuple=True)
        reach = int(max((rows - canvas // 2).abs().max(), (cols - canvas // 2).abs().max()))
        if reach < canvas // 2 - 1:
            return reach
        canvas *= 2
