"""Every upsampling mode: shapes on odd sizes, gradients, frozen bilinear weights, the bilinear identity."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from unet_upsampling.builders import build_task
from unet_upsampling.errors import ConfigError
from unet_upsampling.models import UNet
from unet_upsampling.models.upsample import (
    BilinearAdditive,
    BilinearConv,
    BilinearTransposedConv,
    MatchedTransposedConv,
    NearestConv,
    PixelShuffle,
    TransposedConv,
    bilinear_kernel,
    transposed_conv_size,
)

from conftest import UPSAMPLE_MODES, compose_config


def tiny_unet(mode: str, *overrides: str, depth: int = 3) -> UNet:
    cfg = compose_config("train", [f"upsample={mode}", f"model.depth={depth}", "model.base_channels=4", *overrides])
    return instantiate(cfg.model)


def test_every_mode_is_listed():
    assert {
        "deconv",
        "deconv_k3",
        "deconv_k4",
        "deconv_bilinear",
        "nearest_conv",
        "bilinear_conv",
        "pixelshuffle",
        "pixelshuffle_blur",
        "nearest_resize",
        "deconv_matched",
        "bilinear_additive",
    } <= set(UPSAMPLE_MODES)


@pytest.mark.parametrize("mode", UPSAMPLE_MODES)
@pytest.mark.parametrize("size", [(97, 131), (64, 64), (33, 17), (565, 584)])
def test_output_has_input_size(mode, size):
    net = tiny_unet(mode, depth=4).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 1, *size))
    assert out.shape == (1, 2, *size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("mode", UPSAMPLE_MODES)
def test_gradients_reach_every_trainable_parameter(mode):
    net = tiny_unet(mode)
    net(torch.randn(2, 1, 45, 39)).square().mean().backward()
    for name, p in net.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("trainable", [False, True])
def test_bilinear_deconv_frozen_unless_trainable(trainable):
    cfg = compose_config(
        "train",
        [
            "upsample=deconv_bilinear",
            f"upsample.trainable={trainable}",
            "model.depth=2",
            "model.base_channels=4",
            "task.scheduler=null",
        ],
    )
    module = build_task(cfg)
    optimizer = module.configure_optimizers()
    kernels = [m.upsample.weight for m in module.net.modules() if isinstance(m, BilinearTransposedConv)]
    before = [k.detach().clone() for k in kernels]
    optimised = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert all((id(k) in optimised) == trainable for k in kernels)
    assert all(k.requires_grad == trainable for k in kernels)
    for _ in range(3):
        optimizer.zero_grad()
        module.net(torch.randn(2, 1, 32, 32)).square().mean().backward()
        optimizer.step()
    changed = [not torch.equal(b, k) for b, k in zip(before, kernels, strict=True)]
    assert all(changed) if trainable else not any(changed)


def test_bilinear_kernel_is_bilinear_interpolation_in_the_interior():
    block = BilinearTransposedConv(3, 5)
    x = torch.randn(2, 3, 11, 14)
    ours = block(x)
    reference = F.interpolate(block.conv(x), scale_factor=2, mode="bilinear", align_corners=False)
    assert ours.shape == reference.shape == (2, 5, 22, 28)
    torch.testing.assert_close(ours[..., 2:-2, 2:-2], reference[..., 2:-2, 2:-2], atol=1e-5, rtol=0)
    assert (ours - reference).abs().max() > 1e-3  # the borders differ (zero padding): the crop matters


def test_bilinear_deconv_with_1x1_conv_is_one_transposed_conv_with_a_bilinear_kernel():
    block = BilinearTransposedConv(3, 5, kernel_size=1)
    with torch.no_grad():
        block.conv.bias.zero_()
    c = block.conv.weight[:, :, 0, 0]  # (out, in)
    weight = c.T[:, :, None, None] * bilinear_kernel(2)  # w[i, o] = c[o, i] * bilinear
    x = torch.randn(2, 3, 9, 12)
    torch.testing.assert_close(block(x), F.conv_transpose2d(x, weight, stride=2, padding=1), atol=1e-5, rtol=0)


def test_bilinear_kernel_fcn_values():
    assert torch.allclose(bilinear_kernel(2)[0], torch.tensor([0.0625, 0.1875, 0.1875, 0.0625]))
    assert bilinear_kernel(3).shape == (5, 5)


@pytest.mark.parametrize("k,p", [(2, 0), (3, 1), (4, 1)])
@pytest.mark.parametrize("i,o", [(8, 16), (8, 17), (5, 11)])
def test_transposed_conv_meets_skip_size(k, p, i, o):
    out = TransposedConv(2, 3, kernel_size=k, padding=p)(torch.randn(1, 2, i, i), (o, o))
    assert out.shape[-2:] == (o, o)


def test_transposed_conv_settings_that_overshoot_the_skip_are_refused_with_the_formula():
    assert transposed_conv_size(8, 4, 2, 0) == 18  # o = 2i + 2: never 2i or 2i + 1
    with pytest.raises(ValueError, match=r"o = \(i-1\)s - 2p \+ k \+ output_padding = 2i \+ 2 .*padding to 1"):
        TransposedConv(2, 3, kernel_size=4, padding=0)


@pytest.mark.parametrize("s,k", [(2, 3), (2, 1), (2, 5), (3, 3)])
def test_nearest_conv_as_one_transposed_conv_equals_resize_then_conv(s, k):
    block = NearestConv(4, 5, scale_factor=s, kernel_size=k)
    x = torch.randn(2, 4, 7, 9, requires_grad=True)
    ours = block(x, (7 * s, 9 * s))
    reference = block.conv(F.interpolate(x, scale_factor=s, mode="nearest"))
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)
    grad = torch.randn_like(ours)
    torch.testing.assert_close(
        torch.autograd.grad(ours, [x, block.conv.weight], grad),
        torch.autograd.grad(reference, [x, block.conv.weight], grad),
        atol=1e-4,
        rtol=1e-5,
    )


def test_nearest_conv_resizes_to_an_odd_skip():
    block = NearestConv(4, 5)
    x = torch.randn(1, 4, 7, 9)
    torch.testing.assert_close(block(x, (15, 18)), block.conv(F.interpolate(x, size=(15, 18), mode="nearest")))


@pytest.mark.parametrize(("block", "mode"), [(NearestConv, "nearest"), (BilinearConv, "bilinear")])
def test_a_resize_without_conv_is_the_interpolation_alone_and_keeps_its_channels(block, mode):
    resize = block(4, 5, conv=False)
    x = torch.randn(1, 4, 7, 9)
    assert resize.out_channels == 4 and not list(resize.parameters())
    for size in [(14, 18), (15, 18)]:
        torch.testing.assert_close(resize(x, size), F.interpolate(x, size=size, mode=mode))


@pytest.mark.parametrize("mode", ["nearest_conv", "bilinear_conv"])
def test_a_unet_whose_blocks_only_resize_concatenates_the_whole_deep_features(mode):
    net = tiny_unet(mode, "upsample.conv=false").eval()
    widths = [16, 8, 4]  # base_channels 4, depth 3: the stages from the deepest up
    assert [stage[0].in_channels for stage in net.decoder.stages] == [2 * w + w for w in widths]
    with torch.no_grad():
        assert net(torch.randn(1, 1, 37, 53)).shape == (1, 2, 37, 53)


@pytest.mark.parametrize("block", [NearestConv, BilinearConv, BilinearTransposedConv, PixelShuffle])
def test_even_kernel_sizes_are_refused_for_size_keeping_convolutions(block):
    with pytest.raises(ValueError, match=r"upsample\.kernel_size=4: .* odd kernel size; use upsample\.kernel_size=5"):
        block(4, 5, kernel_size=4)


def test_pixelshuffle_icnr_starts_as_nearest_upsampling():
    block = PixelShuffle(4, 3)
    conv_out = F.conv2d(x := torch.randn(1, 4, 6, 6), block.conv.weight[::4], block.conv.bias[::4], padding=1)
    torch.testing.assert_close(block(x), F.interpolate(conv_out, scale_factor=2, mode="nearest"))


def test_pixelshuffle_blur_keeps_size():
    assert PixelShuffle(4, 3, blur=True)(torch.randn(1, 4, 6, 7), (13, 15)).shape[-2:] == (13, 15)


def test_unet_rejects_input_smaller_than_its_depth():
    net = UNet(functools.partial(TransposedConv), depth=4, base_channels=4)
    with pytest.raises(ValueError, match="2\\*\\*depth = 16"):
        net(torch.randn(1, 1, 12, 40))


def test_nearest_conv_runs_the_fused_transposed_convolution_at_16_36_of_the_multiply_adds():
    from torch.utils.flop_counter import FlopCounterMode

    block, x = NearestConv(4, 5), torch.randn(2, 4, 7, 9)
    with FlopCounterMode(display=False) as fused:
        block(x, (14, 18))
    with FlopCounterMode(display=False) as resized:
        block(x, (15, 18))  # an odd skip: resize, then the 3x3 conv
    assert "NearestConv.conv" not in fused.get_flop_counts()  # the conv module never ran: its weights were fused
    # FLOPs = 2 x multiply-adds; one multiply-add per input pixel, channel pair and tap of the 4x4 kernel
    conv_flops = fused.get_flop_counts()["Global"][torch.ops.aten.convolution]
    assert conv_flops == 2 * (2 * 4 * 5 * 7 * 9) * 16
    assert conv_flops / (2 * (2 * 4 * 5 * 14 * 18) * 9) == pytest.approx(16 / 36)  # resize + 3x3 conv at 14 x 18
    assert resized.get_flop_counts()["NearestConv.conv"][torch.ops.aten.convolution] == 2 * (2 * 4 * 5 * 15 * 18) * 9


@pytest.mark.parametrize("i", [5, 8])
def test_new_blocks_meet_any_skip_size(i):
    x = torch.randn(1, 8, i, i + 1)
    for block in (BilinearAdditive(8, 4), MatchedTransposedConv(8, 4), PixelShuffle(8, 4, blur=True)):
        for size in [(2 * i, 2 * i + 2), (2 * i + 1, 2 * i + 3)]:
            assert block(x, size).shape == (1, 4, *size), type(block).__name__


def test_bilinear_additive_sums_pairs_of_channels_after_a_bilinear_resize_by_hand():
    # One row [a, b] resized to 2 x 4 (align_corners=False): a, 3a/4 + b/4, a/4 + 3b/4, b on both rows.
    x = torch.tensor([[[[0.0, 4.0]], [[1.0, 1.0]], [[2.0, 6.0]], [[8.0, 0.0]]]])
    expected = torch.tensor([[1.0, 2.0, 4.0, 5.0], [10.0, 9.0, 7.0, 6.0]])[:, None].expand(2, 2, 4)
    block = BilinearAdditive(4, 2)
    torch.testing.assert_close(block(x, (2, 4)), expected[None])
    assert block.out_channels == 2 and not list(block.parameters())
    with pytest.raises(ConfigError, match="do not split into 3 groups"):
        BilinearAdditive(8, 3)


def test_deconv_matched_has_the_resize_modes_weights_and_computes_one_transposed_conv():
    for c in (4, 32):
        block, resize = MatchedTransposedConv(2 * c, c), NearestConv(2 * c, c)
        assert sum(p.numel() for p in block.parameters()) == sum(p.numel() for p in resize.parameters())
        assert block.project.weight.numel() + block.upsample.conv.weight.numel() == 9 * 2 * c * c
    # the pair is linear: one k=2, s=2 transposed conv with weight P^T D and the deconv's bias
    block, x = MatchedTransposedConv(6, 3), torch.randn(2, 6, 5, 7)
    weight = torch.einsum("mi,mokl->iokl", block.project.weight[:, :, 0, 0], block.upsample.conv.weight)
    expected = F.conv_transpose2d(x, weight, block.upsample.conv.bias, stride=2)
    torch.testing.assert_close(block(x, (10, 14)), expected, atol=1e-5, rtol=0)


def test_the_parameter_counts_of_the_confound_arms():
    nets = {m: tiny_unet(m) for m in UPSAMPLE_MODES}
    counts = {m: sum(p.numel() for p in net.parameters()) for m, net in nets.items()}
    assert counts["deconv_matched"] == counts["nearest_conv"] == counts["bilinear_conv"]
    blocks = {m: sum(p.numel() for p in net.decoder.upsample.parameters()) for m, net in nets.items()}
    assert blocks["bilinear_additive"] == blocks["nearest_resize"] == 0
    assert blocks["pixelshuffle_blur"] == blocks["pixelshuffle"]
    assert compose_config("train", ["upsample=pixelshuffle_blur"]).upsample.blur is True
