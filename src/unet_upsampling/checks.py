"""Consistency checks between the parts of a run, before any training starts."""

from __future__ import annotations

from unet_upsampling.data import SegmentationDataModule
from unet_upsampling.models import UNet


def check_run(datamodule: SegmentationDataModule, net: UNet) -> None:
    """Raises one ValueError that names the settings and the fix, for the first inconsistency found."""
    if net.num_classes != datamodule.num_classes:
        raise ValueError(
            f"model.num_classes={net.num_classes} but data.num_classes={datamodule.num_classes} (the "
            f"masks' classes): leave model.num_classes at its default, ${{data.num_classes}}"
        )
    if net.in_channels != datamodule.in_channels:
        raise ValueError(
            f"model.in_channels={net.in_channels} but data.in_channels={datamodule.in_channels}: leave "
            f"model.in_channels at its default, ${{data.in_channels}}"
        )
    if datamodule.crop_size < 2**net.depth:
        raise ValueError(
            f"data.crop_size={datamodule.crop_size} is smaller than 2**model.depth = {2**net.depth}: "
            f"the deepest level would be empty; raise data.crop_size or lower model.depth"
        )
