"""The artifact measures on hand-made logits whose pattern is known: a smooth two-class margin map plus a periodic
pattern, placed five ways. The label measure (``phase_excess``) must count the labels the pattern flips; the logit
measure (local PEF) must see the pattern wherever it is, and neither may see one that is not there."""

from __future__ import annotations

import math

import pytest
import torch

from unet_upsampling.metrics import (
    coarser_phases,
    local_periodic_energy_fraction,
    periodic_energy_fraction,
    phase_counts,
    phase_excess,
)

SIZE = 128
AMPLITUDE = 0.3


def margin_map() -> torch.Tensor:
    """A smooth margin (class 1 where positive) with curved class boundaries and saturated regions (|m| up to 4)."""
    i, j = torch.meshgrid(
        torch.arange(SIZE, dtype=torch.float64), torch.arange(SIZE, dtype=torch.float64), indexing="ij"
    )
    return 4 * torch.sin(2 * math.pi * (i / 53 + 0.1)) * torch.cos(2 * math.pi * (j / 41 + 0.05)) + 0.3


def checkerboard(period: int = 2) -> torch.Tensor:
    """(-1)^(i+j) in blocks of period / 2 pixels: period 2 is the stride-2 checkerboard, period 4 its 2x2 blocks."""
    i, j = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    half = period // 2
    return (-1.0) ** ((i // half + j // half) % 2).double()


def case(name: str) -> torch.Tensor:
    """The pattern (the margin map's additive part) of each hand-made case."""
    m = margin_map()
    if name == "none":
        return torch.zeros_like(m)
    if name == "uniform":
        return AMPLITUDE * checkerboard()
    if name == "sign flips across the image":
        j = torch.arange(SIZE, dtype=torch.float64)
        return AMPLITUDE * checkerboard() * torch.where(j < SIZE // 2, 1.0, -1.0)
    if name == "edges only":
        return AMPLITUDE * checkerboard() * (m.abs() < 1)
    if name == "saturated regions only":
        return 5 * AMPLITUDE * checkerboard() * (m.abs() > 2)
    if name == "period 4":
        return AMPLITUDE * checkerboard(4)
    raise ValueError(name)


CASES = ("uniform", "sign flips across the image", "edges only", "saturated regions only", "period 4")


def logits(margin: torch.Tensor) -> torch.Tensor:
    return torch.stack([-margin / 2, margin / 2])[None]  # (1, 2, H, W): class 1 where the margin is positive


def flips_and_excess(name: str, period: int) -> tuple[float, float]:
    """The share of labels the pattern flips, and the phase excess that measures it at ``period``."""
    target = logits(margin_map()).argmax(1)
    preds = logits(margin_map() + case(name)).argmax(1)
    fp, pixels = phase_counts(preds, target, num_classes=2, period=4)
    if period != 4:
        fp, pixels = coarser_phases(fp, period), coarser_phases(pixels, period)
    return float((preds != target).double().mean()), float(phase_excess(fp, pixels))


@pytest.mark.parametrize("name", ["uniform", "edges only"])
def test_the_phase_excess_counts_every_label_a_stride_two_pattern_flips(name):
    flips, excess = flips_and_excess(name, period=2)
    assert flips > 0.01  # the case flips labels near the class boundaries
    assert excess == pytest.approx(flips, rel=1e-9)
    assert flips_and_excess(name, period=4)[1] == pytest.approx(flips, rel=1e-9)  # finer phases see it too


def test_the_phase_excess_sees_a_period_four_pattern_at_period_four_only():
    flips, at_four = flips_and_excess("period 4", period=4)
    assert flips > 0.01 and at_four == pytest.approx(flips, rel=1e-9)
    # each phase of period 2 holds both signs of the 2x2 blocks: no false class concentrates on one of them
    assert flips_and_excess("period 4", period=2)[1] < 0.2 * flips


def test_the_phase_excess_is_zero_where_the_pattern_flips_nothing():
    for name in ("none", "saturated regions only"):
        flips, excess = flips_and_excess(name, period=2)
        assert flips == 0 and excess == 0


def test_the_phase_excess_is_blind_to_a_pattern_whose_sign_changes_across_the_image():
    """Its documented limit: the false labels move from the even to the odd phases between the halves and the
    totals per phase even out (the local PEF and the shift disagreement are the measures for it)."""
    flips, excess = flips_and_excess("sign flips across the image", period=2)
    assert flips > 0.01 and excess < 0.35 * flips


def local_pef(name: str, period: int) -> float:
    """The local PEF of the logit difference (the margin) in tiles of 32 px, as the validation computes it."""
    return float(local_periodic_energy_fraction(margin_map() + case(name), period, window=32))


@pytest.mark.parametrize("name", CASES)
def test_the_local_pef_sees_the_pattern_wherever_it_is(name):
    period = 4 if name == "period 4" else 2
    baseline = local_pef("none", period)  # a smooth map's tiles hold a little energy at every period
    assert baseline < 1e-3
    assert local_pef(name, period) > 10 * baseline


def test_the_local_pef_sees_a_sign_flipping_checkerboard_that_the_global_pef_misses():
    pattern = case("sign flips across the image")
    assert float(periodic_energy_fraction(pattern, 2)) < 1e-12  # the halves cancel in the global phase means
    assert float(local_periodic_energy_fraction(pattern, 2, window=16)) == pytest.approx(1.0)
    uniform = case("uniform")
    assert float(periodic_energy_fraction(uniform, 2)) == pytest.approx(1.0)


def test_the_local_pef_of_a_period_four_pattern_is_zero_at_period_two():
    assert float(local_periodic_energy_fraction(case("period 4"), 2, window=16)) < 1e-12
    assert float(local_periodic_energy_fraction(case("period 4"), 4, window=16)) == pytest.approx(1.0)
    assert local_pef("period 4", 2) < 1.5 * local_pef("none", 2)


def test_the_local_pef_refuses_a_window_that_is_not_a_multiple_of_the_period():
    with pytest.raises(ValueError, match="multiple of the period"):
        local_periodic_energy_fraction(torch.zeros(32, 32), 4, window=6)


def test_phase_counts_leave_out_ignored_pixels_and_count_each_wrong_label_once():
    target = torch.tensor([[0, 1, -100, 1], [1, 1, 0, 0]])
    preds = torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0]])
    fp, pixels = phase_counts(preds, target, num_classes=2, period=2, ignore_index=-100)
    assert pixels.tolist() == [[1, 2], [2, 2]]  # (0, 2) is ignored
    assert int(fp.sum()) == 3  # (0, 0) is a false 1, (0, 3) and (1, 1) are false 0s
    assert fp[1, 0, 0] == 1 and fp[0, 0, 1] == 1 and fp[0, 1, 1] == 1
