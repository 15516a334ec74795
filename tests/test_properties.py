"""Property tests: any size, depth, width and mode gives a finite map of the input's size."""

from __future__ import annotations

import functools

import torch
from hydra.utils import instantiate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import UPSAMPLE_MODES, compose_config


@functools.cache
def upsample_factory(mode: str):
    return instantiate(compose_config("train", [f"upsample={mode}"]).upsample)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    mode=st.sampled_from(UPSAMPLE_MODES),
    depth=st.integers(1, 4),
    width=st.integers(1, 6),
    classes=st.integers(2, 5),
    data=st.data(),
)
def test_unet_output_shape_and_finiteness(mode, depth, width, classes, data):
    from unet_upsampling.models import UNet

    h = data.draw(st.integers(2**depth, 2**depth + 70), label="height")
    w = data.draw(st.integers(2**depth, 2**depth + 70), label="width")
    torch.manual_seed(0)
    net = UNet(upsample_factory(mode), in_channels=1, num_classes=classes, depth=depth, base_channels=width).eval()
    with torch.no_grad():
        out = net(torch.randn(1, 1, h, w))
    assert out.shape == (1, classes, h, w)
    assert torch.isfinite(out).all()
