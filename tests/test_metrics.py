"""Artifact and boundary measures on analytic cases."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from unet_upsampling.callbacks import ArtifactProbe
from unet_upsampling.metrics import (
    BoundaryF1,
    constant_in_constant_out,
    flat_field_response,
    kernel_imbalance,
    nyquist_flips,
    periodic_energy_fraction,
    phase_gain_imbalance,
    radial_power_spectrum,
    remove_nyquist,
    shift_disagreement,
)
from unet_upsampling.metrics.boundary import class_boundaries
from unet_upsampling.models.upsample import TransposedConv, bilinear_kernel
from unet_upsampling.task import SegmentationTask

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
    i, j = grid(40, 40)
    # Spikes of height 4 on one phase of 16: periodic variance 16 * 15/256 = 0.94 against the noise's 1, of
    # which 15/1600 falls on the periodic frequencies: PEF about 0.49 whatever the noise draws.
    y = torch.randn(40, 40) + 4 * ((i % 4 == 0) & (j % 4 == 1)).float()
    for shift in (4, 8, 12):
        rolled = torch.roll(y, shifts=(shift, -shift), dims=(0, 1))
        assert periodic_energy_fraction(rolled, 4) == pytest.approx(float(periodic_energy_fraction(y, 4)), rel=1e-5)
    assert 0.4 < periodic_energy_fraction(y, 4) < 0.6


def test_pef_rejects_maps_smaller_than_the_period():
    with pytest.raises(ValueError, match="smaller than the period 8"):
        periodic_energy_fraction(torch.randn(5, 20), 8)


def test_bilinear_kernel_has_no_phase_imbalance_and_random_k3_has():
    bilinear = bilinear_kernel(2).expand(4, 1, 4, 4)
    assert all(v == pytest.approx(0, abs=1e-7) for v in phase_gain_imbalance(bilinear, 2).values())
    torch.manual_seed(0)
    random_k3 = phase_gain_imbalance(torch.randn(64, 64, 3, 3), 2)
    # i.i.d. unit taps: per axis the phases sum 6 and 3 taps, E Var_p = E mean_p^2 = 9/4 -> 1; in 2-D they sum
    # 4, 2, 2, 1 taps, E Var_p = 9/4 - 9/16 and E mean_p^2 = 9/16 -> sqrt(3).
    assert random_k3["rows"] == pytest.approx(1, rel=0.1) and random_k3["cols"] == pytest.approx(1, rel=0.1)
    assert random_k3["2d"] == pytest.approx(3**0.5, rel=0.1)


def test_phase_gains_of_a_hand_made_kernel():
    # Taps (1, 2, 3) down the rows, 3 equal columns, stride 2: per axis the phases get (4, 2) x 3 columns, std 3,
    # mean 9 -> 1/3; in 2-D (4, 2) x (2, 1) = 8, 4, 4, 2: std sqrt(19) / 2, mean 9 / 2 -> sqrt(19) / 9.
    w = torch.tensor([1.0, 2.0, 3.0])[:, None] * torch.ones(1, 3)
    imbalance = phase_gain_imbalance(w[None, None], 2)
    assert imbalance["rows"] == pytest.approx(1 / 3) and imbalance["cols"] == pytest.approx(1 / 3)
    assert imbalance["2d"] == pytest.approx(19**0.5 / 9)


def test_imbalance_pools_the_channel_pairs():
    # Row phase gains (4, 2) (Var 1, mean^2 9) and (1, 1) (Var 0, mean^2 1): sqrt(1 / 2) / sqrt(10 / 2) = 1 / sqrt(10),
    # where the mean of the per-pair ratios would be (1/3 + 0) / 2.
    uneven, even = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5, 1.0, 0.5])
    w = torch.stack([uneven, even])[None, :, :, None]  # (in 1, out 2, k 3, 1)
    assert phase_gain_imbalance(w, 2)["rows"] == pytest.approx(1 / 10**0.5)


def test_a_pair_with_near_zero_mean_gain_does_not_blow_the_imbalance_up():
    torch.manual_seed(0)
    random_k3 = torch.randn(1, 64, 3, 3, dtype=torch.float64)
    eps = 1e-9
    odd = torch.zeros(1, 1, 3, 3, dtype=torch.float64)
    odd[0, 0, :2, :2] = torch.tensor([[1 + eps, -1 + eps], [1 + eps, -1 + eps]], dtype=torch.float64)  # a tap per phase
    gains = torch.tensor([1 + eps, -1 + eps, 1 + eps, -1 + eps], dtype=torch.float64)
    assert gains.std(unbiased=False) / gains.mean().abs() / 65 > 1e6  # its share of the old per-pair average
    before = phase_gain_imbalance(random_k3, 2)["2d"]
    after = phase_gain_imbalance(torch.cat([random_k3, odd], dim=1), 2)["2d"]
    assert before == pytest.approx(3**0.5, rel=0.25) and 0.9 < after / before < 1.1


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
    bound = net.receptive_field()
    size = 2 * bound + 33
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
        responses[mode] = flat_field_response(net, 1, net.receptive_field(), value=1.0)
    assert responses["nearest_conv"].shape == (2, 64, 64)
    for mode in ("nearest_conv", "bilinear_conv", "deconv_bilinear"):
        assert periodic_energy_fraction(responses[mode], 2).max() == 0
    assert periodic_energy_fraction(responses["deconv_k3"], 2).min() > 0.5


@pytest.mark.parametrize("mode", ["deconv_k3", "pixelshuffle"])
def test_flat_field_interior_does_not_change_when_the_margin_grows(mode):
    """The probe's margin exceeds the receptive field: a wider one (by whole periods) sees the same interior."""
    torch.manual_seed(0)
    net = instantiate(compose_config("train", [f"upsample={mode}", "model.depth=2", "model.base_channels=8"]).model)
    margin = net.receptive_field()
    response = flat_field_response(net, 1, margin, value=1.0)
    assert response.std() > 1e-4  # a pattern to compare, not a constant
    for wider in (margin + 4, margin + 32):
        torch.testing.assert_close(flat_field_response(net, 1, wider, value=1.0), response, atol=1e-6, rtol=0)


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


IGNORE = -100


def square_target() -> torch.Tensor:
    target = torch.zeros(1, 32, 32, dtype=torch.long)
    target[:, 8:24, 8:24] = 1
    return target


def band(t):
    return torch.zeros_like(t, dtype=torch.bool).index_fill_(1, torch.arange(14, 18), True)


def ring(t):
    inner = torch.zeros_like(t, dtype=torch.bool)
    inner[:, 3:-3, 3:-3] = True
    return ~inner


def scattered(t):
    return torch.rand(t.shape, generator=torch.Generator().manual_seed(0)) < 0.1


def all_but_the_square(t):
    return t == 0


@pytest.mark.parametrize("ignored", [band, ring, scattered, all_but_the_square])
def test_boundary_f1_of_a_perfect_prediction_is_one_whatever_is_ignored(ignored):
    square = square_target()
    mask = ignored(square)
    target = square.masked_fill(mask, IGNORE)
    noise = torch.randint(0, 2, square.shape, generator=torch.Generator().manual_seed(1))
    preds = torch.where(mask, noise, square)  # right on every valid pixel, anything where the target is ignored
    metric = BoundaryF1(tolerance=0, ignore_index=IGNORE)
    metric.update(preds, target)
    assert metric.compute() == 1.0


def test_ignored_pixels_are_never_boundary_pixels_and_make_none():
    labels = torch.ones(1, 16, 16, dtype=torch.long)
    labels[:, :, 8:] = 2
    valid = torch.ones_like(labels, dtype=torch.bool)
    valid[:, 4:6, :] = False  # a band across both classes
    edges = class_boundaries(labels, valid)
    assert not edges[:, 4:6].any()  # ignored
    assert edges[:, :, 7:9].all(dim=-1).sum() == 14  # the 1|2 edge on every valid row, none beside the band
    assert edges.sum() == 2 * 14
    valid[:, :, 8] = False  # a column of ignored pixels between the classes: no valid neighbour across
    assert not class_boundaries(labels, valid).any()


def test_boundary_f1_without_edges_is_one_when_both_agree_and_zero_otherwise():
    square = square_target()
    only_the_square = square.masked_fill(square == 0, IGNORE)
    metric = BoundaryF1(ignore_index=IGNORE)
    metric.update(torch.zeros_like(square), only_the_square)  # one class left: no edge on either side
    assert metric.total_pred == metric.total_true == 0 and metric.compute() == 1.0
    metric = BoundaryF1()
    metric.update(square, torch.zeros_like(square))  # edges predicted where the target has none
    assert metric.compute() == 0


def test_boundary_f1_of_a_wrong_prediction_stays_below_one_with_ignored_pixels():
    square = square_target()
    target = square.masked_fill(band(square) | scattered(square), IGNORE)
    metric = BoundaryF1(tolerance=0, ignore_index=IGNORE)
    metric.update(torch.roll(square, 4, dims=-1), target)
    assert 0 < metric.compute() < 0.7


# What a user sees: label flips from the Nyquist band, probabilities, shifts, flat fields at several grey levels.


def smooth_logits(size: int = 64) -> torch.Tensor:
    """Two-class logits (1, 2, size, size) from waves of 2 and 3 cycles: no period-2 component, no exact tie."""
    i, j = grid(size, size)
    f = torch.cos(2 * math.pi * 3 * i / size) + 0.7 * torch.sin(2 * math.pi * 2 * j / size) + 0.05
    return torch.stack([f, -f])[None].double()


def test_removing_the_nyquist_band_removes_a_checkerboard_and_nothing_else():
    smooth = smooth_logits()
    i, j = grid(64, 64)
    checkerboard = (-1.0) ** (i + j) + 0.5 * (-1.0) ** i * torch.cos(2 * math.pi * 5 * j / 64)  # both on the band
    columns = 0.5 * (-1.0) ** j * torch.cos(2 * math.pi * 3 * i / 64)  # sign alternating column to column: k_x = W/2
    torch.testing.assert_close(remove_nyquist(smooth), smooth)
    torch.testing.assert_close(remove_nyquist(smooth + checkerboard), smooth)
    torch.testing.assert_close(remove_nyquist(smooth + columns), smooth)
    with pytest.raises(ValueError, match="odd side"):
        remove_nyquist(torch.randn(5, 8))


def test_nyquist_flips_are_zero_for_smooth_logits_and_count_a_checkerboard_near_the_class_boundary():
    smooth = smooth_logits()
    assert not nyquist_flips(smooth).any() and not nyquist_flips(100 * smooth).any()  # large logits, still none
    i, j = grid(64, 64)
    a = 0.2
    pattern = a * (-1.0) ** (i + j)
    f = smooth[0, 0]
    flips = nyquist_flips(smooth + torch.stack([pattern, -pattern])[None])
    # a label flips where the checkerboard beats the margin |f| with the opposite sign: about half of |f| < a
    expected = (f.abs() < a) & (torch.sign(pattern) != torch.sign(f))
    assert expected.sum() > 100 and torch.equal(flips[0], expected)


def test_nyquist_flips_crop_odd_sides():
    assert nyquist_flips(torch.randn(2, 3, 33, 47)).shape == (2, 32, 46)


def blurred_disk(size: int = 64, width: float = 3.0) -> torch.Tensor:
    i, j = grid(size, size)
    return torch.tanh((15 - ((i - 31.7) ** 2 + (j - 30.2) ** 2).sqrt()) / width)[None, None].float()


def pool_then(upsample):
    """A two-class 'network': 2x2 average pooling, ``upsample(y, size)`` back to the input's size, a bias of 0.3."""

    def predict(x):
        u = upsample(F.avg_pool2d(x, 2), x.shape[-2:]) + 0.3
        return torch.cat([u, -u], 1)

    return predict


@torch.no_grad()
def test_shift_disagreement_of_a_k3_deconvolution_and_none_for_bilinear_upsampling():
    """The k=3, s=2 kernel gives its output phases gains 4, 2, 2, 1: the class boundary (where gain * y = -0.3)
    moves with the phase, so a 1 px shift moves it against the content; a 2 px shift keeps the phases."""
    deconv = TransposedConv(1, 1, kernel_size=3, padding=1)
    deconv.conv.weight.fill_(1 / 2.25)
    deconv.conv.bias.zero_()
    bilinear = pool_then(lambda y, size: F.interpolate(y, size=size, mode="bilinear", align_corners=False))
    image = blurred_disk()
    for shift in (1, 3):
        assert shift_disagreement(pool_then(deconv), image, shift, margin=4).sum() > 50
        assert shift_disagreement(bilinear, image, shift, margin=4).sum() == 0
    assert shift_disagreement(pool_then(deconv), image, 2, margin=4).sum() == 0
    assert shift_disagreement(bilinear, image, 1, margin=4).shape == (1, 63 - 8, 63 - 8)
    with pytest.raises(ValueError, match="leaves nothing"):
        shift_disagreement(bilinear, image, 1, margin=32)


def test_a_translation_equivariant_network_has_no_shift_disagreement():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 3, 5, padding=2)  # stride 1: equivariant away from the borders
    image = torch.randn(2, 1, 40, 40)
    with torch.no_grad():
        assert not shift_disagreement(conv, image, 1, margin=2).any()
        assert shift_disagreement(conv, image, 1).any()  # the borders see padding: the margin matters


def test_flat_field_at_several_grey_levels_and_per_channel_values():
    torch.manual_seed(0)
    responses = {}
    for mode in ("nearest_conv", "deconv_k3"):
        net = instantiate(compose_config("train", [f"upsample={mode}", "model.depth=2", "model.base_channels=8"]).model)
        responses[mode] = [flat_field_response(net, 1, net.receptive_field(), v) for v in (-1.0, 0.0, 1.0)]
    assert all(r.std(dim=(-2, -1)).max() <= 1e-6 * r.abs().max() for r in responses["nearest_conv"])
    stds = [float(r.std(dim=(-2, -1)).mean()) for r in responses["deconv_k3"]]
    assert min(stds) > 1e-5 and len({round(s, 7) for s in stds}) == 3  # the pattern depends on the grey level
    rgb = instantiate(
        compose_config(
            "train", ["upsample=deconv_k3", "model.depth=2", "model.base_channels=4", "data.in_channels=3"]
        ).model
    )
    per_channel = flat_field_response(rgb, 3, rgb.receptive_field(), [0.5, 0.5, 0.5])
    torch.testing.assert_close(per_channel, flat_field_response(rgb, 3, rgb.receptive_field(), 0.5))
    assert not torch.equal(per_channel, flat_field_response(rgb, 3, rgb.receptive_field(), [0.5, -1.0, 0.5]))


def test_the_probe_turns_grey_levels_into_normalised_inputs():
    probe = ArtifactProbe("unused", grey_levels=[0.25, 0.5, 0.75], normalize={"mean": 0.5, "std": 0.25})
    assert probe.grey_inputs() == {25: -1.0, 50: 0.0, 75: 1.0}
    rgb = ArtifactProbe("unused", grey_levels=[0.5], normalize={"mean": [0.5, 0.4, 0.5], "std": [0.25, 0.2, 0.5]})
    assert rgb.grey_inputs()[50] == pytest.approx([0.0, 0.5, 0.0])
    data = SimpleNamespace(normalize={"mean": 0.2, "std": 0.1})  # without its own: the data's normalisation
    assert ArtifactProbe("unused", grey_levels=[0.5]).grey_inputs(data) == {50: pytest.approx(3.0)}


class FixedLogits(torch.nn.Module):
    """A 'network' that answers every image with the same logits."""

    depth = 1

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1, -1, -1)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_validation_logs_flips_and_the_periodic_energy_of_the_probabilities():
    i, j = grid(64, 64)
    pattern = 0.2 * (-1.0) ** (i + j)
    logits = (smooth_logits() + torch.stack([pattern, -pattern])[None]).float()
    task = SegmentationTask(FixedLogits(logits), num_classes=2)
    task._evaluate((torch.zeros(2, 1, 64, 64), torch.zeros(2, 64, 64, dtype=torch.long)), "val")
    metrics = task.metrics["val"]
    assert metrics["nyquist_flips_pm"].compute() == pytest.approx(1000 * float(nyquist_flips(logits).double().mean()))
    assert metrics["nyquist_flips_pm"].compute() > 20
    prob_pef = float(periodic_energy_fraction(logits.softmax(1), 2).mean())
    assert metrics["prob_pef2"].compute() == pytest.approx(prob_pef) and 0 < prob_pef < 1
    smooth = SegmentationTask(FixedLogits(smooth_logits().float()), num_classes=2)
    smooth._evaluate((torch.zeros(1, 1, 64, 64), torch.zeros(1, 64, 64, dtype=torch.long)), "val")
    assert smooth.metrics["val"]["nyquist_flips_pm"].compute() == 0
    assert smooth.metrics["val"]["prob_pef2"].compute() < 1e-3


# Which modes map a constant to a constant when freshly built (the theory's expectation at initialisation).
FLAT_AT_INIT = {
    "bilinear_additive": True,
    "bilinear_conv": True,
    "deconv": False,
    "deconv_bilinear": True,
    "deconv_bilinear_trainable": True,
    "deconv_k3": False,
    "deconv_k4": False,
    "deconv_matched": False,
    "nearest_conv": True,
    "nearest_resize": True,
    "pixelshuffle": True,
    "pixelshuffle_blur": True,
}


@pytest.mark.parametrize("mode", UPSAMPLE_MODES)
def test_constant_in_constant_out_matches_the_theory_for_every_mode(mode):
    assert mode in FLAT_AT_INIT, f"{mode}: state whether its block maps a constant to a constant at init"
    factory = instantiate(compose_config("train", [f"upsample={mode}"]).upsample)
    state = torch.random.get_rng_state()
    assert constant_in_constant_out(factory) is FLAT_AT_INIT[mode]
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random stream is left alone


def test_constant_in_constant_out_ignores_the_borders_and_sees_a_small_pattern():
    class Padded(torch.nn.Module):
        """Nearest upsampling whose zero padding darkens the border: the interior is constant."""

        def forward(self, x, size):
            return F.pad(F.interpolate(x, size=size)[..., 1:-1, 1:-1], (1, 1, 1, 1))

    class Ripple(Padded):
        def forward(self, x, size):
            y = super().forward(x, size)
            return y + 1e-3 * (torch.arange(size[-1]) % 2)

    assert constant_in_constant_out(lambda i, o: Padded()) is True
    assert constant_in_constant_out(lambda i, o: Ripple()) is False
