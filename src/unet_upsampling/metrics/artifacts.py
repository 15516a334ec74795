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


def local_periodic_energy_fraction(y: torch.Tensor, period: int, window: int = 32) -> torch.Tensor:
    """LPEF_P of maps ``y[..., H, W]``: the PEF_P of each ``window`` x ``window`` tile (the map cut into whole
    tiles, the rest dropped), averaged over the tiles.

    A pattern whose sign or amplitude changes across the image (a checkerboard times an envelope that
    changes sign, or one present only along edges) cancels or drowns in the global phase means of
    ``periodic_energy_fraction``; inside a tile it is a pattern of its own. A constant tile counts 0, as
    in PEF. ``window`` is a multiple of ``period``.
    """
    if window % period:
        raise ValueError(f"window {window} is not a multiple of the period {period}")
    h, w = y.shape[-2] // window * window, y.shape[-1] // window * window
    if h == 0 or w == 0:
        raise ValueError(f"map {tuple(y.shape[-2:])} is smaller than the window {window}")
    tiles = y[..., :h, :w].unflatten(-2, (h // window, window)).unflatten(-1, (w // window, window)).movedim(-3, -2)
    return periodic_energy_fraction(tiles, period).mean(dim=(-2, -1))


def phase_counts(
    preds: torch.Tensor, target: torch.Tensor, num_classes: int, period: int, ignore_index: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """False positives of each class at each output phase, and the pixels of each phase.

    ``preds`` and ``target`` are label maps (..., H, W) whose pixel (i, j) is the network's output pixel
    (i, j); its phase is (i mod P, j mod P). Returns ``(fp, pixels)``: fp[c, a, b] counts the pixels of
    phase (a, b) labelled c whose target is another class, pixels[a, b] those of the phase (pixels whose
    target is ``ignore_index`` left out). Summed over c, fp counts every wrong label once.
    """
    h, w = preds.shape[-2:]
    rows = torch.arange(h, device=preds.device)[:, None] % period
    cols = torch.arange(w, device=preds.device)[None, :] % period
    phase = (rows * period + cols).expand_as(preds)
    valid = target != ignore_index if ignore_index is not None else torch.ones_like(target, dtype=torch.bool)
    wrong = valid & (preds != target)
    index = (preds.clamp(0, num_classes - 1) * period**2 + phase)[wrong]
    fp = torch.bincount(index, minlength=num_classes * period**2).reshape(num_classes, period, period)
    pixels = torch.bincount(phase[valid], minlength=period**2).reshape(period, period)
    return fp, pixels


def coarser_phases(counts: torch.Tensor, period: int) -> torch.Tensor:
    """Counts (..., P, P) at phases of period P summed into phases of ``period``, a divisor of P."""
    p = counts.shape[-1]
    return counts.unflatten(-2, (p // period, period)).unflatten(-1, (p // period, period)).sum(dim=(-4, -2))


def phase_excess(fp: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """The wrong labels owed to the output phase: sum over classes c of mean_phi(r_c,phi - min_phi r_c,phi), where
    r_c,phi = fp[c, phi] / pixels[phi] is the rate of false c labels at phase phi.

    The errors that would go if every phase did as well as its best one, as a share of the pixels: for a
    stride-2 checkerboard that flips a share f of the labels (to one class at two phases, to another at
    the other two) it is f. A network whose errors do not depend on the phase gives 0 plus sampling
    noise (the minimum of noisy rates lies below their mean), so it is compared across modes and tested
    across seeds, not read alone. Blind to a pattern whose sign changes across the image: its errors move
    between phases from region to region and cancel in the totals (the shift disagreement and the local
    PEF see it).
    """
    rates = fp.double() / pixels.double().clamp_min(1)
    return (rates - rates.flatten(-2).amin(-1)[..., None, None]).flatten(-2).mean(-1).sum(-1)


def shift_disagreement(
    predict: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    shift: int,
    margin: int = 0,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """(N, H', W') bool: the pixels whose label changes when the input is shifted by ``shift`` px along both axes.

    The shifted input is ``images[..., shift:, shift:]`` (N, C, H, W; the content moves up and left),
    reflect-padded at the bottom and right back to H x W, so that both inputs take the same path
    through the network (an odd side would change how a block meets its skip). Labels are compared on
    the overlap, input pixels (shift .. H - 1, shift .. W - 1), less ``margin`` px along its border,
    where padding rather than the shift moves the prediction. A translation-equivariant network gives
    0; a UNet is equivariant only to shifts by multiples of 2^depth, and an upsampling block whose
    output phases get unequal gains adds to the disagreement at the other shifts. Its mean, per
    mille, is the shift disagreement. ``labels``: those of ``images`` when already predicted (one forward pass
    fewer).
    """
    h, w = images.shape[-2] - shift, images.shape[-1] - shift
    if shift < 1 or min(h, w) <= max(2 * margin, shift - 1):
        raise ValueError(
            f"shift {shift} with a margin of {margin} px leaves nothing to compare of a "
            f"{tuple(images.shape[-2:])} image"
        )
    shifted = F.pad(images[..., shift:, shift:], (0, shift, 0, shift), mode="reflect")
    labels = (predict(images).argmax(1) if labels is None else labels)[..., shift:, shift:]
    shifted_labels = predict(shifted).argmax(1)[..., :h, :w]
    return (labels != shifted_labels)[..., margin : h - margin, margin : w - margin]
