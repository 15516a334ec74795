"""Checkerboard-artifact measures: pure torch, batched over leading dimensions."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def periodic_energy_fraction(y: torch.Tensor, period: int, rtol: float = 1e-5) -> torch.Tensor:
    """PEF_P of maps ``y[..., H, W]``: the share of the variance that repeats with period P.

    Crop to H' = P floor(H / P), W' likewise; take the P^2 polyphase components y[a::P, b::P] and
    their means m_ab. PEF_P = Var_ab(m_ab) / Var(y), which equals the share of the non-DC DFT
    energy at the frequencies (k N/P, l N/P). 1 for a pure period-P pattern such as (-1)^(i+j) at
    P = 2, unchanged by shifts of the map by multiples of P, and 0 for a constant map: a map whose
    standard deviation is below ``rtol`` times its largest magnitude counts as constant (float32
    rounding in a network's output is not a pattern).
    """
    h, w = (y.shape[-2] // period) * period, (y.shape[-1] // period) * period
    if h == 0 or w == 0:
        raise ValueError(f"map {tuple(y.shape[-2:])} is smaller than the period {period}")
    y = y[..., :h, :w].double()
    phases = y.unflatten(-2, (h // period, period)).unflatten(-1, (w // period, period)).mean(dim=(-4, -2))
    total = y.flatten(-2).var(dim=-1, unbiased=False)
    periodic = phases.flatten(-2).var(dim=-1, unbiased=False)
    constant = total.sqrt() <= rtol * y.flatten(-2).abs().amax(-1)
    return torch.where(constant, torch.zeros_like(total), periodic / total.clamp_min(1e-300)).float()


def periods(depth: int) -> list[int]:
    """The periods a UNet of this depth can imprint: 2, 4, ..., 2^depth."""
    return [2**d for d in range(1, depth + 1)]


@torch.no_grad()
def flat_field_response(
    net: nn.Module,
    in_channels: int,
    margin: int,
    value: float | Sequence[float] = 0.0,
    noise_std: float = 0.0,
    interior: int = 64,
    seed: int = 0,
) -> torch.Tensor:
    """Logit maps (C, interior, interior) of ``net`` in eval mode fed a constant image.

    The input is ``value`` (one value, or one per channel; plus Gaussian noise of ``noise_std``) on a square of side
    interior + 2 * margin; only the centre is returned, which no border reaches when ``margin``
    exceeds the network's receptive-field radius (``net.receptive_field()``). A
    translation-equivariant decoder answers a constant with a constant, so any pattern here is an
    upsampling artifact.
    """
    size = interior + 2 * margin
    device = next(net.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    x = torch.as_tensor(value, dtype=torch.float32).reshape(-1, 1, 1) + noise_std * torch.randn(
        1, in_channels, size, size, generator=generator
    )
    was_training = net.training
    net.eval()
    try:
        out = net(x.to(device))[0]
    finally:
        net.train(was_training)
    return out[:, margin : margin + interior, margin : margin + interior].float().cpu()


@torch.no_grad()
def constant_in_constant_out(upsample: Callable[[int, int], nn.Module], channels: int = 4, size: int = 16) -> bool:
    """Whether a freshly built upsampling block maps a constant map to a constant one, borders aside.

    The theory's expectation for a mode at initialisation (Odena et al. 2016): true for resize +
    conv, fixed bilinear kernels and ICNR pixel shuffle, false for randomly initialised transposed
    convolutions, whose output phases get unequal sums of taps. Runs on a forked RNG, so building
    the probe block leaves the caller's random stream alone.
    """
    with torch.random.fork_rng(devices=[]):
        block = upsample(channels, channels).eval()
        out = block(torch.ones(1, channels, size, size), (2 * size, 2 * size))[
            ..., size // 2 : -size // 2, size // 2 : -size // 2
        ]
    spread = out.amax(dim=(-2, -1)) - out.amin(dim=(-2, -1))
    return bool(spread.abs().max() <= 1e-5 * max(1.0, float(out.abs().max())))


def phase_gain_imbalance(weight: torch.Tensor, stride: int) -> dict[str, torch.Tensor]:
    """Kernel phase-gain imbalance of a ConvTranspose2d weight (in, out, kH, kW) with stride s.

    Output phase p receives the DC gain g_p = sum_m w[p + m s] (per axis after summing the other
    axis; in 2-D g_pq = sum_mn w[p + m s, q + n s]). Imbalance, pooled over the (in, out) channel
    pairs c: sqrt(mean_c Var_p(g_c)) / sqrt(mean_c mean_p(g_c)^2), the spread of the phase gains
    relative to the RMS DC gain. Pooled rather than averaged per pair, because a pair whose mean
    gain is near zero would make its own ratio, and so the average, unbounded. 0 when every phase
    gets the same gain (the bilinear kernel); about 1 (per axis) and sqrt(3) (2-D) for an i.i.d.
    zero-mean k=3, s=2 kernel, whose phases get 1 and 2 taps per axis.
    """
    k_h, k_w = weight.shape[-2:]
    padded = F.pad(weight.double(), (0, -k_w % stride, 0, -k_h % stride))
    g2d = padded.unflatten(-2, (-1, stride)).unflatten(-1, (-1, stride)).sum(dim=(-4, -2)).flatten(-2)

    def imbalance(g: torch.Tensor) -> torch.Tensor:
        spread, dc = g.var(-1, unbiased=False).mean().sqrt(), g.mean(-1).square().mean().sqrt()
        return (spread / dc.clamp_min(1e-12)).float()

    return {
        "rows": imbalance(g2d.unflatten(-1, (stride, stride)).sum(-1)),
        "cols": imbalance(g2d.unflatten(-1, (stride, stride)).sum(-2)),
        "2d": imbalance(g2d),
    }


def kernel_imbalance(net: nn.Module) -> torch.Tensor | None:
    """Mean over every ConvTranspose2d in ``net`` of its pooled 2-D phase-gain imbalance (None if it has none)."""
    values = [
        phase_gain_imbalance(m.weight, m.stride[0])["2d"] for m in net.modules() if isinstance(m, nn.ConvTranspose2d)
    ]
    return torch.stack(values).mean() if values else None


def radial_power_spectrum(y: torch.Tensor, bins: int = 32) -> torch.Tensor:
    """log10 of the radially averaged power spectrum of maps ``y[..., H, W]`` (Durall et al. 2020).

    The mean is removed; ring r holds the frequencies with |f| / (sqrt(2) f_Nyquist) in
    [r, r + 1) / bins, so the last ring holds the corner (N/2, N/2) where a checkerboard lives.
    Returns ``(..., bins)``.
    """
    h, w = y.shape[-2:]
    power = torch.fft.fft2(y.double() - y.double().mean(dim=(-2, -1), keepdim=True)).abs().square()
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None].abs() / 0.5
    fx = torch.fft.fftfreq(w, dtype=torch.float64)[None, :].abs() / 0.5
    ring = (torch.sqrt((fy**2 + fx**2) / 2) * bins).floor().long().clamp_max(bins - 1).flatten()
    sums = torch.zeros(*power.shape[:-2], bins, dtype=torch.float64)
    sums.index_add_(-1, ring, power.flatten(-2))
    counts = torch.bincount(ring, minlength=bins).clamp_min(1)
    return torch.log10(sums / counts / (h * w) + 1e-12).float()


def even_crop(y: torch.Tensor) -> torch.Tensor:
    """``y[..., H, W]`` without its last row and column where H or W is odd: even sides have a Nyquist bin."""
    return y[..., : y.shape[-2] // 2 * 2, : y.shape[-1] // 2 * 2]


def remove_nyquist(y: torch.Tensor) -> torch.Tensor:
    """Maps ``y[..., H, W]`` (even sides) with the Nyquist row (k_y = H/2) and column (k_x = W/2) of their DFT set to 0.

    These bins hold what alternates sign from pixel to pixel along an axis: the period-2 patterns a
    stride-2 upsampling can imprint, e.g. a (-1)^(i+j) checkerboard, are removed whole, and a map
    without a period-2 component loses nothing. A map that is not periodic over the image leaks into
    these bins too, by the alternating sums of its rows and columns over H (or W): for a step of
    height a, at most a / H per column. Computed in float64.
    """
    h, w = y.shape[-2:]
    if h % 2 or w % 2:
        raise ValueError(f"map {(h, w)} has an odd side: crop it to even sides first (even_crop)")
    spectrum = torch.fft.fft2(y.double())
    spectrum[..., h // 2, :] = 0
    spectrum[..., :, w // 2] = 0
    return torch.fft.ifft2(spectrum).real


def nyquist_flips(logits: torch.Tensor) -> torch.Tensor:
    """(N, H', W') bool: the pixels whose argmax label changes when the Nyquist band of the logits is removed.

    ``logits`` are (N, C, H, W), cropped to even sides (``even_crop``), every class map filtered by
    ``remove_nyquist``. Its mean, per mille, is the share of the labels a user sees that the period-2
    part of the logits decides: 0 when the logits have no period-2 component, however large the logits.
    """
    logits = even_crop(logits).double()
    return remove_nyquist(logits).argmax(1) != logits.argmax(1)


def shift_disagreement(
    predict: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, shift: int, margin: int = 0
) -> torch.Tensor:
    """(N, H', W') bool: the pixels whose label changes when the input is shifted by ``shift`` px along both axes.

    The shifted input is ``images[..., shift:, shift:]`` (N, C, H, W; the content moves up and left),
    reflect-padded at the bottom and right back to H x W, so that both inputs take the same path
    through the network (an odd side would change how a block meets its skip). Labels are compared on
    the overlap, input pixels (shift .. H - 1, shift .. W - 1), less ``margin`` px along its border,
    where padding rather than the shift moves the prediction. A translation-equivariant network gives
    0; a UNet is equivariant only to shifts by multiples of 2^depth, and an upsampling block whose
    output phases get unequal gains adds to the disagreement at the other shifts. Its mean, per
    mille, is the shift disagreement.
    """
    h, w = images.shape[-2] - shift, images.shape[-1] - shift
    if shift < 1 or min(h, w) <= max(2 * margin, shift - 1):
        raise ValueError(
            f"shift {shift} with a margin of {margin} px leaves nothing to compare of a "
            f"{tuple(images.shape[-2:])} image"
        )
    shifted = F.pad(images[..., shift:, shift:], (0, shift, 0, shift), mode="reflect")
    labels, shifted_labels = predict(images).argmax(1)[..., shift:, shift:], predict(shifted).argmax(1)[..., :h, :w]
    return (labels != shifted_labels)[..., margin : h - margin, margin : w - margin]
