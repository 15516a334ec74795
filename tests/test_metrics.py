"""Artifact and boundary measures on analytic cases."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate

from unet_upsampling.metrics import (
    BoundaryF1,
    flat_field_response,
    kernel_imbalance,
    periodic_energy_fraction,
    phase_gain_imbalance,
    radial_power_spectrum,
    receptive_field_bound,
)
from unet_upsampling.models.upsample import bilinear_kernel

from conftest import UPSAMPLE_MODES, compose_config


def grid(h, w):
    return torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")


@pytest.mark.parametrize("size", [(32, 32), (33, 47)])
def test_pef_constant_is_zero_and_checkerboard_is_one(size):
    i, j = grid(*size)
    assert periodic_energy_fraction(torch.full(size, 3.5), 2) == 0
    assert periodic_energy_fraction((-1.0) ** (i + j), 2) == pytest.approx(1.0)
    assert periodic_energy_fraction(torch.randn(4, 3, *size), 2).shape == (4, 3)


def test_pef_of_a_known_mixture_matches_the_dft_share():
    i, j = grid(32, 32)
    checkerboard = (-1.0) ** (i + j)  # variance 1, all energy at (N/2, N/2)
    wave = 2 * torch.cos(2 * math.pi * 3 * j / 32)  # variance 2, at frequency 3: no multiple of N/2
    y = checkerboard + wave
    assert periodic_energy_fraction(y, 2) == pytest.approx(1 / 3, abs=1e-6)
    spectrum = torch.fft.fft2(y - y.mean()).abs().square()
    assert spectrum[::16, ::16].sum() / spectrum.sum() == pytest.approx(1 / 3, abs=1e-6)


def test_pef_matches_dft_share_on_random_maps():
    y = torch.randn(64, 48, dtype=torch.float64)
    for p in (2, 4, 8):
        spectrum = torch.fft.fft2(y - y.mean()).abs().square()
        share = spectrum[:: 64 // p, :: 48 // p].sum() / spectrum.sum()
        assert periodic_energy_fraction(y, p) == pytest.approx(float(share), rel=1e-5)


def test_pef_is_invariant_to_shifts_by_multiples_of_the_period():
    y = torch.randn(40, 40)
    i, j = grid(40, 40)
    y = y + 3 * ((i % 4 == 0) & (j % 4 == 1)).float()
    for shift in (4, 8, 12):
        rolled = torch.roll(y, shifts=(shift, -shift), dims=(0, 1))
        assert periodic_energy_fraction(rolled, 4) == pytest.approx(float(periodic_energy_fraction(y, 4)), rel=1e-5)
    assert periodic_energy_fraction(y, 4) > 0.3


def test_pef_rejects_maps_smaller_than_the_period():
    with pytest.raises(ValueError, match="smaller than the period 8"):
        periodic_energy_fraction(torch.randn(5, 20), 8)


def test_bilinear_kernel_has_no_phase_imbalance_and_random_k3_has():
    bilinear = bilinear_kernel(2).expand(4, 1, 4, 4)
    assert all(v == pytest.approx(0, abs=1e-7) for v in phase_gain_imbalance(bilinear, 2).values())
    torch.manual_seed(0)
    random_k3 = phase_gain_imbalance(torch.randn(8, 8, 3, 3), 2)
    assert all(v > 0.5 for v in random_k3.values())


def test_phase_gains_of_a_hand_made_kernel():
    # 1-D taps (1, 2, 3) with stride 2: phase 0 gets 1 + 3 = 4, phase 1 gets 2 -> std 1, mean 3.
    w = torch.tensor([1.0, 2.0, 3.0])[:, None] * torch.ones(1, 3)
    assert phase_gain_imbalance(w[None, None], 2)["rows"] == pytest.approx(1 / 3)
    assert phase_gain_imbalance(w[None, None], 2)["cols"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("mode", UPSAMPLE_MODES)
def test_receptive_field_stays_inside_the_bound(mode):
    depth = 3
    net = instantiate(
        compose_config("train", [f"upsample={mode}", f"model.depth={depth}", "model.base_channels=4"]).model
    ).eval()
    for block in net.modules():  # the receptive field is structural: ReLUs would only hide paths
        for name, child in block.named_children():
            if isinstance(child, torch.nn.ReLU):
                setattr(block, name, torch.nn.Identity())
    size, bound = 2 * receptive_field_bound(depth) + 33, receptive_field_bound(depth)
    x = torch.randn(1, 1, size, size, requires_grad=True)
    net(x)[0, :, size // 2, size // 2].sum().backward()
    rows, cols = torch.nonzero(x.grad[0, 0].abs() > 0, as_tuple=True)
    reach = max((rows - size // 2).abs().max(), (cols - size // 2).abs().max())
    assert 0 < reach <= bound


def test_flat_field_is_flat_for_resize_modes_and_not_for_random_deconv():
    torch.manual_seed(0)
    responses = {}
    for mode in ("nearest_conv", "bilinear_conv", "deconv_bilinear", "deconv_k3"):
        net = instantiate(compose_config("train", [f"upsample={mode}", "model.depth=2", "model.base_channels=8"]).model)
        responses[mode] = flat_field_response(net, 1, 2, value=1.0)
    assert responses["nearest_conv"].shape == (2, 64, 64)
    for mode in ("nearest_conv", "bilinear_conv", "deconv_bilinear"):
        assert periodic_energy_fraction(responses[mode], 2).max() == 0
    assert periodic_energy_fraction(responses["deconv_k3"], 2).min() > 0.5


def test_kernel_imbalance_only_counts_transposed_convolutions():
    nets = {
        m: instantiate(compose_config("train", [f"upsample={m}", "model.depth=2", "model.base_channels=4"]).model)
        for m in ("nearest_conv", "deconv_bilinear", "deconv_k3")
    }
    assert kernel_imbalance(nets["nearest_conv"]) is None
    assert kernel_imbalance(nets["deconv_bilinear"]) == pytest.approx(0, abs=1e-7)
    assert kernel_imbalance(nets["deconv_k3"]) > 0.5


def test_radial_spectrum_puts_a_checkerboard_at_nyquist():
    i, j = grid(64, 64)
    spectrum = radial_power_spectrum((-1.0) ** (i + j), bins=16)
    assert spectrum.shape == (16,)
    assert spectrum.argmax() == 15 and spectrum[:15].max() < spectrum[15] - 6  # all at the corner (N/2, N/2)
    low = radial_power_spectrum(torch.cos(2 * math.pi * 4 * i / 64).float(), bins=16)
    assert low.argmax() == 1  # 4 cycles per 64 px: |f| / (sqrt(2) f_nyquist) = 0.088, ring 1 of 16


def test_boundary_f1_perfect_shifted_and_tolerance():
    target = torch.zeros(1, 32, 32, dtype=torch.long)
    target[:, 8:24, 8:24] = 1
    metric = BoundaryF1(tolerance=2)
    metric.update(target.clone(), target)
    assert metric.compute() == pytest.approx(1.0)
    shifted = torch.roll(target, 1, dims=-1)
    metric = BoundaryF1(tolerance=2)
    metric.update(shifted, target)
    assert metric.compute() == pytest.approx(1.0)  # 1 px off, within tolerance
    metric = BoundaryF1(tolerance=0)
    metric.update(torch.roll(target, 4, dims=-1), target)
    assert 0 < metric.compute() < 0.7
    metric = BoundaryF1(tolerance=2)
    metric.update(torch.zeros_like(target), target)
    assert metric.compute() == 0
