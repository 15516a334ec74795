"""Artifact and boundary measures, free of Lightning and Hydra."""

from unet_upsampling.metrics.artifacts import (
    flat_field_response,
    kernel_imbalance,
    periodic_energy_fraction,
    periods,
    phase_gain_imbalance,
    radial_power_spectrum,
    receptive_field_bound,
)
from unet_upsampling.metrics.boundary import BoundaryF1

__all__ = [
    "BoundaryF1",
    "flat_field_response",
    "kernel_imbalance",
    "periodic_energy_fraction",
    "periods",
    "phase_gain_imbalance",
    "radial_power_spectrum",
    "receptive_field_bound",
]
