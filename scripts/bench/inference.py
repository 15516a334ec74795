"""Inference on the predict.py path: normalise, forward one image, argmax, back to numpy (512x512 by default).

Four variants of the same weights, interleaved: contiguous and channels_last, each also with every
Conv2d -> BatchNorm2d pair folded into one convolution (``fuse_batchnorm``); every variant must give
the contiguous network's output before it is timed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch import nn

from bench.config import compose, resolved, task_of
from bench.timing import interleaved
from unet_upsampling.models.unet import DoubleConv


def fuse_batchnorm(net: nn.Module) -> nn.Module:
    """A copy of ``net`` for inference with every Conv2d -> BatchNorm2d pair of a DoubleConv folded into one conv.

    Covers the stem, the encoder and the decoder stages (``net.decoder.stages``), all DoubleConvs.
    Uses the BatchNorm running statistics, so the copy is in eval mode and computes what
    ``net.eval()`` computes (to float rounding); ``net`` itself is left as it is.
    """
    fused = copy.deepcopy(net).eval()
    for block in fused.modules():
        if isinstance(block, DoubleConv):
            for i in (0, 3):
                block[i] = nn.utils.fusion.fuse_conv_bn_eval(block[i], block[i + 1])
                block[i + 1] = nn.Identity()
    return fused


def variants(cfg, device: str) -> dict[str, nn.Module]:
    def net(channels_last: bool) -> nn.Module:
        L.seed_everything(0, verbose=False)
        return task_of(cfg, channels_last=channels_last).net.eval().to(device)

    nets = {"contiguous": net(False), "channels_last": net(True)}
    nets["fused_bn"] = fuse_batchnorm(nets["contiguous"])
    nets["channels_last_fused_bn"] = fuse_batchnorm(nets["channels_last"])
    return nets


def check_same_output(nets: dict[str, nn.Module], image: torch.Tensor) -> None:
    with torch.no_grad():
        reference = nets["contiguous"](image)
        for name, net in nets.items():
            if not torch.allclose(net(image), reference, atol=1e-3, rtol=1e-3):
                raise AssertionError(f"inference variant {name} changes the output")


def predict_fn(net: nn.Module, transform, images: list, device: str) -> Callable[[], None]:
    """One predict.py step per call, cycling through ``images`` (the UNet converts its input to its layout)."""
    counter = [0]

    @torch.no_grad()
    def run():
        image = transform(image=images[counter[0] % len(images)])["image"].float()[None].to(device)
        counter[0] += 1
        net(image).argmax(1)[0].cpu().numpy()

    return run


def bench_inference(args, base_overrides: list[str]) -> dict[str, Any]:
    from unet_upsampling.data.synthetic import render
    from unet_upsampling.trust import rebuild_eval_transform

    cfg = compose([*base_overrides, f"upsample={args.modes[0]}"])
    transform = rebuild_eval_transform({"data": resolved(cfg, "data")}, source="the benchmark's config")
    images = [render(2, i, args.infer_size, cfg.data.num_classes)[0] for i in range(2)]
    nets = variants(cfg, args.device)
    check_same_output(nets, transform(image=images[0])["image"].float()[None].to(args.device))
    candidates = {name: predict_fn(net, transform, images, args.device) for name, net in nets.items()}
    rates = {name: 1 / s for name, s in interleaved(candidates, args.infer_rounds, 1, args.device).items()}
    return {
        "image_size": args.infer_size,
        "mode": args.modes[0],
        "images_per_s": rates,
        "ratio_fused_bn_vs_contiguous": rates["fused_bn"] / rates["contiguous"],
        "ratio_channels_last_vs_contiguous": rates["channels_last"] / rates["contiguous"],
        "ratio_channels_last_fused_bn_vs_channels_last": rates["channels_last_fused_bn"] / rates["channels_last"],
    }
