"""Artifact and boundary measures, free of Lightning and Hydra."""

from unet_upsampling.metrics.artifacts import (
    coarser_phases,
    constant_in_constant_out,
    flat_field_response,
    kernel_imbalance,
    local_periodic_energy_fraction,
    periodic_energy_fraction,
    periods,
    phase_counts,
    phase_excess,
    phase_gain_imbalance,
    radial_power_spectrum,
    shift_disagreement,
)
from unet_upsampling.metrics.boundary import BoundaryF1

__all__ = [
    "BoundaryF1",
    "coarser_phases",
    "constant_in_constant_out",
    "flat_field_response",
    "kernel_imbalance",
    "local_periodic_energy_fraction",
    "periodic_energy_fraction",
    "periods",
    "phase_counts",
    "phase_excess",
    "phase_gain_imbalance",
    "radial_power_spectrum",
    "shift_disagreement",
]
