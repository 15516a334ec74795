"""A UNet whose encoder is a timm network (ResNet, ConvNeXt, EfficientNet, RegNet, ...), with this project's decoder.

The encoder (``timm.create_model(name, features_only=True)``) yields features at strides that double up
to 32: 2, 4, .. 32 for a ResNet, 4 .. 32 for a ConvNeXt; the shared ``UNetDecoder`` upsamples from the deepest with
the configured block, meets each skip's size, concatenates and convolves, and its last stages (those below the
first feature's stride) reach the input's size.
"""

from __future__ import annotations

import copy
import functools
import itertools
import math
from collections.abc import Mapping, Sequence

import timm
import torch
import torch.nn.functional as F
from timm.data import resolve_model_data_config
from torch import nn

from unet_upsampling.errors import ConfigError
from unet_upsampling.models.execution import in_layout, set_execution
from unet_upsampling.models.unet import UNetDecoder
from unet_upsampling.models.upsample import UpsampleFactory


def check_encoder(name: str, reductions: Sequence[int], decoder_channels: Sequence[int]) -> None:
    """The decoder doubles the size at each stage: the features' strides must double up to 2^len(decoder_channels)."""
    doubling = all(b == 2 * a for a, b in itertools.pairwise(reductions)) and reductions[0] > 1
    if not doubling or reductions[-1] != 2 ** len(decoder_channels):
        raise ConfigError(
            f"model.encoder={name!r} gives features at strides {list(reductions)}, and model.decoder_channels has "
            f"{len(decoder_channels)} widths: the decoder doubles the size at each stage, so the strides must double "
            f"(2, 4, .. or 4, 8, ..) up to 2^{len(decoder_channels)}. Use a CNN encoder (resnet18, convnext_atto, "
            f"efficientnet_b0, regnetx_002, ...) or give model.decoder_channels one width per doubling"
        )


class EncoderUNet(nn.Module):
    """``encoder`` (any timm model that has ``features_only``: resnet18, resnet34, resnet50, convnext_tiny,
    efficientnet_b0, regnetx_002, ...) + ``UNetDecoder`` + a ``head_kernel_size`` convolution to the classes.

    The decoder is sized from the encoder's ``feature_info`` (channels and strides); it has one stage per doubling
    up to the deepest stride (``decoder_channels``: 5 widths for stride 32). ``pretrained`` loads timm's default
    ImageNet weights (through Hugging Face Hub: a download), with the first convolution adapted to ``in_channels``
    by timm (grey: the sum of the RGB kernels), and re-normalises the input inside ``forward``: the data pipeline
    normalised pixels with ``input_normalize`` (mean, std); the weights expect their own mean and std (grey: the
    means of the RGB ones), so the network applies the affine map between the two. Without ``pretrained`` the
    encoder starts from random weights and the input is used as given.

    Any input size works: the input is padded (reflect) to a multiple of the deepest stride and the logits cropped.
    """

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
        if not timm.is_model(encoder):
            raise ConfigError(
                f"model.encoder={encoder!r} is not a timm model: e.g. resnet18, resnet34, resnet50, convnext_tiny, "
                f"efficientnet_b0, regnetx_002 (python -c \"import timm; print(timm.list_models('convnext*'))\")"
            )
        if head_kernel_size < 1 or head_kernel_size % 2 == 0:
            raise ConfigError(
                f"model.head_kernel_size={head_kernel_size}: use an odd size (1 or 3), which keeps the size"
            )
        self.encoder_name, self.in_channels, self.num_classes = encoder, in_channels, num_classes
        self.encoder = timm.create_model(encoder, features_only=True, in_chans=in_channels, pretrained=pretrained)
        channels, reductions = self.encoder.feature_info.channels(), self.encoder.feature_info.reduction()
        check_encoder(encoder, reductions, decoder_channels)
        self.stride, self.depth, self.first_stride = reductions[-1], len(decoder_channels), reductions[0]
        scale, shift = torch.ones(in_channels), torch.zeros(in_channels)
        if pretrained:
            expected = resolve_model_data_config(self.encoder)
            scale, shift = renormalisation(expected, in_channels, input_normalize or {"mean": 0.5, "std": 0.25})
        self.register_buffer("input_scale", scale.view(1, -1, 1, 1))
        self.register_buffer("input_shift", shift.view(1, -1, 1, 1))
        self.decoder = UNetDecoder(upsample, channels[-1], channels[-2::-1], decoder_channels)
        self.head = nn.Conv2d(decoder_channels[-1], num_classes, head_kernel_size, padding=head_kernel_size // 2)
        if encoder in ("resnet18", "resnet34", "resnet50"):
            self.register_load_state_dict_pre_hook(torchvision_resnet_keys)
        set_execution(self, channels_last, compile, compile_mode)

    @property
    def min_size(self) -> int:
        return self.stride

    def receptive_field(self) -> int:
        """The receptive-field radius in pixels, measured once per architecture (``measured_reach``), rounded
        up to a multiple of the stride plus one stride: a probe margin of whole strides, beyond every path."""
        reach = measured_reach(self.encoder_name, self.in_channels)
        return (reach // self.stride + 2) * self.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if min(h, w) < self.min_size:
            raise ValueError(f"input {(h, w)} is smaller than {self.min_size} px: use larger images/crops")
        pad_h, pad_w = -h % self.stride, -w % self.stride
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect") if pad_h or pad_w else x
        features = self.encoder(in_layout(self, x * self.input_scale + self.input_shift))
        # the stages below the first feature's stride have no skip: they meet the sizes of strides first/2 .. 1
        below = int(math.log2(self.first_stride))
        trailing = [((h + pad_h) // 2**i, (w + pad_w) // 2**i) for i in range(below - 1, -1, -1)]
        out = self.head(self.decoder(features[-1], features[-2::-1], trailing))
        return out[..., :h, :w]


# Checkpoints written before timm cut torchvision's ResNet into five stages (conv1 + bn1 + relu, maxpool + layer1,
# layer2, layer3, layer4); timm's ResNet has the same modules under torchvision's names.
TORCHVISION_RESNET = {
    "encoder.0.0.": "encoder.conv1.",
    "encoder.0.1.": "encoder.bn1.",
    "encoder.1.1.": "encoder.layer1.",
    "encoder.2.": "encoder.layer2.",
    "encoder.3.": "encoder.layer3.",
    "encoder.4.": "encoder.layer4.",
}


def torchvision_resnet_keys(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    """A state_dict pre-hook: an encoder UNet checkpoint from before timm (resnet18/34/50) loads, its keys renamed."""
    for key in [k for k in state_dict if k.startswith(prefix + "encoder.")]:
        rest = key.removeprefix(prefix)
        old = next((old for old in TORCHVISION_RESNET if rest.startswith(old)), None)
        if old is not None:
            state_dict[prefix + TORCHVISION_RESNET[old] + rest.removeprefix(old)] = state_dict.pop(key)


def renormalisation(expected: Mapping, in_channels: int, data: Mapping) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) with scale * x + shift = (x * std_d + mean_d - mean_w) / std_w per channel; ``expected`` holds
    the weights' mean and std (timm's data config)."""
    mean_w, std_w = torch.tensor(expected["mean"]), torch.tensor(expected["std"])
    if in_channels != len(mean_w):
        mean_w, std_w = mean_w.mean().expand(in_channels), std_w.mean().expand(in_channels)
    mean_d = torch.as_tensor(data["mean"], dtype=torch.float32).expand(in_channels)
    std_d = torch.as_tensor(data["std"], dtype=torch.float32).expand(in_channels)
    return std_d / std_w, (mean_d - mean_w) / std_w


NORMS = (nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)  # timm's BatchNormAct2d and LayerNorm2d among them


@functools.cache
def measured_reach(encoder: str, in_channels: int) -> int:
    """How far (px) from an output pixel an input pixel can still change it, for this architecture.

    Measured on a linearised copy (activations replaced by identity, max-pooling by average pooling,
    normalisation scales set to one, so that every structural path carries gradient) with random weights,
    in eval mode: the gradient of the centre output with respect to the input is non-zero exactly within
    the reach. The canvas doubles until the reach stays inside it, up to ``MAX_CANVAS``: beyond, the encoder
    has global context (attention) and no reach to measure. Squeeze-excitation gates (EfficientNet, RegNetY)
    multiply by a global mean: on the zero canvas they carry no gradient, so their reach is that of the
    convolutions, and a flat field's interior still depends weakly on its size through the gate.
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
            elif isinstance(child, NORMS) and child.weight is not None:
                nn.init.ones_(child.weight)  # timm zero-initialises the last norm of each residual branch
    canvas = 768  # beyond a ResNet-18's reach in one pass; doubled while too small
    with torch.enable_grad():  # the probe asks from inside no_grad
        reach = _reach(linear, in_channels, canvas)
    if reach is None:
        raise ConfigError(
            f"model.encoder={encoder!r} has global context (its reach exceeds {MAX_CANVAS // 2 - 1} px: attention), "
            f"so the artifact probe's flat field has no margin beyond the network's reach: leave the probe out "
            f"(~callbacks.artifact_probe) or use a convolutional encoder (resnet*, convnext*, regnetx_*)"
        )
    return reach


MAX_CANVAS = 1536


def _reach(linear: nn.Module, in_channels: int, canvas: int) -> int | None:
    """The reach on canvases doubling from ``canvas``; None when it fills ``MAX_CANVAS``."""
    while canvas <= MAX_CANVAS:
        x = torch.zeros(1, in_channels, canvas, canvas, requires_grad=True)
        linear(x)[0, :, canvas // 2, canvas // 2].sum().backward()
        rows, cols = torch.nonzero(x.grad[0].abs().sum(0) > 0, as_tuple=True)
        reach = int(max((rows - canvas // 2).abs().max(), (cols - canvas // 2).abs().max()))
        if reach < canvas // 2 - 1:
            return reach
        canvas *= 2
    return None
