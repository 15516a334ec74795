"""Artifact and boundary measures, free of Lightning and Hydra."""

from unet_upsampling.metrics.artifacts import (
    constant_in_constant_out,
    flat_field_response,
    kernel_imbalance,
    nyquist_flips,
    periodic_energy_fraction,
    periods,
    phase_gain_imbalance,
    radial_power_spectrum,
    remove_nyquist,
    shift_disagreement,
)
from unet_upsampling.metrics.boundary import BoundaryF1

__all__ = [
    "BoundaryF1",
    "constant_in_constant_out",
    "flat_field_response",
    "kernel_imbalance",
    "nyquist_flips",
    "periodic_energy_fraction",
    "periods",
    "phase_gain_imbalance",
    "radial_power_spectrum",
    "remove_nyquist",
    "shift_disagreement",
]
